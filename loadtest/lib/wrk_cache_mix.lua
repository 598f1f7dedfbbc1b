-- wrk script for the cache_mix profile of loadtest/compare: the mixed-origin cache scenario.
--
-- Every connection cycles through one fixed, shuffled list of requests: each object of each
-- origin class (vary, reval, swr, long: see `profile_cache_mix` in compare) once with each of
-- the four Accept-Encoding values clients commonly send (three, and none). So each class is a
-- quarter of the requests and each encoding a quarter of each class's.
--
-- It also reads the cache's own verdict from each response, where the cache says one:
-- `Cache-Status` (RFC 9211, Meridian) counts as a hit when it has the `hit` member;
-- `X-Cache-Status` (nginx's $upstream_cache_status) when HIT, STALE or UPDATING; `X-Cache`
-- (set by the harness's VCL from obj.hits) when HIT. After the run it prints the line of
-- wrk_report.lua plus `cache_seen` (responses with one of these headers) and `cache_hits`, and
-- `sent_CLASS`: the requests sent per class (the completed ones plus the few still in flight
-- when the run ended, which reached the origin too: the denominators of per-class hit ratios;
-- also the one request wrk asks the script for at start to check it, never sent).
--
-- Argument (after `--`): the number of objects per class (default 64, at most 4096).

local CLASSES = { "vary", "reval", "swr", "long" }
local ENCODINGS = { "gzip, deflate, br, zstd", "gzip, deflate, br", "gzip", false }

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

-- Per-thread state (globals, so that done() can read them with thread:get).
cache_seen = 0
cache_hits = 0
sent_vary, sent_reval, sent_swr, sent_long = 0, 0, 0, 0
local requests = {}
local class_of = {}
local next_request = 1

function init(args)
  local objects = tonumber(args[1] or "64") or 64
  if objects < 1 then objects = 1 end
  if objects > 4096 then objects = 4096 end
  for _, class in ipairs(CLASSES) do
    for i = 1, objects do
      for _, encoding in ipairs(ENCODINGS) do
        local headers = {}
        if encoding then headers["Accept-Encoding"] = encoding end
        table.insert(requests, wrk.format("GET", "/mix/" .. class .. "/" .. i, headers))
        table.insert(class_of, class)
      end
    end
  end
  -- A fixed shuffle (Fisher-Yates with a fixed seed): every run and every contender sees
  -- the same order.
  math.randomseed(13)
  for i = #requests, 2, -1 do
    local j = math.random(i)
    requests[i], requests[j] = requests[j], requests[i]
    class_of[i], class_of[j] = class_of[j], class_of[i]
  end
end

function request()
  local i = next_request
  local r = requests[i]
  local class = class_of[i]
  if class == "vary" then
    sent_vary = sent_vary + 1
  elseif class == "reval" then
    sent_reval = sent_reval + 1
  elseif class == "swr" then
    sent_swr = sent_swr + 1
  else
    sent_long = sent_long + 1
  end
  next_request = next_request + 1
  if next_request > #requests then next_request = 1 end
  return r
end

function response(status, headers, body)
  local v = headers["cache-status"] or headers["Cache-Status"]
  if v then
    cache_seen = cache_seen + 1
    if string.find(v, "; hit", 1, true) then cache_hits = cache_hits + 1 end
    return
  end
  v = headers["X-Cache-Status"] or headers["x-cache-status"]
  if v then
    cache_seen = cache_seen + 1
    if v == "HIT" or v == "STALE" or v == "UPDATING" then cache_hits = cache_hits + 1 end
    return
  end
  v = headers["X-Cache"] or headers["x-cache"]
  if v then
    cache_seen = cache_seen + 1
    if v == "HIT" then cache_hits = cache_hits + 1 end
  end
end

function done(summary, latency, requests)
  local seen, hits = 0, 0
  local sent = { 0, 0, 0, 0 }
  for _, thread in ipairs(threads) do
    seen = seen + (thread:get("cache_seen") or 0)
    hits = hits + (thread:get("cache_hits") or 0)
    for k, class in ipairs(CLASSES) do
      sent[k] = sent[k] + (thread:get("sent_" .. class) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    "LOADTEST requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d"
      .. " cache_seen=%d cache_hits=%d sent_vary=%d sent_reval=%d sent_swr=%d sent_long=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, seen, hits,
    sent[1], sent[2], sent[3], sent[4]))
end
