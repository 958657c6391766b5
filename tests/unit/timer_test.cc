// durable::sleep: on the manual clock (it ends exactly when the clock passes its deadline),
// on the real clock, in a Worker's handler, the input gate left open while an object sleeps,
// and the error off the runtime's threads.
#include <durable/durable.h>
#include <durable/testing.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

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

// setTimeout's shape in an object: waitUntil() of a task that sleeps, then works inside the
// object. The object stays in memory until it has run, even past its idle timeout.
class Reminder : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  Task<Response> fetch(Request request) override {
    if (request.url().pathname() == "/remind") {
      state().waitUntil([](durable::Storage& storage) -> Task<void> {
        co_await durable::sleep(60'000ms);
        co_await storage.put("reminded", true);
      }(storage()));
      co_return Response("set");
    }
    co_return Response((co_await storage().get<bool>("reminded")).value_or(false) ? "yes" : "no");
  }
};

TEST(Sleep, ATimerSetWithWaitUntilRunsInsideTheObjectAndKeepsItInMemory) {
  dt::EnvOptions o;
  o.manualClock = true;
  o.idleTimeoutMs = 1000;
  dt::Env env(o);
  const auto& ns = env.exportClass<Reminder>("REMINDER");
  const auto stub = ns.getByName("r");
  EXPECT_EQ(env.fetch(stub, "http://do/remind").text(), "set");
  env.advanceClock(30'000ms);
  std::this_thread::sleep_for(1500ms);  // past the idle timeout on the steady clock, too
  EXPECT_EQ(env.liveObjects(), 1u);
  EXPECT_EQ(env.fetch(stub, "http://do/check").text(), "no");
  env.advanceClock(30'000ms);
  for (int i = 0; i < 100 && env.fetch(stub, "http://do/check").text() != "yes"; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(env.fetch(stub, "http://do/check").text(), "yes");
  env.restart();
  EXPECT_EQ(env.fetch(stub, "http://do/check").text(), "yes");
}

// setTimeout itself: a cancellable timer that runs as an event of the object.
class Alarmist : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  Task<Response> fetch(Request request) override {
    const auto path = request.url().pathname();
    if (path == "/set" || path == "/set-and-cancel") {
      timeout_ = durable::setTimeout(10'000ms, [this]() -> Task<void> {
        const auto n = (co_await storage().get<std::int64_t>("fired")).value_or(0) + 1;
        co_await storage().put("fired", n);
      });
      if (path == "/set-and-cancel") timeout_.cancel();
      co_return Response(timeout_.pending() ? "pending" : "cancelled");
    }
    co_return Response(std::to_string((co_await storage().get<std::int64_t>("fired")).value_or(0)));
  }

 private:
  durable::Timeout timeout_;
};

TEST(SetTimeout, RunsOnceAsAnEventOfTheObjectOrNotAtAllOnceCancelled) {
  dt::EnvOptions o;
  o.manualClock = true;
  o.idleTimeoutMs = 500;
  dt::Env env(o);
  const auto& ns = env.exportClass<Alarmist>("ALARMIST");
  const auto a = ns.getByName("a");
  const auto b = ns.getByName("b");
  EXPECT_EQ(env.fetch(a, "http://do/set").text(), "pending");
  EXPECT_EQ(env.fetch(b, "http://do/set-and-cancel").text(), "cancelled");
  std::this_thread::sleep_for(1200ms);  // past the idle timeout: only the pending one stays
  EXPECT_EQ(env.liveObjects(), 1u);
  env.advanceClock(9'999ms);
  EXPECT_EQ(env.fetch(a, "http://do/count").text(), "0");
  env.advanceClock(1ms);
  for (int i = 0; i < 100 && env.fetch(a, "http://do/count").text() != "1"; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(env.fetch(a, "http://do/count").text(), "1");
  env.advanceClock(60'000ms);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(env.fetch(a, "http://do/count").text(), "1");  // once
  EXPECT_EQ(env.fetch(b, "http://do/count").text(), "0");  // cancelled
  env.restart();
  EXPECT_EQ(env.fetch(a, "http://do/count").text(), "1");
}

TEST(SetTimeout, InAWorkerItRunsOnTheShard) {
  dt::EnvOptions o;
  o.manualClock = true;
  dt::Env env(o);
  static std::atomic<int> ran{0};
  ran = 0;
  durable::Worker app;
  app.get("/later", [](durable::Context& c) -> Task<Response> {
    durable::setTimeout(1000ms, []() -> Task<void> {
      ++ran;
      co_return;
    });
    co_return c.text("set");
  });
  EXPECT_EQ(env.run(app.fetch(Request("http://x/later"), env.env())).text(), "set");
  EXPECT_EQ(ran.load(), 0);
  env.advanceClock(1000ms);
  for (int i = 0; i < 100 && ran.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(ran.load(), 1);
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
