// RPC on stubs (durable/rpc.h) and the error contract of calls: results, described structs
// and JSON across the call, remote exceptions, the output gate on results, calls between
// objects on different shards, a stub of the wrong class, and overload (max_pending_calls)
// for RPC, stub.fetch and HTTP.
#include <durable/durable.h>
#include <durable/testing.h>

#include "unit/test_support.h"

#include <boost/describe.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using durable::Task;
namespace dt = durable::testing;
using namespace std::chrono_literals;

struct Point {
  std::int64_t x = 0;
  std::int64_t y = 0;
  std::string label;
};
BOOST_DESCRIBE_STRUCT(Point, (), (x, y, label))

class Counter : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  Task<std::int64_t> increment(std::int64_t by) {
    const auto n = (co_await storage().get<std::int64_t>("n")).value_or(0) + by;
    co_await storage().put("n", n);
    co_return n;
  }
  Task<std::string> greet(const std::string& name, bool loud) {
    co_return (loud ? "HELLO " : "hello ") + name;
  }
  Task<void> fail(std::string why) {
    throw durable::Error(durable::ErrorCode::kNotFound, why);
    co_return;
  }
  Task<std::int64_t> failPlain() {
    throw std::runtime_error("plain failure");
    co_return 0;
  }
  Task<Point> shift(Point p, std::int64_t dx) {
    p.x += dx;
    p.label += "!";
    co_return p;
  }
  Task<boost::json::object> describe(boost::json::array tags) {
    boost::json::object o;
    o["tags"] = std::move(tags);
    o["n"] = (co_await storage().get<std::int64_t>("n")).value_or(0);
    co_return o;
  }
  // Object to object: a call from inside an event.
  Task<std::int64_t> incrementOther(std::string name, std::int64_t by) {
    const auto& ns = env().ns("COUNTER");
    co_return co_await ns.getByName(name).call<&Counter::increment>(by);
  }
  // Not listed in Rpc: stubs cannot call it (a static_assert says so).
  Task<void> internal() { co_return; }

  durable::Task<durable::Response> fetch(durable::Request request) override {
    const auto n = co_await increment(1);
    co_return durable::Response(std::to_string(n));
  }

  using Rpc = durable::Rpc<&Counter::increment, &Counter::greet, &Counter::fail, &Counter::failPlain, &Counter::shift,
                           &Counter::describe, &Counter::incrementOther>;
};

class Other : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  Task<std::int64_t> ping() { co_return 1; }
  using Rpc = durable::Rpc<&Other::ping>;
};

// Runs `fn` on a shard thread, as a Worker's code would, and returns once it has run.
void onShard(dt::Env& env, std::function<void()> fn) {
  env.run([](std::function<void()> f) -> Task<void> {
    f();
    co_return;
  }(std::move(fn)));
}

// What the call threw, as the caller sees it.
template <class F>
durable::Error callError(F&& fn) {
  try {
    fn();
    ADD_FAILURE() << "the call did not throw";
  } catch (const durable::Error& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-durable exception: " << e.what();
  }
  return durable::Error(durable::ErrorCode::kInternal, "none");
}

TEST(Rpc, ReturnsTheMethodsResultAndItsWritesSurviveARestart) {
  dt::Env env;
  const auto& ns = env.exportClass<Counter>("COUNTER");
  const auto stub = ns.getByName("a");
  EXPECT_EQ(env.run(stub.call<&Counter::increment>(5)), 5);
  EXPECT_EQ(env.run(stub.call<&Counter::increment>(std::int64_t{3})), 8);
  EXPECT_EQ(env.run(stub.call<&Counter::greet>("ada", true)), "HELLO ada");
  // The same object by fetch and by RPC: one instance, one storage.
  EXPECT_EQ(env.fetch(stub, "http://do/").text(), "9");
  env.restart();
  EXPECT_EQ(env.run(stub.call<&Counter::increment>(0)), 9);
}

TEST(Rpc, DescribedStructsAndJsonCrossTheCall) {
  dt::Env env;
  const auto& ns = env.exportClass<Counter>("COUNTER");
  const auto stub = ns.getByName("a");
  const Point p = env.run(stub.call<&Counter::shift>(Point{1, 2, "p"}, 10));
  EXPECT_EQ(p.x, 11);
  EXPECT_EQ(p.y, 2);
  EXPECT_EQ(p.label, "p!");
  env.run(stub.call<&Counter::increment>(4));
  const auto o = env.run(stub.call<&Counter::describe>(boost::json::array{"a", 1}));
  EXPECT_EQ(durable::Json(o), durable::Json(boost::json::object{{"tags", boost::json::array{"a", 1}}, {"n", 4}}));
}

TEST(Rpc, WhatTheMethodThrowsReachesTheCallerAsARemoteError) {
  dt::Env env;
  const auto& ns = env.exportClass<Counter>("COUNTER");
  const auto stub = ns.getByName("a");
  auto e = callError([&] { env.run(stub.call<&Counter::fail>("no such row")); });
  EXPECT_EQ(e.code(), durable::ErrorCode::kNotFound);
  EXPECT_STREQ(e.what(), "no such row");
  EXPECT_TRUE(e.remote());
  EXPECT_FALSE(e.retryable());
  EXPECT_FALSE(e.overloaded());
  e = callError([&] { env.run(stub.call<&Counter::failPlain>()); });
  EXPECT_EQ(e.code(), durable::ErrorCode::kInternal);
  EXPECT_STREQ(e.what(), "plain failure");
  EXPECT_TRUE(e.remote());
  // The object stays usable.
  EXPECT_EQ(env.run(stub.call<&Counter::increment>(1)), 1);
}

TEST(Rpc, AStubOfAnotherClassIsRefusedByTheRuntimeNotTheObject) {
  dt::Env env;
  env.exportClass<Counter>("COUNTER");
  const auto& others = env.exportClass<Other>("OTHER");
  const auto stub = others.getByName("a");
  const auto e = callError([&] { env.run(stub.call<&Counter::increment>(1)); });
  EXPECT_EQ(e.code(), durable::ErrorCode::kInvalidArgument);
  EXPECT_FALSE(e.remote());
  EXPECT_NE(std::string(e.what()).find("OTHER"), std::string::npos) << e.what();
  EXPECT_EQ(env.run(stub.call<&Other::ping>()), 1);
}

TEST(Rpc, ObjectsCallEachOtherAcrossShards) {
  dt::EnvOptions options;
  options.shards = 2;
  dt::Env env(options);
  const auto& ns = env.exportClass<Counter>("COUNTER");
  // Eight objects over two shards: most calls cross from one shard to the other.
  std::vector<std::string> names;
  for (int i = 0; names.size() < 8; ++i) names.push_back("n" + std::to_string(i));
  for (const auto& from : names) {
    for (const auto& to : names) {
      if (from == to) continue;
      env.run(ns.getByName(from).call<&Counter::incrementOther>(to, 1));
    }
  }
  // Each object was incremented once by each of the 7 others.
  for (const auto& name : names) EXPECT_EQ(env.run(ns.getByName(name).call<&Counter::increment>(0)), 7) << name;
}

// The result is output: it leaves only once the writes the method made are durable.
TEST(Rpc, TheResultWaitsForTheMethodsWritesToBeDurable) {
  dt::EnvOptions options;
  options.storageEngine = "memory";
  dt::Env env(options);
  const auto& ns = env.exportClass<Counter>("COUNTER");
  const auto stub = ns.getByName("a");
  EXPECT_EQ(env.run(stub.call<&Counter::increment>(1)), 1);

  env.holdCommits();
  auto result = std::make_shared<std::promise<std::int64_t>>();
  auto answered = result->get_future();
  onShard(env, [stub, result] {
    durable::spawn(stub.call<&Counter::increment>(1),
                   std::function<void(durable::Result<std::int64_t>)>(
                       [result](durable::Result<std::int64_t> r) { result->set_value(r.value()); }));
  });
  EXPECT_EQ(answered.wait_for(300ms), std::future_status::timeout) << "the result left before its write was durable";
  env.releaseCommits();
  ASSERT_EQ(answered.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(answered.get(), 2);
}

// ---------------------------------------------------------------- overload

std::string httpGet(std::uint16_t port, const std::string& target, std::string* retryAfter = nullptr) {
  return durable::test_support::httpRoundTrip(port, boost::beast::http::verb::get, target, retryAfter);
}

// A flood on one object: past max_pending_calls, calls fail at once as overloaded; the object
// keeps serving those it accepted, and every acknowledged increment is kept.
TEST(Overload, CallsPastTheLimitFailAtOnceAndNothingAcceptedIsLost) {
  dt::EnvOptions options;
  options.storageEngine = "memory";
  options.maxPendingCalls = 4;
  dt::Env env(options);
  const auto& ns = env.exportClass<Counter>("COUNTER");
  const auto stub = ns.getByName("hot");

  // Commits held: each accepted call stays pending, waiting for its write.
  env.holdCommits();
  struct Outcome {
    std::mutex mu;
    int ok = 0, overloaded = 0, other = 0;
    std::vector<std::int64_t> values;
  };
  auto outcome = std::make_shared<Outcome>();
  auto settled = std::make_shared<std::atomic<int>>(0);
  // A flood: all but the 4 the object may hold are refused at once, so what it keeps in memory
  // for waiting calls stays bounded by max_pending_calls however many come.
  constexpr int kCalls = 2000;
  onShard(env, [stub, outcome, settled] {
    for (int i = 0; i < kCalls; ++i) {
      durable::spawn(stub.call<&Counter::increment>(1),
                     std::function<void(durable::Result<std::int64_t>)>([outcome, settled](durable::Result<std::int64_t> r) {
                       std::lock_guard lock(outcome->mu);
                       if (r.ok()) {
                         ++outcome->ok;
                         outcome->values.push_back(r.value());
                       } else {
                         try {
                           std::rethrow_exception(r.error());
                         } catch (const durable::Error& e) {
                           (e.overloaded() && !e.remote() && !e.retryable() ? outcome->overloaded : outcome->other)++;
                         } catch (...) {
                           ++outcome->other;
                         }
                       }
                       ++*settled;
                     }));
    }
  });
  // The refusals come at once, while the accepted calls still wait for their commits.
  for (int i = 0; i < 500 && settled->load() < kCalls - 4; ++i) std::this_thread::sleep_for(10ms);
  {
    std::lock_guard lock(outcome->mu);
    EXPECT_EQ(outcome->overloaded, kCalls - 4);
    EXPECT_EQ(outcome->ok, 0);
  }
  // A fetch is refused the same way, and a Worker that does not catch answers 503 with
  // Retry-After.
  const auto e = callError([&] { env.fetch(stub, "http://do/"); });
  EXPECT_TRUE(e.overloaded());
  EXPECT_EQ(e.httpStatus(), 503);
  durable::Worker app;
  app.get("/hot", [](durable::Context& c) -> Task<durable::Response> {
    co_return co_await c.env().ns("COUNTER").getByName("hot").fetch("http://do/");
  });
  const auto port = env.serve(app);
  std::string retryAfter;
  const auto answer = httpGet(port, "/hot", &retryAfter);
  EXPECT_EQ(answer, R"(503 {"error":"Durable Object is overloaded. Too many requests queued."})");
  EXPECT_EQ(retryAfter, "1");

  env.releaseCommits();
  for (int i = 0; i < 500 && settled->load() < kCalls; ++i) std::this_thread::sleep_for(10ms);
  {
    std::lock_guard lock(outcome->mu);
    EXPECT_EQ(outcome->ok, 4);
    EXPECT_EQ(outcome->other, 0);
    std::sort(outcome->values.begin(), outcome->values.end());
    EXPECT_EQ(outcome->values, (std::vector<std::int64_t>{1, 2, 3, 4}));
  }
  // Serving again, with exactly the accepted increments kept, also after a restart.
  EXPECT_EQ(httpGet(port, "/hot"), "200 5");
  env.restart();
  EXPECT_EQ(env.run(stub.call<&Counter::increment>(0)), 5);
}

}  // namespace
