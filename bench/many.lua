-- POST /counters/<random of NOBJ>/increment, NOBJ from the environment (default 1000).
local nobj = tonumber(os.getenv("NOBJ") or "1000")
math.randomseed(os.time())
request = function()
  return wrk.format("POST", "/counters/c" .. math.random(1, nobj) .. "/increment")
end
