-- Sends each pre-signed request once, in order (one wrk thread). Four lines per request:
-- Content-Digest, Signature-Input, Signature, body.
local requests = {}
local next_index = 1

function init(args)
  local file = assert(io.open(args[1], "r"))
  while true do
    local digest = file:read("*l")
    if digest == nil then break end
    local input, signature, body = file:read("*l"), file:read("*l"), file:read("*l")
    requests[#requests + 1] = wrk.format("POST", "/v1/reports", {
      ["Content-Type"] = "application/json",
      ["Content-Digest"] = digest,
      ["Signature-Input"] = input,
      ["Signature"] = signature,
    }, body)
  end
  file:close()
end

function request()
  local r = requests[next_index] or requests[#requests]
  next_index = next_index + 1
  return r
end
