-- wrk script: POST the BODY template with "UUID" replaced by a value unique to each
-- request, so that no answer can come from the function's cache of recent questions.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local template = os.getenv("BODY")
local headers = { ["Content-Type"] = "application/json", ["x-api-key"] = os.getenv("KEY") }
local n = 0

function request()
  n = n + 1
  local id = string.format("%032x%032x", tid or 0, n)
  return wrk.format("POST", nil, headers, (string.gsub(template, "UUID", id)))
end
