-- wrk script: POST KServe-v2 JSON inference bodies and print the result as one JSON line.
--
-- Used by fulqrun_ml.serving.loadgen.run_wrk:
--   wrk -t T -c C -d 5s --timeout 10s -s scripts/wrk_kserve.lua http://127.0.0.1:PORT/v2/models/M/infer -- BODIES
-- BODIES is a file with one compact JSON request body per line. Every request is pre-formatted once in
-- init(), so the per-request Lua work is one table lookup (wrk's C loop stays the bottleneck, not Lua).
-- No response() callback is defined: that would make wrk parse every body in Lua and slow it down.
-- Non-2xx answers are counted by wrk itself as status errors.

local prepared = {}
local position = 0
local threads_started = 0

-- Runs in wrk's main Lua state once per thread, before init(): give each thread its own id.
function setup(thread)
  thread:set("thread_id", threads_started)
  threads_started = threads_started + 1
end

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk ... -s wrk_kserve.lua URL -- BODIES_FILE")
  end
  local file = assert(io.open(path, "r"))
  local headers = { ["Content-Type"] = "application/json" }
  for line in file:lines() do
    if #line > 0 then
      prepared[#prepared + 1] = wrk.format("POST", nil, headers, line)
    end
  end
  file:close()
  if #prepared == 0 then
    error("no request bodies in " .. path)
  end
  -- Threads start at different bodies so they do not send the same record in lockstep.
  position = ((thread_id or 0) * 7) % #prepared
end

function request()
  position = position % #prepared + 1
  return prepared[position]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p95_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean
  ))
end
