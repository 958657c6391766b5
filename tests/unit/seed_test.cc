// The seed's classes (examples/seed) through durable::testing::Env, behind the real demo
// Worker (seed::makeApp()): the RateLimiter and its middleware under concurrency and with a
// sliding window on a manual clock, ScheduledTask's alarm, and SafeDO with callDO.
//
// g++ 12: no braced temporaries of classes with std::string members inside a co_await
// expression; such values are built in named variables. Coroutine lambdas use EXPECT_*.
#include "seed/app.h"
#include "seed/counter.h"
#include "seed/rate_limiter.h"
#include "seed/safe_do.h"
#include "seed/scheduled_task.h"

#include <durable/clock.h>
#include <durable/error.h>
#include <durable/testing.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using durable::Request;
using durable::Response;
using durable::State;
using durable::Task;
using namespace std::chrono_literals;
namespace dt = durable::testing;

struct Outcome {
  int status = 0;
  std::string body;
  std::string contentType;
  std::string limit, remaining, reset, retryAfter;
  bool hasRetryAfter = false;
  std::string error;  // when the Worker's fetch threw
};

Outcome outcomeOf(const Response& r) {
  Outcome o;
  o.status = r.status();
  o.body = r.text();
  o.contentType = r.headers().get("content-type").value_or("");
  o.limit = r.headers().get("X-RateLimit-Limit").value_or("");
  o.remaining = r.headers().get("X-RateLimit-Remaining").value_or("");
  o.reset = r.headers().get("X-RateLimit-Reset").value_or("");
  auto retry = r.headers().get("Retry-After");
  o.hasRetryAfter = retry.has_value();
  o.retryAfter = retry.value_or("");
  return o;
}

// The seed's environment: its classes under its bindings, and a manual clock.
class SeedTest : public ::testing::Test {
 protected:
  static dt::EnvOptions options() {
    dt::EnvOptions o;
    o.manualClock = true;
    return o;
  }

  void SetUp() override {
    env_ = std::make_unique<dt::Env>(options());
    counters_ = &env_->exportClass<seed::Counter>("COUNTER");
    limiters_ = &env_->exportClass<seed::RateLimiter>("RATE_LIMITER");
    tasks_ = &env_->exportClass<seed::ScheduledTask>("TASK");
    safe_ = &env_->exportClass<seed::SafeDO>("DO");
    app_ = seed::makeApp();
  }
  void TearDown() override { env_.reset(); }

  Response send(const durable::Worker& app, const std::string& method, const std::string& path,
                const std::string& ip = "") {
    durable::RequestInit init;
    init.method = method;
    Request req("http://example.com" + path, std::move(init));
    if (!ip.empty()) req.headers().set("cf-connecting-ip", ip);
    return env_->run(app.fetch(std::move(req), env_->env()));
  }
  Response send(const std::string& method, const std::string& path, const std::string& ip = "") {
    return send(app_, method, path, ip);
  }
  Outcome get(const std::string& path, const std::string& ip) { return outcomeOf(send("GET", path, ip)); }

  // `n` requests of `path` with `ip`, all started from one task before any completes.
  std::vector<Outcome> concurrent(int n, const std::string& path, const std::string& ip) {
    return env_->run([](const durable::Worker* app, durable::Env* env, int n, std::string path,
                        std::string ip) -> Task<std::vector<Outcome>> {
      auto out = std::make_shared<std::vector<Outcome>>(static_cast<std::size_t>(n));
      auto left = std::make_shared<std::atomic<int>>(n);
      durable::Promise<void> all;
      for (int i = 0; i < n; ++i) {
        Request req("http://example.com" + path);
        req.headers().set("cf-connecting-ip", ip);
        durable::spawn(app->fetch(std::move(req), *env),
                       std::function<void(durable::Result<Response>)>(
                           [out, left, all, i](durable::Result<Response> r) mutable {
                             auto& slot = (*out)[static_cast<std::size_t>(i)];
                             if (r.ok()) {
                               slot = outcomeOf(r.value());
                             } else {
                               try {
                                 r.value();
                               } catch (const std::exception& e) {
                                 slot.error = e.what();
                               }
                             }
                             if (--*left == 0) all.setValue();
                           }));
      }
      co_await all.future();
      co_return std::move(*out);
    }(&app_, &env_->env(), n, path, ip));
  }

  std::optional<std::int64_t> taskAlarm(const std::string& name) {
    auto out = std::make_shared<std::optional<std::int64_t>>();
    env_->runInDurableObject<seed::ScheduledTask>(
        tasks_->getByName(name), [out](seed::ScheduledTask&, State& state) -> Task<void> {
          *out = co_await state.storage().getAlarm();
        });
    return *out;
  }

  std::set<std::string> limiterIds() {
    std::set<std::string> out;
    for (auto& id : env_->listDurableObjectIds(*limiters_)) out.insert(id.toString());
    return out;
  }

  std::unique_ptr<dt::Env> env_;
  const durable::Namespace* counters_ = nullptr;
  const durable::Namespace* limiters_ = nullptr;
  const durable::Namespace* tasks_ = nullptr;
  const durable::Namespace* safe_ = nullptr;
  durable::Worker app_;
};

// ---------------------------------------------------------------- RateLimiter

TEST_F(SeedTest, ExactlyTheLimitOfConcurrentRequestsIsAllowed) {
  const std::int64_t t0 = durable::now();
  auto outcomes = concurrent(130, "/api/ping", "10.0.0.1");
  ASSERT_EQ(outcomes.size(), 130u);

  std::multiset<std::int64_t> remaining;
  int allowed = 0, denied = 0;
  for (const auto& o : outcomes) {
    ASSERT_EQ(o.error, "");
    EXPECT_EQ(o.limit, "100");
    EXPECT_EQ(o.reset, std::to_string(t0 + 60'000));
    EXPECT_EQ(o.contentType, "application/json");
    if (o.status == 200) {
      ++allowed;
      EXPECT_EQ(o.body, R"({"pong":true})");
      EXPECT_FALSE(o.hasRetryAfter);
      remaining.insert(std::stoll(o.remaining));
    } else {
      ++denied;
      EXPECT_EQ(o.status, 429);
      EXPECT_EQ(o.body, R"({"error":"Rate limit exceeded"})");
      EXPECT_EQ(o.remaining, "0");
      EXPECT_EQ(o.retryAfter, "60");  // ceil((resetAt - now) / 1000), the clock stood still
    }
  }
  EXPECT_EQ(allowed, 100);
  EXPECT_EQ(denied, 30);
  std::multiset<std::int64_t> want;
  for (int i = 0; i < 100; ++i) want.insert(i);
  EXPECT_EQ(remaining, want);

  // Still limited afterwards, from a fresh object instance too.
  EXPECT_EQ(get("/api/ping", "10.0.0.1").status, 429);
  env_->restart();
  auto after = get("/api/ping", "10.0.0.1");
  EXPECT_EQ(after.status, 429);
  EXPECT_EQ(after.retryAfter, "60");
}

TEST_F(SeedTest, KeysAreIndependent) {
  auto a = concurrent(105, "/api/ping", "10.0.0.1");
  int allowedA = 0;
  for (auto& o : a) allowedA += o.status == 200;
  EXPECT_EQ(allowedA, 100);

  // Another IP: its own full window.
  auto b = get("/api/ping", "10.0.0.2");
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(b.remaining, "99");
  // No cf-connecting-ip: the "anonymous" key, again its own.
  auto anon = get("/api/ping", "");
  EXPECT_EQ(anon.status, 200);
  EXPECT_EQ(anon.remaining, "99");
  std::set<std::string> want{limiters_->idFromName("10.0.0.1").toString(), limiters_->idFromName("10.0.0.2").toString(),
                             limiters_->idFromName("anonymous").toString()};
  EXPECT_EQ(limiterIds(), want);
  EXPECT_EQ(get("/api/ping", "10.0.0.1").status, 429);
  EXPECT_EQ(get("/api/ping", "10.0.0.2").remaining, "98");
}

TEST_F(SeedTest, SlidingWindowFreesSlotsOneByOne) {
  const std::int64_t t0 = durable::now();
  const std::string ip = "192.0.2.7";
  // t = 0, 1, 2, 3, 4 s: five allowed, remaining 4..0.
  for (int i = 0; i < 5; ++i) {
    if (i > 0) env_->advanceClock(1'000ms);
    auto o = get("/api-small/ping", ip);
    SCOPED_TRACE(i);
    EXPECT_EQ(o.status, 200);
    EXPECT_EQ(o.limit, "5");
    EXPECT_EQ(o.remaining, std::to_string(4 - i));
    EXPECT_EQ(o.reset, std::to_string(t0 + i * 1'000 + 10'000));
    EXPECT_EQ(o.body, R"({"pong":true})");
  }
  // t = 5 s: full; the oldest (t0) frees its slot at t0 + 10 s.
  env_->advanceClock(1'000ms);
  auto full = get("/api-small/ping", ip);
  EXPECT_EQ(full.status, 429);
  EXPECT_EQ(full.reset, std::to_string(t0 + 10'000));
  EXPECT_EQ(full.retryAfter, "5");
  EXPECT_EQ(full.remaining, "0");
  EXPECT_EQ(full.limit, "5");

  // t = 9.999 s: still full, 1 ms to go rounds up to 1 s.
  env_->clock().set(t0 + 9'999);
  auto almost = get("/api-small/ping", ip);
  EXPECT_EQ(almost.status, 429);
  EXPECT_EQ(almost.retryAfter, "1");

  // t = 10.001 s: exactly one slot is free again, then full.
  env_->clock().set(t0 + 10'001);
  auto one = get("/api-small/ping", ip);
  EXPECT_EQ(one.status, 200);
  EXPECT_EQ(one.remaining, "0");
  EXPECT_EQ(one.reset, std::to_string(t0 + 20'001));
  auto again = get("/api-small/ping", ip);
  EXPECT_EQ(again.status, 429);
  EXPECT_EQ(again.reset, std::to_string(t0 + 11'000));  // now the t0 + 1 s request is oldest
  EXPECT_EQ(again.retryAfter, "1");                      // ceil(999 / 1000)

  // t = 11.5 s: the t0 + 1 s slot is free; one more, then full (oldest t0 + 2 s).
  env_->clock().set(t0 + 11'500);
  EXPECT_EQ(get("/api-small/ping", ip).status, 200);
  auto denied = get("/api-small/ping", ip);
  EXPECT_EQ(denied.status, 429);
  EXPECT_EQ(denied.reset, std::to_string(t0 + 12'000));
  EXPECT_EQ(denied.retryAfter, "1");

  // t = 14.5 s: the slots of 2, 3 and 4 s are free: three allowed (remaining 2, 1, 0).
  env_->clock().set(t0 + 14'500);
  for (int i = 2; i >= 0; --i) {
    auto o = get("/api-small/ping", ip);
    EXPECT_EQ(o.status, 200);
    EXPECT_EQ(o.remaining, std::to_string(i));
  }
  auto last = get("/api-small/ping", ip);
  EXPECT_EQ(last.status, 429);
  EXPECT_EQ(last.reset, std::to_string(t0 + 20'001));
  EXPECT_EQ(last.retryAfter, "6");  // ceil(5501 / 1000)

  // Long after: the window is empty again.
  env_->advanceClock(60'000ms);
  EXPECT_EQ(get("/api-small/ping", ip).remaining, "4");
}

TEST_F(SeedTest, SmallAndDefaultLimitersUseDifferentObjects) {
  const std::string ip = "198.51.100.1";
  for (int i = 0; i < 5; ++i) EXPECT_EQ(get("/api-small/ping", ip).status, 200);
  EXPECT_EQ(get("/api-small/ping", ip).status, 429);
  // The same IP under /api/*: a different object, with its own count.
  auto big = get("/api/ping", ip);
  EXPECT_EQ(big.status, 200);
  EXPECT_EQ(big.remaining, "99");
  EXPECT_EQ(big.limit, "100");
  std::set<std::string> want{limiters_->idFromName("small:" + ip).toString(), limiters_->idFromName(ip).toString()};
  EXPECT_EQ(limiterIds(), want);
}

TEST_F(SeedTest, PingAndHealth) {
  auto r = send("GET", "/api/ping", "203.0.113.9");
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(r.text(), R"({"pong":true})");
  EXPECT_EQ(r.headers().get("content-type"), "application/json");
  EXPECT_EQ(r.headers().get("X-RateLimit-Limit"), "100");
  EXPECT_EQ(r.headers().get("X-RateLimit-Remaining"), "99");
  EXPECT_EQ(r.headers().get("X-RateLimit-Reset"), std::to_string(durable::now() + 60'000));

  auto h = send("GET", "/health");
  EXPECT_EQ(h.status(), 200);
  EXPECT_EQ(h.text(), "ok");
  EXPECT_FALSE(h.headers().has("X-RateLimit-Limit"));  // not under /api/*
}

TEST_F(SeedTest, RateLimitEnvironmentVariablesOverrideApiNumbers) {
  ::setenv("API_RATE_LIMIT", "3", 1);
  ::setenv("API_RATE_WINDOW_MS", "5000", 1);
  durable::Worker app = seed::makeApp();
  ::unsetenv("API_RATE_LIMIT");
  ::unsetenv("API_RATE_WINDOW_MS");

  const std::int64_t t0 = durable::now();
  for (int i = 0; i < 3; ++i) {
    auto r = send(app, "GET", "/api/ping", "10.1.1.1");
    EXPECT_EQ(r.status(), 200);
    EXPECT_EQ(r.headers().get("X-RateLimit-Limit"), "3");
    EXPECT_EQ(r.headers().get("X-RateLimit-Remaining"), std::to_string(2 - i));
    EXPECT_EQ(r.headers().get("X-RateLimit-Reset"), std::to_string(t0 + 5'000));
  }
  auto denied = send(app, "GET", "/api/ping", "10.1.1.1");
  EXPECT_EQ(denied.status(), 429);
  EXPECT_EQ(denied.headers().get("Retry-After"), "5");
  // The numbers were read at makeApp() time: unsetting them later changes nothing.
  EXPECT_EQ(send(app, "GET", "/api/ping", "10.1.1.1").status(), 429);
  env_->advanceClock(5'001ms);
  EXPECT_EQ(send(app, "GET", "/api/ping", "10.1.1.1").status(), 200);

  // /api-small/* keeps its own numbers.
  auto small = send(app, "GET", "/api-small/ping", "10.1.1.1");
  EXPECT_EQ(small.headers().get("X-RateLimit-Limit"), "5");

  // Junk falls back to the defaults.
  ::setenv("API_RATE_LIMIT", "lots", 1);
  durable::Worker junk = seed::makeApp();
  ::unsetenv("API_RATE_LIMIT");
  auto r = send(junk, "GET", "/api/ping", "10.1.1.2");
  EXPECT_EQ(r.headers().get("X-RateLimit-Limit"), "100");
  EXPECT_EQ(r.headers().get("X-RateLimit-Remaining"), "99");
}

// ---------------------------------------------------------------- ScheduledTask

TEST_F(SeedTest, ScheduleSetsTheAlarmAnHourAhead) {
  for (const char* method : {"GET", "POST"}) {
    SCOPED_TRACE(method);
    const std::string name = std::string("task-") + method;
    const std::int64_t want = durable::now() + 3'600'000;
    auto r = send(method, "/tasks/" + name + "/schedule");
    EXPECT_EQ(r.status(), 200);
    EXPECT_EQ(r.headers().get("content-type"), "application/json");
    EXPECT_EQ(r.text(), "{\"scheduledTime\":" + std::to_string(want) + "}");
    EXPECT_EQ(taskAlarm(name), want);
  }
}

TEST_F(SeedTest, CancelDeletesTheAlarm) {
  for (const char* method : {"GET", "POST"}) {
    SCOPED_TRACE(method);
    EXPECT_EQ(send("POST", "/tasks/t/schedule").status(), 200);
    EXPECT_TRUE(taskAlarm("t").has_value());
    auto r = send(method, "/tasks/t/cancel");
    EXPECT_EQ(r.status(), 200);
    EXPECT_EQ(r.headers().get("content-type"), "application/json");
    EXPECT_EQ(r.text(), R"({"cancelled":true})");
    EXPECT_EQ(taskAlarm("t"), std::nullopt);
  }
  // Cancelled: an hour later nothing ran (the pending task is still there).
  auto stub = tasks_->getByName("t");
  env_->runInDurableObject<seed::ScheduledTask>(stub, [](seed::ScheduledTask&, State& state) -> Task<void> {
    co_await state.storage().put("pendingTask", "send report");
  });
  env_->advanceClock(2h);
  env_->runInDurableObject<seed::ScheduledTask>(stub, [](seed::ScheduledTask&, State& state) -> Task<void> {
    EXPECT_TRUE((co_await state.storage().get("pendingTask")).has_value());
  });
}

TEST_F(SeedTest, AlarmAfterAnHourProcessesThePendingTask) {
  auto r = send("POST", "/tasks/job/schedule");
  ASSERT_EQ(r.status(), 200);
  const std::int64_t at = r.json().as_object().at("scheduledTime").as_int64();
  auto stub = tasks_->getByName("job");
  env_->runInDurableObject<seed::ScheduledTask>(stub, [](seed::ScheduledTask&, State& state) -> Task<void> {
    co_await state.storage().put("pendingTask", "send report");
  });

  env_->advanceClock(3'599'999ms);
  env_->runInDurableObject<seed::ScheduledTask>(stub, [at](seed::ScheduledTask&, State& state) -> Task<void> {
    EXPECT_TRUE((co_await state.storage().get("pendingTask")).has_value());
    EXPECT_EQ(co_await state.storage().getAlarm(), at);
  });
  env_->advanceClock(1ms);
  env_->runInDurableObject<seed::ScheduledTask>(stub, [](seed::ScheduledTask&, State& state) -> Task<void> {
    EXPECT_FALSE((co_await state.storage().get("pendingTask")).has_value());
    EXPECT_EQ(co_await state.storage().getAlarm(), std::nullopt);
  });
  // Gone from disk as well: the object has neither keys nor an alarm.
  EXPECT_TRUE(env_->listDurableObjectIds(*tasks_).empty());
}

TEST_F(SeedTest, ScheduledAlarmSurvivesRestart) {
  ASSERT_EQ(send("GET", "/tasks/durable/schedule").status(), 200);
  auto stub = tasks_->getByName("durable");
  env_->runInDurableObject<seed::ScheduledTask>(stub, [](seed::ScheduledTask&, State& state) -> Task<void> {
    co_await state.storage().put("pendingTask", "x");
  });
  env_->restart();
  env_->advanceClock(1h);
  env_->runInDurableObject<seed::ScheduledTask>(stub, [](seed::ScheduledTask&, State& state) -> Task<void> {
    EXPECT_FALSE((co_await state.storage().get("pendingTask")).has_value());
  });
}

TEST_F(SeedTest, UnknownTaskPathIs404) {
  auto r = env_->fetch(tasks_->getByName("x"), "http://do/nope");
  EXPECT_EQ(r.status(), 404);
  EXPECT_EQ(r.text(), "Not found");
}

// ---------------------------------------------------------------- SafeDO and callDO

TEST_F(SeedTest, SafeDoAnswersAndFails) {
  auto ok = env_->fetch(safe_->getByName("s"), "http://do/action");
  EXPECT_EQ(ok.status(), 200);
  EXPECT_EQ(ok.text(), R"({"success":true})");
  EXPECT_EQ(ok.headers().get("content-type"), "application/json");

  auto bad = env_->fetch(safe_->getByName("s"), "http://do/fail");
  EXPECT_EQ(bad.status(), 500);
  EXPECT_EQ(bad.text(), R"({"error":"something broke"})");
  EXPECT_EQ(bad.headers().get("content-type"), "application/json");

  // Still usable after the failure.
  EXPECT_EQ(env_->fetch(safe_->getByName("s"), "http://do/action").status(), 200);
}

TEST_F(SeedTest, CallDoReturnsJsonOrThrowsTheObjectsMessage) {
  auto json = env_->run(seed::callDO(env_->env(), "caller"));
  EXPECT_EQ(durable::stringify(json), R"({"success":true})");

  // Caught inside the Worker-side task, as a caller would.
  auto message = env_->run([](durable::Env* env) -> Task<std::string> {
    std::string caught = "nothing thrown";
    std::string name = "caller";
    std::string path = "/fail";
    try {
      co_await seed::callDO(*env, name, path);
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
    co_return caught;
  }(&env_->env()));
  EXPECT_EQ(message, "something broke");

  // And out of env.run as the same exception type.
  try {
    env_->run(seed::callDO(env_->env(), "caller", "/fail"));
    ADD_FAILURE() << "callDO did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "something broke");
  }
}

// callDO's retry rule, against an object whose every /action is a write (so each call has a
// commit that can fail) and whose answer counts the calls that were kept.
class CallCounter : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  Task<Response> fetch(Request) override {
    const auto calls = (co_await storage().get<std::int64_t>("calls")).value_or(0) + 1;
    co_await storage().put("calls", calls);
    co_return Response::json(boost::json::object{{"calls", calls}});
  }
};

TEST(CallDoTest, AFailedCommitIsRetriedAsTheObjectWasResetAndTheRetryIsKept) {
  dt::EnvOptions o;
  o.faultInjection = true;
  dt::Env env(o);
  env.exportClass<CallCounter>("DO");
  EXPECT_EQ(durable::stringify(env.run(seed::callDO(env.env(), "f"))), R"({"calls":1})");
  // The next commit fails: the call's reply is withheld, the object reset, and callDO's
  // second attempt runs against what is durable.
  env.failStorageWrites(1);
  EXPECT_EQ(durable::stringify(env.run(seed::callDO(env.env(), "f"))), R"({"calls":2})");
  env.restart();
  EXPECT_EQ(durable::stringify(env.run(seed::callDO(env.env(), "f"))), R"({"calls":3})");
}

TEST(CallDoTest, AnOverloadedObjectIsNotRetriedAndTheWorkerAnswers503) {
  dt::EnvOptions o;
  o.storageEngine = "memory";
  o.maxPendingCalls = 1;
  dt::Env env(o);
  env.exportClass<CallCounter>("DO");
  durable::Worker app;
  app.get("/do/:name", [](durable::Context& c) -> Task<Response> {
    co_return c.json(co_await seed::callDO(c.env(), c.param("name")));
  });
  EXPECT_EQ(env.run(app.fetch(Request("http://example.com/do/f"), env.env())).text(), R"({"calls":1})");

  // One call waits for its commit: the object holds all it may.
  env.holdCommits();
  auto first = std::make_shared<std::promise<std::string>>();
  auto firstAnswer = first->get_future();
  env.run([](const durable::Worker* app, durable::Env* e, std::shared_ptr<std::promise<std::string>> first) -> Task<void> {
    durable::spawn(app->fetch(Request("http://example.com/do/f"), *e),
                   std::function<void(durable::Result<Response>)>(
                       [first](durable::Result<Response> r) { first->set_value(r.value().text()); }));
    co_return;
  }(&app, &env.env(), first));

  // callDO logs each retry: none may happen for an overload.
  ::testing::internal::CaptureStderr();
  const auto refused = env.run(app.fetch(Request("http://example.com/do/f"), env.env()));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(log.find("retrying"), std::string::npos) << log;
  EXPECT_NE(log.find("DO call failed: Durable Object is overloaded"), std::string::npos) << log;
  EXPECT_EQ(refused.status(), 503);
  EXPECT_EQ(refused.headers().get("retry-after"), "1");
  EXPECT_EQ(refused.text(), R"({"error":"Durable Object is overloaded. Too many requests queued."})");

  env.releaseCommits();
  EXPECT_EQ(firstAnswer.get(), R"({"calls":2})");
  // The refused call left nothing behind.
  EXPECT_EQ(env.run(app.fetch(Request("http://example.com/do/f"), env.env())).text(), R"({"calls":3})");
}

// ---------------------------------------------------------------- Counter through the Worker

TEST_F(SeedTest, CounterRoutes) {
  EXPECT_EQ(send("POST", "/counters/c/increment").text(), R"({"count":1})");
  EXPECT_EQ(send("POST", "/counters/c/increment").text(), R"({"count":2})");
  EXPECT_EQ(send("GET", "/counters/c").text(), R"({"count":2})");
  EXPECT_EQ(send("POST", "/counters/c/reset").text(), R"({"count":0})");
  EXPECT_EQ(send("GET", "/counters/c").text(), R"({"count":0})");
  EXPECT_EQ(send("GET", "/counters/c/increment").status(), 404);
}

}  // namespace
