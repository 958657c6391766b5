// The seed's RateLimiter (src/durable-objects/rate-limiter.ts) and its middleware
// (src/middleware/rate-limit.ts), line by line.
#pragma once

#include <durable/durable.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace seed {

// JavaScript's parseInt(s) for base 10: leading whitespace, a sign, digits; nullopt for NaN.
std::optional<std::int64_t> parseInt(const std::string& s);
// JavaScript's String(v) for the JSON values the limiter returns.
std::string jsString(const boost::json::value* v);

struct RateLimitConfig {
  std::optional<std::int64_t> limit;     // nullopt: NaN, as parseInt gives for junk
  std::optional<std::int64_t> windowMs;
};

class RateLimiter : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  durable::Task<durable::Response> fetch(durable::Request request) override {
    const auto url = request.url();
    const RateLimitConfig config{
        .limit = parseInt(url.searchParams().get("limit").value_or("100")),
        .windowMs = parseInt(url.searchParams().get("window").value_or("60000")),
    };

    const auto now = durable::now();
    // NaN arithmetic, as in JavaScript: a NaN window keeps nothing, a NaN limit limits nothing.
    const std::optional<std::int64_t> windowStart =
        config.windowMs ? std::optional<std::int64_t>(now - *config.windowMs) : std::nullopt;

    // Load requests from storage if not in memory
    if (requests_.empty()) {
      requests_ = (co_await state().storage().get<std::vector<std::int64_t>>("requests")).value_or(std::vector<std::int64_t>{});
    }

    // Remove old requests
    std::erase_if(requests_, [&](std::int64_t ts) { return !(windowStart && ts > *windowStart); });

    if (config.limit && static_cast<std::int64_t>(requests_.size()) >= *config.limit) {
      const auto oldestRequest = *std::min_element(requests_.begin(), requests_.end());
      const auto resetAt = oldestRequest + *config.windowMs;

      boost::json::object body{
          {"allowed", false},
          {"remaining", 0},
          {"resetAt", resetAt},
          {"retryAfter", static_cast<std::int64_t>(std::ceil(static_cast<double>(resetAt - now) / 1000.0))},
      };
      co_return durable::Response::json(body, {.status = 429});
    }

    // Add new request
    requests_.push_back(now);
    co_await state().storage().put("requests", requests_);

    boost::json::object body{{"allowed", true}};
    body["remaining"] = config.limit ? boost::json::value(*config.limit - static_cast<std::int64_t>(requests_.size()))
                                     : boost::json::value(nullptr);
    body["resetAt"] = config.windowMs ? boost::json::value(now + *config.windowMs) : boost::json::value(nullptr);
    co_return durable::Response::json(body);
  }

 private:
  std::vector<std::int64_t> requests_;
};

struct RateLimitOptions {
  std::int64_t limit;
  std::int64_t windowMs;
  std::function<std::string(durable::Context&)> keyGenerator;
};

// createMiddleware(async (c, next) => { ... }): asks the RATE_LIMITER object named by the key,
// sets the X-RateLimit-* headers, and answers 429 over the limit.
durable::Middleware rateLimit(RateLimitOptions options);

}  // namespace seed
