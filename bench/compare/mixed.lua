-- A mixed read/write load over NOBJ counters (default 10,000): READ_PCT % (default 80)
-- GET /counters/<id>, the rest POST /counters/<id>/increment, ids uniformly random.
local nobj = tonumber(os.getenv("NOBJ") or "10000")
local read_pct = tonumber(os.getenv("READ_PCT") or "80")
math.randomseed(os.time())
request = function()
  local id = "c" .. math.random(1, nobj)
  if math.random(1, 100) <= read_pct then
    return wrk.format("GET", "/counters/" .. id)
  end
  return wrk.format("POST", "/counters/" .. id .. "/increment")
end
