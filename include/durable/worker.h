// durable/worker.h: the front Worker: a router with middleware, as Hono gives one in JS.
//
// Routes match a method and a path pattern: literal segments, `:name` parameters (one
// segment, percent-decoded) and a trailing `*` (any rest, including none). Middleware
// registered with use() runs, in registration order, before the first route that matches,
// and wraps it: it may answer itself or call next() and change what comes back.
// A Worker is built once and then only read: fetch() is safe to call from every shard.
#pragma once

#include <durable/http.h>
#include <durable/object.h>
#include <durable/task.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace durable {

class Context {
 public:
  Context(Request& request, Env& env) : req_(request), env_(env) {}

  Request& req() { return req_; }
  Env& env() { return env_; }

  // A route parameter, percent-decoded; "" when the route has none of that name. Always
  // UTF-8: decoded bytes that are not become U+FFFD, as in a Worker's URL pattern groups.
  std::string param(std::string_view name) const;
  // A query parameter, decoded as URLSearchParams does (so always UTF-8, with U+FFFD for
  // bytes that are not).
  std::optional<std::string> query(std::string_view name) const;
  // A request header.
  std::optional<std::string> header(std::string_view name) const { return req_.headers().get(name); }
  // Sets a header on the response this request finally gets (Hono's c.header).
  void header(std::string_view name, std::string_view value);

  Response json(const Json& value, int status = 200) const;
  Response text(std::string body, int status = 200) const;

  // The router fills these; parameters as they appear in the path (percent-encoded).
  std::map<std::string, std::string, std::less<>> params;
  Headers responseHeaders;

 private:
  Request& req_;
  Env& env_;
};

using Handler = std::function<Task<Response>(Context&)>;
using Next = std::function<Task<Response>()>;
using Middleware = std::function<Task<Response>(Context&, Next)>;

class Worker {
 public:
  Worker& on(std::string method, std::string pattern, Handler handler);
  Worker& get(std::string pattern, Handler h) { return on("GET", std::move(pattern), std::move(h)); }
  Worker& post(std::string pattern, Handler h) { return on("POST", std::move(pattern), std::move(h)); }
  Worker& put(std::string pattern, Handler h) { return on("PUT", std::move(pattern), std::move(h)); }
  Worker& patch(std::string pattern, Handler h) { return on("PATCH", std::move(pattern), std::move(h)); }
  Worker& del(std::string pattern, Handler h) { return on("DELETE", std::move(pattern), std::move(h)); }
  // Any method.
  Worker& all(std::string pattern, Handler h) { return on("*", std::move(pattern), std::move(h)); }

  Worker& use(std::string pattern, Middleware middleware);
  Worker& use(Middleware middleware) { return use("*", std::move(middleware)); }

  // What no route answers gets; by default 404 "404 Not Found" (text/plain).
  Worker& notFound(Handler handler);

  // Routes one request. An exception escaping a handler or middleware becomes a JSON error
  // response: the status from durable::Error's code, else 500; body {"error": message}.
  Task<Response> fetch(Request request, Env& env) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    Handler handler;
    std::vector<std::string> segments;  // of `pattern`, owned: a Worker moves
  };
  struct Use {
    std::string pattern;
    Middleware middleware;
    std::vector<std::string> segments;
  };
  Task<Response> run(Context& c, const std::vector<const Middleware*>& chain, std::size_t i, const Handler* handler) const;

  std::vector<Route> routes_;
  std::vector<Use> middleware_;
  Handler not_found_;
};

// Percent-decodes `s` (no '+' rule). Invalid escapes are kept as they are.
std::string percentDecode(std::string_view s);

}  // namespace durable
