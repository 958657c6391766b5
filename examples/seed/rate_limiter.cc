#include "seed/rate_limiter.h"

#include <cctype>
#include <cstdio>

namespace seed {

std::optional<std::int64_t> parseInt(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  std::int64_t value = 0;
  std::size_t digits = 0;
  for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) && digits < 18; ++i, ++digits) {
    value = value * 10 + (s[i] - '0');
  }
  if (digits == 0) return std::nullopt;
  return negative ? -value : value;
}

std::string jsString(const boost::json::value* v) {
  if (!v) return "undefined";
  if (v->is_int64()) return std::to_string(v->as_int64());
  if (v->is_uint64()) return std::to_string(v->as_uint64());
  if (v->is_double()) {
    double d = v->as_double();
    if (std::isnan(d)) return "NaN";
    if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<std::int64_t>(d));
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    return buf;
  }
  if (v->is_bool()) return v->as_bool() ? "true" : "false";
  if (v->is_null()) return "null";
  if (v->is_string()) return std::string(v->as_string());
  return durable::stringify(*v);
}

durable::Middleware rateLimit(RateLimitOptions options) {
  return [options](durable::Context& c, durable::Next next) -> durable::Task<durable::Response> {
    std::string key = options.keyGenerator ? options.keyGenerator(c) : std::string();
    if (key.empty()) key = c.header("cf-connecting-ip").value_or("");
    if (key.empty()) key = "anonymous";

    const auto& limiters = c.env().ns("RATE_LIMITER");
    const auto id = limiters.idFromName(key);
    const auto stub = limiters.get(id);

    durable::Request check("http://do/check?limit=" + std::to_string(options.limit) +
                           "&window=" + std::to_string(options.windowMs));
    const auto response = co_await stub.fetch(std::move(check));

    const auto json = response.json();
    const auto& result = json.as_object();

    c.header("X-RateLimit-Limit", std::to_string(options.limit));
    c.header("X-RateLimit-Remaining", jsString(result.if_contains("remaining")));
    c.header("X-RateLimit-Reset", jsString(result.if_contains("resetAt")));

    const auto* allowed = result.if_contains("allowed");
    if (!(allowed && allowed->is_bool() && allowed->as_bool())) {
      c.header("Retry-After", jsString(result.if_contains("retryAfter")));
      const boost::json::object body{{"error", "Rate limit exceeded"}};
      co_return c.json(body, 429);
    }

    co_return co_await next();
  };
}

}  // namespace seed
