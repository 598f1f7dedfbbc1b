-- wrk hook used by loadtest/compare: after a run, print one machine-readable line.
-- Latencies are in microseconds; "socket" sums connect/read/write/timeout errors and
-- "status" counts responses that were not 2xx/3xx.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "LOADTEST requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
