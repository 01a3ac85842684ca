-- serve-load.lua - wrk script for bench/serve-load.sh: POSTs one JSON body
-- (from $BODY_FILE) with an API key (from $FACENET_KEY) and reports
-- 200s, 503s, 504s and other statuses with the latency percentiles on one
-- "RESULT" line. Latencies are those of every response, refusals included.
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("FACENET_KEY")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, refused, late, other = 0, 0, 0, 0
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status == 503 then
    refused = refused + 1
  elseif status == 504 then
    late = late + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local o, r, l, x = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    r = r + t:get("refused")
    l = l + t:get("late")
    x = x + t:get("other")
  end
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d seconds=%.1f ok=%d status503=%d status504=%d other=%d errors=%d " ..
    "ok_per_s=%.1f " ..
    "p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n",
    summary.requests, seconds, o, r, l, x,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    o / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
