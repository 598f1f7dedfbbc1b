-- wrk script for loadtest/redirects.py: every request asks for a random hot short link
-- (/r/hot00 … /r/hot99 for HOT_CODES=100); the run ends with wrk_report.lua's result line.
-- 3xx answers are successes for wrk.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_report.lua")

local codes = tonumber(os.getenv("HOT_CODES") or "100")
local width = #tostring(codes - 1)
local pattern = "/r/hot%0" .. width .. "d"

function request()
  return wrk.format("GET", string.format(pattern, math.random(0, codes - 1)))
end
