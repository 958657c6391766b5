-- GET /api/ping behind the seed's rateLimit({ limit: 100, windowMs: 60000 }), each request
-- from one of NIP client addresses (cf-connecting-ip, default 10,000), so every key stays
-- under its 100 requests a minute and the requests are allowed: the measured path is the
-- middleware's RateLimiter round trip (a storage get + put) and the route, not the 429.
local nip = tonumber(os.getenv("NIP") or "10000")
math.randomseed(os.time())
request = function()
  local n = math.random(0, nip - 1)
  local ip = "10." .. math.floor(n / 65536) % 256 .. "." .. math.floor(n / 256) % 256 .. "." .. n % 256
  return wrk.format("GET", "/api/ping", { ["cf-connecting-ip"] = ip })
end
