#include <durable/error.h>
#include <durable/worker.h>

#include "worker/route_match.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace durable {
namespace {

using Params = std::map<std::string, std::string, std::less<>>;

// Runs a fetch to completion; the handlers here never suspend, so spawn() finishes inline.
Response call(const Worker& w, std::string method, std::string path, Headers headers = {}) {
  Env env;
  std::optional<Response> out;
  spawn<Response>(w.fetch(Request("http://localhost" + path, {.method = method, .headers = headers}), env),
                  [&](Result<Response> r) { out.emplace(std::move(r).value()); });
  EXPECT_TRUE(out.has_value());
  return out ? std::move(*out) : Response(nullptr);
}

Response get(const Worker& w, std::string path) { return call(w, "GET", std::move(path)); }

TEST(WorkerMatchTest, LiteralSegments) {
  EXPECT_TRUE(detail::matchRoute("/health", "/health", nullptr));
  EXPECT_FALSE(detail::matchRoute("/health", "/healthz", nullptr));
  EXPECT_FALSE(detail::matchRoute("/health", "/", nullptr));
  EXPECT_FALSE(detail::matchRoute("/a/b", "/a", nullptr));
  EXPECT_TRUE(detail::matchRoute("/", "/", nullptr));
}

TEST(WorkerMatchTest, TrailingSlashIsStrict) {
  EXPECT_FALSE(detail::matchRoute("/health", "/health/", nullptr));
  EXPECT_FALSE(detail::matchRoute("/health/", "/health", nullptr));
  EXPECT_TRUE(detail::matchRoute("/health/", "/health/", nullptr));
}

TEST(WorkerMatchTest, ParamTakesOneNonEmptySegment) {
  Params p;
  EXPECT_TRUE(detail::matchRoute("/counters/:name/increment", "/counters/abc/increment", &p));
  EXPECT_EQ(p["name"], "abc");
  EXPECT_FALSE(detail::matchRoute("/counters/:name", "/counters/", nullptr));
  EXPECT_FALSE(detail::matchRoute("/counters/:name", "/counters/a/b", nullptr));
  EXPECT_FALSE(detail::matchRoute("/counters/:name", "/counters", nullptr));
}

TEST(WorkerMatchTest, SeveralParams) {
  Params p;
  EXPECT_TRUE(detail::matchRoute("/:ns/:id", "/rooms/42", &p));
  EXPECT_EQ(p["ns"], "rooms");
  EXPECT_EQ(p["id"], "42");
}

TEST(WorkerMatchTest, ParamsArePercentDecoded) {
  Params p;
  EXPECT_TRUE(detail::matchRoute("/counters/:name/increment", "/counters/a%20b/increment", &p));
  EXPECT_EQ(p["name"], "a b");
  EXPECT_TRUE(detail::matchRoute("/k/:key", "/k/a%2Fb", &p));
  EXPECT_EQ(p["key"], "a/b");
  // No '+' rule in paths.
  EXPECT_TRUE(detail::matchRoute("/k/:key", "/k/a+b", &p));
  EXPECT_EQ(p["key"], "a+b");
}

TEST(WorkerMatchTest, FailedMatchLeavesParamsAlone) {
  Params p;
  EXPECT_FALSE(detail::matchRoute("/a/:x/c", "/a/b/d", &p));
  EXPECT_TRUE(p.empty());
}

TEST(WorkerMatchTest, TrailingStarMatchesAnyRestIncludingNone) {
  for (const char* path : {"/api", "/api/", "/api/ping", "/api/a/b"}) {
    EXPECT_TRUE(detail::matchRoute("/api/*", path, nullptr)) << path;
  }
  EXPECT_FALSE(detail::matchRoute("/api/*", "/apix", nullptr));
  EXPECT_FALSE(detail::matchRoute("/api/*", "/", nullptr));
  EXPECT_FALSE(detail::matchRoute("/api/*", "/other/api", nullptr));
}

TEST(WorkerMatchTest, StarAloneMatchesEverything) {
  for (const char* path : {"/", "/a", "/a/b/", "/x%20y"}) {
    EXPECT_TRUE(detail::matchRoute("*", path, nullptr)) << path;
    EXPECT_TRUE(detail::matchRoute("/*", path, nullptr)) << path;
  }
}

TEST(WorkerMatchTest, PercentDecode) {
  EXPECT_EQ(percentDecode("a%20b%2f%2F"), "a b//");
  EXPECT_EQ(percentDecode("a+b"), "a+b");
  EXPECT_EQ(percentDecode("%zz%4"), "%zz%4");
  EXPECT_EQ(percentDecode("%"), "%");
}

TEST(WorkerFetchTest, RoutesLiteralParamAndStar) {
  Worker w;
  w.get("/health", [](Context& c) -> Task<Response> { co_return c.text("ok"); });
  w.post("/counters/:name/increment",
         [](Context& c) -> Task<Response> { co_return c.json(boost::json::object{{"name", c.param("name")}}); });
  w.get("/files/*", [](Context& c) -> Task<Response> { co_return c.text("files"); });

  Response health = get(w, "/health");
  EXPECT_EQ(health.status(), 200);
  EXPECT_EQ(health.text(), "ok");
  EXPECT_EQ(health.headers().get("content-type"), "text/plain; charset=UTF-8");

  Response inc = call(w, "POST", "/counters/a%20b/increment");
  EXPECT_EQ(inc.status(), 200);
  EXPECT_EQ(inc.headers().get("content-type"), "application/json");
  EXPECT_EQ(inc.json().at("name").as_string(), "a b");

  EXPECT_EQ(get(w, "/files/x/y.txt").text(), "files");
  EXPECT_EQ(get(w, "/files").text(), "files");
}

TEST(WorkerFetchTest, FirstRegisteredRouteWins) {
  Worker w;
  w.get("/items/special", [](Context& c) -> Task<Response> { co_return c.text("special"); });
  w.get("/items/:id", [](Context& c) -> Task<Response> { co_return c.text("id " + c.param("id")); });
  EXPECT_EQ(get(w, "/items/special").text(), "special");
  EXPECT_EQ(get(w, "/items/7").text(), "id 7");
}

TEST(WorkerFetchTest, MissingParamIsEmpty) {
  Worker w;
  w.get("/x", [](Context& c) -> Task<Response> { co_return c.text("[" + c.param("nope") + "]"); });
  EXPECT_EQ(get(w, "/x").text(), "[]");
}

TEST(WorkerFetchTest, QueryAndRequestHeader) {
  Worker w;
  w.get("/q", [](Context& c) -> Task<Response> {
    co_return c.text(c.query("name").value_or("-") + "|" + c.query("missing").value_or("-") + "|" +
                     c.header("X-Thing").value_or("-"));
  });
  EXPECT_EQ(call(w, "GET", "/q?name=a+b%21", {{"x-thing", "yes"}}).text(), "a b!|-|yes");
}

TEST(WorkerFetchTest, MethodMismatchIsNotFound) {
  Worker w;
  w.post("/only-post", [](Context& c) -> Task<Response> { co_return c.text("posted"); });
  Response r = get(w, "/only-post");
  EXPECT_EQ(r.status(), 404);
  EXPECT_EQ(r.text(), "404 Not Found");
  EXPECT_EQ(r.headers().get("content-type"), "text/plain; charset=UTF-8");
}

TEST(WorkerFetchTest, UnknownPathIsNotFound) {
  Worker w;
  w.get("/health", [](Context& c) -> Task<Response> { co_return c.text("ok"); });
  Response r = get(w, "/health/");
  EXPECT_EQ(r.status(), 404);
  EXPECT_EQ(r.text(), "404 Not Found");
}

TEST(WorkerFetchTest, HeadMatchesGetRoute) {
  Worker w;
  w.get("/g", [](Context& c) -> Task<Response> { co_return c.text("g"); });
  EXPECT_EQ(call(w, "HEAD", "/g").status(), 200);
  EXPECT_EQ(call(w, "DELETE", "/g").status(), 404);
}

TEST(WorkerFetchTest, AllMatchesAnyMethod) {
  Worker w;
  w.all("/any", [](Context& c) -> Task<Response> { co_return c.text(c.req().method()); });
  EXPECT_EQ(call(w, "PUT", "/any").text(), "PUT");
  EXPECT_EQ(call(w, "DELETE", "/any").text(), "DELETE");
}

TEST(WorkerFetchTest, CustomNotFound) {
  Worker w;
  w.notFound([](Context& c) -> Task<Response> { co_return c.json(boost::json::object{{"missing", true}}, 404); });
  Response r = get(w, "/nothing");
  EXPECT_EQ(r.status(), 404);
  EXPECT_EQ(r.json().at("missing").as_bool(), true);
}

TEST(WorkerMiddlewareTest, OnionOrder) {
  std::vector<std::string> log;
  Worker w;
  w.use([&](Context&, Next next) -> Task<Response> {
    log.push_back("a before");
    Response r = co_await next();
    log.push_back("a after");
    co_return r;
  });
  w.use("/api/*", [&](Context&, Next next) -> Task<Response> {
    log.push_back("b before");
    Response r = co_await next();
    r.headers().set("x-b", "1");
    log.push_back("b after");
    co_return r;
  });
  w.use("/other/*", [&](Context&, Next next) -> Task<Response> {
    log.push_back("never");
    co_return co_await next();
  });
  w.get("/api/ping", [&](Context& c) -> Task<Response> {
    log.push_back("handler");
    co_return c.text("pong");
  });
  Response r = get(w, "/api/ping");
  EXPECT_EQ(r.text(), "pong");
  EXPECT_EQ(r.headers().get("x-b"), "1");
  EXPECT_EQ(log, (std::vector<std::string>{"a before", "b before", "handler", "b after", "a after"}));
}

TEST(WorkerMiddlewareTest, RunsBeforeNotFound) {
  int seen = 0;
  Worker w;
  w.use([&](Context&, Next next) -> Task<Response> {
    ++seen;
    co_return co_await next();
  });
  Response r = get(w, "/missing");
  EXPECT_EQ(seen, 1);
  EXPECT_EQ(r.status(), 404);
  EXPECT_EQ(r.text(), "404 Not Found");
}

TEST(WorkerMiddlewareTest, AnswersWithoutNext) {
  bool handlerRan = false;
  Worker w;
  w.use("/admin/*", [](Context& c, Next) -> Task<Response> {
    if (!c.header("authorization")) co_return c.text("unauthorized", 401);
    co_return c.text("should not get here", 500);
  });
  w.get("/admin/panel", [&](Context& c) -> Task<Response> {
    handlerRan = true;
    co_return c.text("panel");
  });
  Response r = get(w, "/admin/panel");
  EXPECT_EQ(r.status(), 401);
  EXPECT_EQ(r.text(), "unauthorized");
  EXPECT_FALSE(handlerRan);
}

TEST(WorkerMiddlewareTest, ContextHeaderAppliedToFinalResponse) {
  Worker w;
  w.use([](Context& c, Next next) -> Task<Response> {
    c.header("X-Request-Id", "abc");
    co_return co_await next();
  });
  w.get("/h", [](Context& c) -> Task<Response> {
    c.header("Content-Type", "text/csv");
    co_return c.text("a,b");
  });
  Response r = get(w, "/h");
  EXPECT_EQ(r.headers().get("x-request-id"), "abc");
  // c.header replaces what the handler's response carried.
  EXPECT_EQ(r.headers().get("content-type"), "text/csv");
}

TEST(WorkerErrorTest, RuntimeErrorBecomes500Json) {
  Worker w;
  w.get("/boom", [](Context&) -> Task<Response> {
    throw std::runtime_error("kaboom");
    co_return Response("unreachable");
  });
  Response r = get(w, "/boom");
  EXPECT_EQ(r.status(), 500);
  EXPECT_EQ(r.headers().get("content-type"), "application/json");
  EXPECT_EQ(r.json(), (Json(boost::json::object{{"error", "kaboom"}})));
}

TEST(WorkerErrorTest, DurableErrorUsesItsStatus) {
  Worker w;
  w.get("/bad", [](Context&) -> Task<Response> {
    throw Error(ErrorCode::kInvalidArgument, "bad id");
    co_return Response("unreachable");
  });
  w.get("/gone", [](Context&) -> Task<Response> {
    throw Error(ErrorCode::kNotFound, "no such thing");
    co_return Response("unreachable");
  });
  Response bad = get(w, "/bad");
  EXPECT_EQ(bad.status(), 400);
  EXPECT_EQ(bad.json().at("error").as_string(), "bad id");
  EXPECT_EQ(get(w, "/gone").status(), 404);
}

TEST(WorkerErrorTest, MiddlewareErrorAndContextHeadersStillApplied) {
  Worker w;
  w.use([](Context& c, Next next) -> Task<Response> {
    c.header("x-trace", "t1");
    co_return co_await next();
  });
  w.use([](Context&, Next) -> Task<Response> {
    throw Error(ErrorCode::kResourceExhausted, "slow down");
    co_return Response("unreachable");
  });
  w.get("/x", [](Context& c) -> Task<Response> { co_return c.text("x"); });
  Response r = get(w, "/x");
  EXPECT_EQ(r.status(), 429);
  EXPECT_EQ(r.json().at("error").as_string(), "slow down");
  EXPECT_EQ(r.headers().get("x-trace"), "t1");
}

TEST(WorkerErrorTest, HttpStatusForEveryCode) {
  EXPECT_EQ(Error(ErrorCode::kInvalidArgument, "").httpStatus(), 400);
  EXPECT_EQ(Error(ErrorCode::kNotFound, "").httpStatus(), 404);
  EXPECT_EQ(Error(ErrorCode::kPayloadTooLarge, "").httpStatus(), 413);
  EXPECT_EQ(Error(ErrorCode::kResourceExhausted, "").httpStatus(), 429);
  EXPECT_EQ(Error(ErrorCode::kInternal, "").httpStatus(), 500);
  EXPECT_EQ(Error(ErrorCode::kUnavailable, "").httpStatus(), 503);
}

}  // namespace
}  // namespace durable

namespace durable {
namespace {

// A Worker's URL pattern params are percent-decoded as URLSearchParams decodes: bytes that are
// not UTF-8 become U+FFFD, so a handler always gets text it can store or send, and the request
// is answered rather than refused.
TEST(WorkerErrorTest, ParamThatIsNotUtf8DecodesToReplacementCharacter) {
  Worker w;
  int middlewareRuns = 0;
  w.use([&middlewareRuns](Context& c, Next next) -> Task<Response> {
    ++middlewareRuns;
    co_return co_await next();
  });
  w.get("/counters/:id", [](Context& c) -> Task<Response> { co_return c.text(c.param("id")); });
  EXPECT_EQ(get(w, "/counters/%C3%BF").text(), "\xc3\xbf");
  Response bad = get(w, "/counters/%FF");
  EXPECT_EQ(bad.status(), 200);
  EXPECT_EQ(bad.text(), "\xEF\xBF\xBD");
  // A truncated sequence is one U+FFFD, and the byte that broke it is read afresh.
  EXPECT_EQ(get(w, "/counters/a%E2%82b").text(), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(middlewareRuns, 3);  // every request went through it
}

}  // namespace
}  // namespace durable
