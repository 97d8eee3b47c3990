-- mlambda loadtest's wrk script. Each request gets a unique id (nonce, counter, send
-- time in microseconds of CLOCK_MONOTONIC, the clock Python's time.monotonic reads);
-- each answer is checked (status, shape) and, when it echoes the id, timed exactly.
-- Environment: MLAMBDA_LT_BODIES (a file of body templates, one per line, with
-- MLAMBDA_ID where the id goes), MLAMBDA_LT_KEY, MLAMBDA_LT_NONCE, MLAMBDA_LT_CHECK
-- ("esun" or "status"), MLAMBDA_LT_OUT (where done() writes the samples).
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } mlambda_timespec;
int clock_gettime(int clk_id, mlambda_timespec *tp);
]]
local ts = ffi.new("mlambda_timespec[1]")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts[0].tv_sec) * 1000000 + math.floor(tonumber(ts[0].tv_nsec) / 1000)
end

local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local templates = {}
for line in io.lines(os.getenv("MLAMBDA_LT_BODIES")) do
  if #line > 0 then table.insert(templates, line) end
end
local nonce = os.getenv("MLAMBDA_LT_NONCE")
local esun = os.getenv("MLAMBDA_LT_CHECK") == "esun"
local headers = { ["Content-Type"] = "application/json" }
local key = os.getenv("MLAMBDA_LT_KEY")
if key and #key > 0 then headers["x-api-key"] = key end
local method = os.getenv("MLAMBDA_LT_METHOD") or "POST"

local n = 0
lines = {}

function request()
  n = n + 1
  -- the counter's top 16 bits say which thread: ids stay unique across threads
  local id = string.format("%s%04x%012x%016x%016x", nonce, tid or 0, n, now_us(), 0)
  local body = string.gsub(templates[(n % #templates) + 1], "MLAMBDA_ID", id)
  return wrk.format(method, nil, headers, body)
end

function response(status, hdrs, body)
  local t = now_us()
  local sent = -1
  local ok = status == 200 and hdrs["X-Amz-Function-Error"] == nil
    and hdrs["x-amz-function-error"] == nil
  if body then
    local at = string.find(body, nonce, 1, true)
    if at then
      sent = tonumber(string.sub(body, at + 32, at + 47), 16) or -1
    end
  end
  if ok and esun then
    ok = sent >= 0 and string.find(body, '"server_uuid"', 1, true) ~= nil
      and string.find(body, '"answer"', 1, true) ~= nil
      and string.find(body, '"server_timestamp"', 1, true) ~= nil
  end
  lines[#lines + 1] = string.format("%d %d %d", t, sent, ok and 1 or 0)
end

function done(summary, latency, requests)
  local out = io.open(os.getenv("MLAMBDA_LT_OUT"), "w")
  local e = summary.errors
  out:write(string.format("errors %d %d %d %d %d\n", e.connect, e.read, e.write, e.status,
    e.timeout))
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    out:write(string.format("percentile %s %d\n", p, latency:percentile(p)))
  end
  for _, thread in ipairs(threads) do
    for _, line in ipairs(thread:get("lines")) do
      out:write(line, "\n")
    end
  end
  out:close()
end
