-- wrk script of bench/scale.sh: OBJECTS counters of the seed app named o0 .. o<OBJECTS-1>.
--
-- PHASE=create: every name gets exactly one POST /counters/o<i>/increment. Of WRK_THREADS
--   threads, thread t takes names t, t+T, t+2T, ...; once it has sent all of them its
--   connections send GET /health instead, and once all of its increments are answered (or
--   none has been for 35 s: lost to a socket error) it writes DONE_DIR/<t> ("<answered>
--   <bad>", bad: not 200 {"count":1}) and stops. wrk itself runs until its -d or a SIGINT:
--   scale.sh sends SIGINT when every thread is done. wrk calls request() once before the run
--   to check the script (on its first thread), so that call gets the /health request.
-- PHASE=random: READ_PCT % (default 50) GET /counters/o<i>, the rest POST
--   /counters/o<i>/increment, i uniformly random in [0, OBJECTS).
local objects = tonumber(os.getenv("OBJECTS") or "1000000")
local phase = os.getenv("PHASE") or "random"
local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
local read_pct = tonumber(os.getenv("READ_PCT") or "50")
local done_dir = os.getenv("DONE_DIR") or "."
-- CLASS=sql: bench/sql/sql_counter's SQLite-backed counters (POST /sql/o<i> adds, GET reads,
-- an answer is the bare count) instead of the seed's.
local sql = os.getenv("CLASS") == "sql"
local function incrementPath(i) if sql then return "/sql/o" .. i end return "/counters/o" .. i .. "/increment" end
local function readPath(i) if sql then return "/sql/o" .. i end return "/counters/o" .. i end
local first = sql and "1" or '{"count":1}'
local health = "/health"

local created = 0
function setup(thread)
  thread:set("tid", created)
  created = created + 1
end

if phase == "create" then
  local next_i, share, answered, bad, checked, last
  local function done()
    local f = io.open(done_dir .. "/" .. tid, "w")
    f:write(answered .. " " .. bad .. "\n")
    f:close()
    wrk.thread:stop()
  end
  function init(args)
    next_i = tid
    share = 0
    if tid < objects then share = math.floor((objects - 1 - tid) / nthreads) + 1 end
    answered, bad, last = 0, 0, os.time()
    checked = tid ~= 0
    if share == 0 then done() end
  end
  function request()
    if checked and next_i < objects then
      local path = incrementPath(next_i)
      next_i = next_i + nthreads
      return wrk.format("POST", path)
    end
    checked = true
    return wrk.format("GET", health)
  end
  function response(status, headers, body)
    if status == 200 and body == "ok" then  -- /health
      if next_i >= objects and os.time() - last > 35 then done() end
      return
    end
    answered = answered + 1
    last = os.time()
    if status ~= 200 or body ~= first then bad = bad + 1 end
    if answered == share then done() end
  end
else
  function init(args)
    math.randomseed(os.time() * 16 + tid)
  end
  function request()
    local i = math.random(0, objects - 1)
    if math.random(1, 100) <= read_pct then return wrk.format("GET", readPath(i)) end
    return wrk.format("POST", incrementPath(i))
  end
end
