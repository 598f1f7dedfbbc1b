-- wrk script for loadtest/redirects.py: every request asks for a random hot short link
-- (/r/hot00 … /r/hot99 for HOT_CODES=100), and the run ends with the machine-readable line of
-- wrk_report.lua. 3xx answers are successes for wrk.
local codes = tonumber(os.getenv("HOT_CODES") or "100")
local width = #tostring(codes - 1)
local pattern = "/r/hot%0" .. width .. "d"

function request()
  return wrk.format("GET", string.format(pattern, math.random(0, codes - 1)))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "LOADTEST requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
