// The shapes of code that object authors write inside a co_await expression, each written
// the natural way, through a real runtime and, for the README's route, a real HTTP server.
// Under g++ 12 each of these crashed (or freed twice) while the option structs owned strings
// (durable/borrowed.h says why); glibc aborts on such a free, and make test-asan reports it.
#include <durable/durable.h>
#include <durable/testing.h>

#include "unit/test_support.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <type_traits>

namespace {

using durable::Request;
using durable::Response;
using durable::Task;

// Longer than any small-string buffer, so a double free cannot hide in an inline buffer.
const std::string kLong = "a value well past the fifteen bytes of an inline string buffer";

class Notes : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  Task<Response> fetch(Request request) override {
    const auto path = request.url().pathname();
    if (path == "/increment") {
      auto count = (co_await storage().get<std::int64_t>("count")).value_or(0);
      co_await storage().put("count", ++count);
      co_return Response(durable::stringify({{"count", count}}));
    }
    if (path == "/add") {
      co_await storage().put("note:" + request.text(), durable::Bytes{kLong});
      co_return Response("added");
    }
    if (path == "/list") {
      std::string names;
      for (const auto& [key, value] : co_await storage().list({.prefix = "note:", .limit = 10})) {
        names += key + "=" + std::to_string(value.as<durable::Bytes>().data.size()) + ";";
      }
      co_return Response(names);
    }
    if (path == "/swap") {
      co_await storage().transaction([&](durable::Storage& txn) -> Task<void> {
        const auto a = co_await txn.get<std::string>("a");
        co_await txn.put("a", kLong + request.text());
        if (a) co_await txn.put("b", *a);
      });
      co_return Response((co_await storage().get<std::string>("a")).value_or(""));
    }
    if (path == "/echo-header") {
      co_return Response(request.headers().get("x-shape").value_or("") + "|" + request.text());
    }
    co_return Response("Not found", {.status = 404});
  }
};

std::string httpPost(std::uint16_t port, const std::string& target) {
  return durable::test_support::httpRoundTrip(port, boost::beast::http::verb::post, target);
}

TEST(AwaitShapes, TheReadmeRouteServedOverHttpManyTimes) {
  durable::testing::Env env;
  env.exportClass<Notes>("COUNTER");
  durable::Worker app;
  // Exactly the README's shape: the stub, the URL and the braced init all inside co_await.
  app.post("/counters/:id/increment", [](durable::Context& c) -> Task<Response> {
    const auto& counters = c.env().ns("COUNTER");
    co_return co_await counters.getByName(c.param("id")).fetch("http://do/increment", {.method = "POST"});
  });
  const auto port = env.serve(app);
  for (int i = 1; i <= 300; ++i) {
    ASSERT_EQ(httpPost(port, "/counters/a/increment"), "200 {\"count\":" + std::to_string(i) + "}");
  }
  EXPECT_EQ(httpPost(port, "/counters/a-name-longer-than-an-inline-string-buffer/increment"), "200 {\"count\":1}");
}

// Run inside a Worker-like coroutine on a shard, the other natural shapes.
TEST(AwaitShapes, OptionStructsListsBytesTransactionsAndHeaders) {
  durable::testing::Env env;
  const auto& ns = env.exportClass<Notes>("NOTES");
  const auto out = env.run([](const durable::Namespace& ns) -> Task<std::string> {
    std::string seen;
    // A stub with options, a borrowed Headers and a body, all braced in place.
    const std::string body = kLong;
    durable::Headers named;
    named.set("x-shape", kLong);
    auto r = co_await ns.get(ns.idFromName(kLong), {.locationHint = "enam"})
                 .fetch("http://do/echo-header", {.method = "POST", .headers = named, .body = body});
    seen += r.text() == kLong + "|" + kLong ? "headers " : "headers(" + r.text() + ") ";
    // A named init with a braced header list outlives the list.
    durable::RequestInit init{.method = "POST", .headers = {{"x-shape", "kept"}}, .body = "b"};
    r = co_await ns.getByName("n").fetch("http://do/echo-header", init);
    seen += r.text() == "kept|b" ? "init " : "init(" + r.text() + ") ";
    co_await ns.getByName("n").fetch(Request("http://do/add", {.method = "POST", .body = "x"}));
    co_await ns.getByName("n").fetch("http://do/add", {.method = "POST", .body = "y"});
    r = co_await ns.getByName("n").fetch("http://do/list");
    seen += r.text() == "note:x=" + std::to_string(kLong.size()) + ";note:y=" + std::to_string(kLong.size()) + ";"
                ? "list "
                : "list(" + r.text() + ") ";
    co_await ns.getByName("n").fetch("http://do/swap", {.method = "POST", .body = "1"});
    r = co_await ns.getByName("n").fetch("http://do/swap", {.method = "POST", .body = "2"});
    seen += r.text() == kLong + "2" ? "transaction" : "transaction(" + r.text() + ")";
    co_return seen;
  }(ns));
  EXPECT_EQ(out, "headers init list transaction");
}

TEST(AwaitShapes, BraceInitsCannotBorrowATemporary) {
  // Each of these would dangle once the statement ends, so each is a compile error.
  static_assert(!std::is_constructible_v<durable::BorrowedString, std::string&&>);
  static_assert(!std::is_constructible_v<durable::BorrowedString, const std::string&&>);
  static_assert(!std::is_assignable_v<std::optional<durable::BorrowedString>&, std::string&&>);
  static_assert(!std::is_constructible_v<durable::HeadersInit, durable::Headers&&>);
  static_assert(!std::is_constructible_v<durable::Borrowed<durable::WebSocket>, durable::WebSocket&&>);
  static_assert(std::is_constructible_v<durable::BorrowedString, const std::string&>);
  // More braced header pairs than an init keeps is an error, not an overflow.
  EXPECT_THROW((durable::HeadersInit{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}, {"e", "5"},
                                     {"f", "6"}, {"g", "7"}, {"h", "8"}, {"i", "9"}}),
               durable::Error);
}

}  // namespace
