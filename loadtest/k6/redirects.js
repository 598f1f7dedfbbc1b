// k6 load script for the redirect storm: random hot short links through the demo platform
// (gateway → edge → URL shortener), redirects not followed, with thresholds on p99 and errors.
//
//   meridian stack &                                   # or scripts/start
//   for i in $(seq -w 0 99); do curl -s -XPOST localhost:9101/api/urls \
//     -H 'content-type: application/json' -d "{\"url\":\"https://example.com/$i\",\"alias\":\"hot$i\"}"; done
//   k6 run loadtest/k6/redirects.js
//   k6 run -e BASE=http://127.0.0.1:9101 loadtest/k6/redirects.js   # the shortener alone
//
// Environment (all optional):
//   BASE       where to send /r/CODE                  (default http://127.0.0.1:8080, the gateway)
//   CODES      hot codes hot00 … hot{CODES-1}, ≤ 100  (default 100)
//   PEAK_VUS   virtual users at the plateau           (default 64)
//   RAMP       duration of each ramp stage            (default 10s)
//   HOLD       duration of the plateau                (default 30s)
//   P99_MS     p99 latency threshold in milliseconds  (default 50)
//   MAX_ERROR  highest acceptable failed-request rate (default 0.001)
//
// k6 exits non-zero when a threshold fails. loadtest/redirects.py runs the same storm with oha
// against the shortener, the edge and the gateway in one go and reports the ratios.

import http from "k6/http";
import { check } from "k6";

const BASE = __ENV.BASE || "http://127.0.0.1:8080";
const CODES = Math.min(100, Math.max(1, parseInt(__ENV.CODES || "100", 10)));
const PEAK_VUS = Math.max(1, parseInt(__ENV.PEAK_VUS || "64", 10));
const RAMP = __ENV.RAMP || "10s";
const HOLD = __ENV.HOLD || "30s";
const P99_MS = parseFloat(__ENV.P99_MS || "50");
const MAX_ERROR = parseFloat(__ENV.MAX_ERROR || "0.001");

export const options = {
  discardResponseBodies: true,
  maxRedirects: 0,
  scenarios: {
    storm: {
      executor: "ramping-vus",
      startVUs: 0,
      stages: [
        { duration: RAMP, target: PEAK_VUS },
        { duration: HOLD, target: PEAK_VUS },
        { duration: RAMP, target: 0 },
      ],
      gracefulRampDown: "10s",
    },
  },
  thresholds: {
    http_req_duration: [`p(99)<${P99_MS}`],
    http_req_failed: [`rate<${MAX_ERROR}`],
    checks: [{ threshold: `rate>${1 - MAX_ERROR}`, abortOnFail: true, delayAbortEval: "10s" }],
  },
  summaryTrendStats: ["avg", "min", "med", "p(90)", "p(99)", "max"],
};

export default function () {
  const code = `hot${String(Math.floor(Math.random() * CODES)).padStart(2, "0")}`;
  const res = http.get(`${BASE}/r/${code}`, { tags: { scenario: "redirects" } });
  check(res, {
    "status is 301": (r) => r.status === 301,
    "has a Location": (r) => !!r.headers["Location"],
  });
}
