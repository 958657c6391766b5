-- POST /<KIND>/c<random of NOBJ>: KIND and NOBJ from the environment.
local kind = os.getenv("KIND") or "kv"
local nobj = tonumber(os.getenv("NOBJ") or "1")
math.randomseed(os.time())
request = function()
  return wrk.format("POST", "/" .. kind .. "/c" .. math.random(1, nobj))
end
