// k6 load script for Meridian's plain profile: GET requests through the gateway, with VUs
// ramping up to a plateau and back down, and pass/fail thresholds on p99 latency and errors.
//
//   k6 run loadtest/k6/gateway.js
//   k6 run -e TARGET=http://127.0.0.1:18001/ -e PEAK_VUS=128 -e P99_MS=20 loadtest/k6/gateway.js
//
// Environment (all optional):
//   TARGET     URL to request                        (default http://127.0.0.1:8080/)
//   PEAK_VUS   virtual users at the plateau           (default 64)
//   RAMP       duration of each ramp stage            (default 20s)
//   HOLD       duration of the plateau                (default 60s)
//   P99_MS     p99 latency threshold in milliseconds  (default 50)
//   MAX_ERROR  highest acceptable failed-request rate (default 0.001, i.e. 0.1 %)
//
// k6 exits non-zero when a threshold fails, so the script can gate a CI job or a release.
// See loadtest/README.md for installing k6 and reading its summary.

import http from "k6/http";
import { check } from "k6";

const TARGET = __ENV.TARGET || "http://127.0.0.1:8080/";
const PEAK_VUS = Math.max(1, parseInt(__ENV.PEAK_VUS || "64", 10));
const RAMP = __ENV.RAMP || "20s";
const HOLD = __ENV.HOLD || "60s";
const P99_MS = parseFloat(__ENV.P99_MS || "50");
const MAX_ERROR = parseFloat(__ENV.MAX_ERROR || "0.001");

export const options = {
  discardResponseBodies: true,
  scenarios: {
    plain: {
      executor: "ramping-vus",
      startVUs: 0,
      stages: [
        { duration: RAMP, target: Math.max(1, Math.floor(PEAK_VUS / 4)) },
        { duration: RAMP, target: PEAK_VUS },
        { duration: HOLD, target: PEAK_VUS },
        { duration: RAMP, target: 0 },
      ],
      gracefulRampDown: "10s",
    },
  },
  thresholds: {
    // Latency of every request, failed or not.
    http_req_duration: [`p(99)<${P99_MS}`],
    // Transport errors and responses outside 2xx/3xx.
    http_req_failed: [`rate<${MAX_ERROR}`],
    // The status check below; abort early when the gateway is clearly broken.
    checks: [{ threshold: `rate>${1 - MAX_ERROR}`, abortOnFail: true, delayAbortEval: "10s" }],
  },
  summaryTrendStats: ["avg", "min", "med", "p(90)", "p(99)", "max"],
};

export default function () {
  const res = http.get(TARGET, { tags: { profile: "plain" } });
  check(res, { "status is 200": (r) => r.status === 200 });
}
