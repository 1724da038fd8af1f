-- Sends each pre-signed request once, in order (one wrk thread), then repeats the last one
-- (the harness notices and says the requests ran out). Per request, written by
-- bench/harness.py: five lines (path, Content-Type, Content-Digest, Signature-Input,
-- Signature), a line with the body's length in bytes, then the body and a newline (a batch
-- body has newlines of its own).
local requests = {}
-- wrk calls request() once before the run to check it and never sends that one: start at 0
-- so the check costs no request.
local next_index = 0

function init(args)
  local file = assert(io.open(args[1], "r"))
  while true do
    local path = file:read("*l")
    if path == nil then break end
    local content_type, digest = file:read("*l"), file:read("*l")
    local input, signature = file:read("*l"), file:read("*l")
    local body = file:read(tonumber(file:read("*l")))
    file:read("*l")
    requests[#requests + 1] = wrk.format("POST", path, {
      ["Content-Type"] = content_type,
      ["Content-Digest"] = digest,
      ["Signature-Input"] = input,
      ["Signature"] = signature,
    }, body)
  end
  file:close()
end

function request()
  local r = requests[math.max(next_index, 1)] or requests[#requests]
  next_index = next_index + 1
  return r
end
