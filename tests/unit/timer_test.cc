// durable::sleep: on the manual clock (it ends exactly when the clock passes its deadline),
// on the real clock, in a Worker's handler, the input gate left open while an object sleeps,
// and the error off the runtime's threads.
#include <durable/durable.h>
#include <durable/testing.h>

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>

namespace {

using durable::Request;
using durable::Response;
using durable::Task;
namespace dt = durable::testing;
using namespace std::chrono_literals;

class Sleeper : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  Task<Response> fetch(Request request) override {
    const auto path = request.url().pathname();
    if (path == "/sleep") {
      co_await storage().put("state", std::string("sleeping"));
      co_await durable::sleep(1000ms);
      co_await storage().put("state", std::string("awake"));
      co_return Response("slept");
    }
    // Another event, served while /sleep waits.
    co_return Response((co_await storage().get<std::string>("state")).value_or("none"));
  }
};

// Starts a fetch on the runtime and returns its text later.
std::future<std::string> startFetch(dt::Env& env, const durable::Stub& stub, const std::string& url) {
  auto p = std::make_shared<std::promise<std::string>>();
  auto f = p->get_future();
  env.run([](durable::Stub stub, std::string url, std::shared_ptr<std::promise<std::string>> p) -> Task<void> {
    durable::spawn(stub.fetch(url), std::function<void(durable::Result<Response>)>([p](durable::Result<Response> r) {
                     if (r.ok()) {
                       p->set_value(r.value().text());
                     } else {
                       p->set_value("error");
                     }
                   }));
    co_return;
  }(stub, url, p));
  return f;
}

TEST(Sleep, EndsWhenTheManualClockPassesItsDeadlineAndLetsOtherEventsIn) {
  dt::EnvOptions o;
  o.manualClock = true;
  dt::Env env(o);
  const auto& ns = env.exportClass<Sleeper>("SLEEPER");
  const auto stub = ns.getByName("s");
  auto slept = startFetch(env, stub, "http://do/sleep");
  // While it sleeps, the object serves other events: the gate is open.
  EXPECT_EQ(env.fetch(stub, "http://do/state").text(), "sleeping");
  env.advanceClock(999ms);
  EXPECT_EQ(slept.wait_for(200ms), std::future_status::timeout);
  EXPECT_EQ(env.fetch(stub, "http://do/state").text(), "sleeping");
  env.advanceClock(1ms);
  ASSERT_EQ(slept.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(slept.get(), "slept");
  EXPECT_EQ(env.fetch(stub, "http://do/state").text(), "awake");
}

TEST(Sleep, OnTheRealClockItWaitsAtLeastItsDuration) {
  dt::Env env;
  const auto started = std::chrono::steady_clock::now();
  env.run([]() -> Task<void> { co_await durable::sleep(50); }());
  EXPECT_GE(std::chrono::steady_clock::now() - started, 50ms);
  // Zero and negative durations end on a later turn, not never.
  env.run([]() -> Task<void> {
    co_await durable::sleep(0);
    co_await durable::sleep(-5);
  }());
}

TEST(Sleep, WorksInAWorkersHandler) {
  dt::EnvOptions o;
  o.manualClock = true;
  dt::Env env(o);
  durable::Worker app;
  app.get("/wait", [](durable::Context& c) -> Task<Response> {
    co_await durable::sleep(5000ms);
    co_return c.text("waited");
  });
  auto answer = std::async(std::launch::async, [&] { return env.run(app.fetch(Request("http://x/wait"), env.env())).text(); });
  EXPECT_EQ(answer.wait_for(200ms), std::future_status::timeout);
  env.advanceClock(5000ms);
  ASSERT_EQ(answer.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(answer.get(), "waited");
}

TEST(Sleep, OffTheRuntimesThreadsItFailsWithAClearError) {
  std::exception_ptr failure;
  // A coroutine started on the test's own thread, which no shard runs.
  durable::spawn([]() -> Task<void> { co_await durable::sleep(10); }(),
                 std::function<void(durable::Result<void>)>([&](durable::Result<void> r) { failure = r.error(); }));
  ASSERT_TRUE(failure);
  try {
    std::rethrow_exception(failure);
  } catch (const durable::Error& e) {
    EXPECT_EQ(e.code(), durable::ErrorCode::kFailedPrecondition);
    EXPECT_NE(std::string(e.what()).find("Worker"), std::string::npos) << e.what();
  }
}

}  // namespace
