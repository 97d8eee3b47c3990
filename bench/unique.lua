-- wrk script: POST the BODY template with "UUID" replaced by a value unique to each
-- request (and to this run: the route's idempotency store keeps answers for minutes),
-- so that every request is a new question, computed by the function.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local template = os.getenv("BODY")
local headers = { ["Content-Type"] = "application/json", ["x-api-key"] = os.getenv("KEY") }
local n = 0
local run = tonumber(os.getenv("RUN") or "") or os.time()

function request()
  n = n + 1
  local id = string.format("%016x%016x%032x", run, tid or 0, n)
  return wrk.format("POST", nil, headers, (string.gsub(template, "UUID", id)))
end
