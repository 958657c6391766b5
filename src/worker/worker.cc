#include <durable/error.h>
#include <durable/worker.h>

#include "base/log.h"
#include "base/utf8.h"
#include "worker/route_match.h"
#include "net/error_response.h"

#include <boost/container/small_vector.hpp>

#include <exception>
#include <utility>

namespace durable {

namespace {

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Paths rarely have more than a handful of segments: keep them off the heap.
using Segments = boost::container::small_vector<std::string_view, 16>;

Segments splitPath(std::string_view s) {
  Segments out;
  while (true) {
    auto slash = s.find('/');
    out.push_back(s.substr(0, slash));
    if (slash == std::string_view::npos) break;
    s.remove_prefix(slash + 1);
  }
  return out;
}

// A literal pattern segment is written decoded ("a b"), while the path arrives encoded
// ("a%20b"); both spellings of the same segment should route the same way.
bool literalMatches(std::string_view literal, std::string_view segment) {
  if (literal == segment) return true;
  return segment.find('%') != std::string_view::npos && percentDecode(segment) == literal;
}

bool methodMatches(std::string_view route, std::string_view request) {
  if (route == "*" || route == request) return true;
  // A HEAD is a GET without the body; the server drops the body.
  return request == "HEAD" && route == "GET";
}

}  // namespace

std::string percentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hexDigit(s[i + 1]) >= 0 && hexDigit(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexDigit(s[i + 1]) * 16 + hexDigit(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string Context::param(std::string_view name) const {
  auto it = params.find(name);
  if (it == params.end()) return std::string();
  // A Worker's URL pattern groups are percent-decoded as URLSearchParams decodes: bytes that
  // are not UTF-8 become U+FFFD. The parameter is text a handler may store or send, so it
  // must always be valid UTF-8, and a Worker answers /counters/%FF rather than refusing it.
  return detail::toWellFormedUtf8(percentDecode(it->second));
}

std::optional<std::string> Context::query(std::string_view name) const { return req_.url().searchParams().get(name); }

void Context::header(std::string_view name, std::string_view value) { responseHeaders.set(name, value); }

Response Context::json(const Json& value, int status) const {
  ResponseInit init;
  init.status = status;
  return Response::json(value, std::move(init));
}

Response Context::text(std::string body, int status) const {
  Response response(std::move(body), {.status = status});
  response.headers().set("content-type", "text/plain; charset=UTF-8");
  return response;
}

Worker& Worker::on(std::string method, std::string pattern, Handler handler) {
  auto segments = splitPath(pattern);
  routes_.push_back(Route{std::move(method), std::move(pattern), std::move(handler),
                          std::vector<std::string>(segments.begin(), segments.end())});
  return *this;
}

Worker& Worker::use(std::string pattern, Middleware middleware) {
  auto segments = splitPath(pattern);
  middleware_.push_back(Use{std::move(pattern), std::move(middleware),
                            std::vector<std::string>(segments.begin(), segments.end())});
  return *this;
}

Worker& Worker::notFound(Handler handler) {
  not_found_ = std::move(handler);
  return *this;
}

namespace {
template <class Pattern>
bool matchSegments(const Pattern& pat, const Segments& segs,
                   std::map<std::string, std::string, std::less<>>* params, bool decode) {
  std::pair<std::string_view, std::string_view> found[16];
  std::size_t nfound = 0;
  std::size_t i = 0;
  for (; i < pat.size(); ++i) {
    std::string_view p = pat[i];
    if (p == "*" && i + 1 == pat.size()) {
      // A trailing "*" also takes the bare prefix: "/api/*" answers "/api" as Hono does.
      break;
    }
    if (i >= segs.size()) return false;
    std::string_view s = segs[i];
    if (p == "*") continue;  // a wildcard in the middle stands for one segment
    if (p.size() > 1 && p.front() == ':') {
      if (s.empty()) return false;
      if (nfound < std::size(found)) found[nfound++] = {p.substr(1), s};
      continue;
    }
    if (!literalMatches(p, s)) return false;
  }
  if (i == pat.size() && segs.size() != pat.size()) return false;
  if (params) {
    for (std::size_t k = 0; k < nfound; ++k) {
      params->insert_or_assign(std::string(found[k].first),
                               decode ? detail::toWellFormedUtf8(percentDecode(found[k].second))
                                      : std::string(found[k].second));
    }
  }
  return true;
}
}  // namespace

bool detail::matchRoute(std::string_view pattern, std::string_view path,
                        std::map<std::string, std::string, std::less<>>* params) {
  if (pattern == "*") return true;
  return matchSegments(splitPath(pattern), splitPath(path), params, true);
}

Task<Response> Worker::fetch(Request request, Env& env) const {
  Context c(request, env);
  std::optional<Response> response;
  try {
    const URL url = request.url();
    const auto segments = splitPath(url.pathnameView());
    const Handler* handler = nullptr;
    for (const Route& r : routes_) {
      if (methodMatches(r.method, request.method()) &&
          (r.pattern == "*" || matchSegments(r.segments, segments, &c.params, false))) {
        handler = &r.handler;
        break;
      }
    }
    if (!handler && not_found_) handler = &not_found_;
    std::vector<const Middleware*> chain;
    for (const Use& u : middleware_) {
      if (u.pattern == "*" || matchSegments(u.segments, segments, nullptr, false)) chain.push_back(&u.middleware);
    }
    response.emplace(co_await run(c, chain, 0, handler));
  } catch (...) {
    // A Worker that does not catch answers 500 (or its Error's status) with the message.
    response.emplace(detail::errorResponse(std::current_exception()));
    detail::log("worker: ", request.method(), " ", request.urlString(), " threw (", response->status(),
                "): ", detail::describeException(std::current_exception()));
  }
  // Hono's c.header wins over whatever the handler put there; several values of one name
  // set through the context all survive.
  for (const auto& [name, value] : c.responseHeaders.entries()) response->headers().remove(name);
  for (const auto& [name, value] : c.responseHeaders.entries()) response->headers().append(name, value);
  co_return std::move(*response);
}

Task<Response> Worker::run(Context& c, const std::vector<const Middleware*>& chain, std::size_t i,
                           const Handler* handler) const {
  if (i < chain.size()) {
    // `chain` lives in fetch()'s frame, which outlives every layer of the chain, so each layer
    // and its Next refer to it instead of copying it.
    Next next = [this, &c, &chain, i, handler]() { return run(c, chain, i + 1, handler); };
    co_return co_await (*chain[i])(c, next);
  }
  if (handler) co_return co_await (*handler)(c);
  co_return c.text("404 Not Found", 404);
}

}  // namespace durable
