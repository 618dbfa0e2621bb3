-- wrk script of bench/ingest.py: each connection posts its next pre-built batch as soon as
-- the last one was answered (closed loop). wrk runs it with `-- FILE THREADS`: FILE holds one
-- request a line, "<device token>\t<JSON body>"; thread k takes lines k, k+THREADS, ...
-- The last line printed starts with WRK_RESULT and holds the figures as JSON.

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path, thread_count = args[1], tonumber(args[2])
  batches, statuses, cursor = {}, {}, 0
  local line_number = 0
  for line in io.lines(path) do
    if line_number % thread_count == thread_index then
      local tab = line:find("\t", 1, true)
      local headers = {
        ["Authorization"] = "Bearer " .. line:sub(1, tab - 1),
        ["Content-Type"] = "application/json",
      }
      batches[#batches + 1] = wrk.format("POST", "/v1/readings", headers, line:sub(tab + 1))
    end
    line_number = line_number + 1
  end
end

function request()
  cursor = cursor % #batches + 1
  return batches[cursor]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    parts[#parts + 1] = string.format('"%d": %d', status, count)
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "seconds": %.3f, "statuses": {%s}, "socket_errors": %d, '
      .. '"latency_p50_ms": %.2f, "latency_p99_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, table.concat(parts, ", "),
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
