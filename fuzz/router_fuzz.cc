// The router: durable::percentDecode, durable::detail::matchRoute, and a small Worker with routes
// and middleware run through Worker::fetch.
//
// Input: byte 0 picks the mode, the rest is split at the first NUL byte where two strings are
// needed.
//   mode 0: percentDecode(rest)
//   mode 1: match(pattern, path) with and without params
//   mode 2: fetch(method, "http://localhost" + path) on the Worker below
// The handlers never suspend, so spawn() completes the fetch inline.
#include <durable/error.h>
#include <durable/http.h>
#include <durable/object.h>
#include <durable/task.h>
#include <durable/worker.h>

#include "worker/route_match.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace {

using Params = std::map<std::string, std::string, std::less<>>;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant failed: %s\n", what);
    std::abort();
  }
}

std::pair<std::string_view, std::string_view> splitAtNul(std::string_view s) {
  auto nul = s.find('\0');
  if (nul == std::string_view::npos) return {s, {}};
  return {s.substr(0, nul), s.substr(nul + 1)};
}

durable::Task<durable::Response> echoParams(durable::Context& c) {
  boost::json::object o;
  for (const auto& [k, v] : c.params) o[k] = v;
  if (auto q = c.query("q")) o["q"] = *q;
  co_return c.json(o);
}

const durable::Worker& app() {
  static const durable::Worker w = [] {
    durable::Worker w;
    // Middleware: one that adds a header around everything, one that answers on its own for
    // /admin/*, one that throws for /boom/*.
    w.use([](durable::Context& c, durable::Next next) -> durable::Task<durable::Response> {
      c.header("x-mw", "1");
      durable::Response r = co_await next();
      r.headers().set("x-after", std::to_string(r.status()));
      co_return r;
    });
    w.use("/admin/*", [](durable::Context& c, durable::Next next) -> durable::Task<durable::Response> {
      if (c.header("authorization") != std::optional<std::string>("yes")) co_return c.text("no", 401);
      co_return co_await next();
    });
    w.use("/boom/:x", [](durable::Context&, durable::Next) -> durable::Task<durable::Response> {
      throw durable::Error(durable::ErrorCode::kInvalidArgument, "boom");
      co_return durable::Response(nullptr);
    });
    w.get("/", [](durable::Context& c) -> durable::Task<durable::Response> { co_return c.text("root"); });
    w.get("/counters/:name", echoParams);
    w.post("/counters/:name/increment", echoParams);
    w.get("/a b/:x", echoParams);
    w.get("/:ns/:id/websocket", echoParams);
    w.all("/files/*", echoParams);
    w.get("/mid/*/end", echoParams);
    w.del("/k/:a/:b/:c", echoParams);
    w.get("/throw/:x", [](durable::Context& c) -> durable::Task<durable::Response> {
      if (c.param("x") == "std") throw std::runtime_error("std");
      throw durable::Error(durable::ErrorCode::kNotFound, "nope");
      co_return c.text("unreachable");
    });
    return w;
  }();
  return w;
}

constexpr std::string_view kMethods[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "BREW"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);

  switch (mode % 3) {
    case 0: {
      const std::string out = durable::percentDecode(rest);
      check(out.size() <= rest.size(), "percentDecode grew its input");
      if (rest.find('%') == std::string_view::npos) check(out == rest, "percentDecode changed text without '%'");
      break;
    }
    case 1: {
      auto [pattern, path] = splitAtNul(rest);
      const bool bare = durable::detail::matchRoute(pattern, path, nullptr);
      Params params;
      try {
        const bool full = durable::detail::matchRoute(pattern, path, &params);
        check(full == bare, "match differs with and without params");
        if (!full) check(params.empty(), "a failed match filled params");
      } catch (const durable::Error& e) {
        // Parameters decode to text (U+FFFD for bytes that are not UTF-8), so nothing should
        // throw here; if something does, it must at least be on a match and a clear refusal.
        check(bare, "match threw on a path it does not match");
        check(e.code() == durable::ErrorCode::kInvalidArgument, "match threw another code");
      }
      // Every pattern without parameters, wildcards or escapes matches itself.
      if (pattern.find_first_of(":*%") == std::string_view::npos) {
        check(durable::detail::matchRoute(pattern, pattern, nullptr), "a literal pattern does not match itself");
      }
      break;
    }
    case 2: {
      auto [path, header] = splitAtNul(rest);
      durable::RequestInit init;
      init.method = kMethods[(mode >> 2) % std::size(kMethods)];
      durable::Headers headers;
      if (!header.empty()) headers.set("authorization", header);
      init.headers = headers;
      std::optional<durable::Request> request;
      try {
        request.emplace("http://localhost" + std::string(path), std::move(init));
      } catch (const durable::Error& e) {
        check(e.code() == durable::ErrorCode::kInvalidArgument, "Request threw another code");
        return 0;
      }
      durable::Env env;  // the routes here use no bindings
      std::optional<durable::Response> out;
      durable::spawn<durable::Response>(app().fetch(std::move(*request), env),
                                        [&](durable::Result<durable::Response> r) { out.emplace(std::move(r).value()); });
      check(out.has_value(), "fetch did not complete inline");
      check(out->status() >= 200 && out->status() <= 599, "odd status");
      // The outer middleware wraps every request, except those fetch() answers 400 before
      // routing finishes: a URL it cannot parse (Request does not validate it). A route
      // parameter that is not UTF-8 no longer stops anything: it decodes to U+FFFD.
      if (!out->headers().get("x-mw").has_value()) {
        check(out->status() == 400, "the outer middleware did not run");
        const std::string& body = out->text();
        check(body.find("invalid URL") != std::string::npos, "the outer middleware did not run, and not for a bad URL");
      }
      break;
    }
  }
  return 0;
}
