-- Sends each pre-built TAXII envelope once, in order (one wrk thread), to the URL's path.
-- Arguments: request file (one JSON body a line), then the Authorization header value.
-- Counts 2xx answers itself: wrk's own error count treats a 3xx (e.g. Flask's redirect to
-- the trailing-slash URL) as success, and medallion's success is a 202.
local requests = {}
local threads = {}
-- wrk calls request() once before the run to check the request (script_verify_request, on
-- thread 0 only), and never sends that one: start at 0 so it costs no object.
next_index = 0
ok = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  local headers = {
    ["Content-Type"] = "application/taxii+json;version=2.1",
    ["Accept"] = "application/taxii+json;version=2.1",
    ["Authorization"] = args[2],
  }
  for body in file:lines() do
    requests[#requests + 1] = wrk.format("POST", nil, headers, body)
  end
  file:close()
  available = #requests
end

function request()
  -- Past the end, repeat the last one (medallion answers a duplicate with 202 and a failure
  -- count); the summary says the file ran out, so the caller can report the run as exhausted.
  local r = requests[math.max(next_index, 1)] or requests[#requests]
  next_index = next_index + 1
  return r
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 end
end

function done(summary, latency, totals)
  for _, thread in ipairs(threads) do
    io.write(string.format("medallion.lua: ok=%d sent=%d available=%d\n",
      thread:get("ok"), thread:get("next_index") - 1, thread:get("available")))
  end
end
