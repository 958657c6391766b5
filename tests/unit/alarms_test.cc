// Alarms through durable::testing::Env with a manual clock: firing at the set time, replacing,
// deleting, getAlarm() inside the handler, retries with their backoff, abandonment, restarts,
// eviction, many objects at one instant, transactions, deleteAll, runDurableObjectAlarm and
// listDurableObjectIds.
//
// g++ 12: no braced temporaries of classes with std::string members inside a co_await
// expression; such values are built in named variables. Coroutine lambdas use EXPECT_*.
#include <durable/clock.h>
#include <durable/error.h>
#include <durable/namespace.h>
#include <durable/object.h>
#include <durable/storage.h>
#include <durable/testing.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

using durable::AlarmInfo;
using durable::Env;
using durable::ObjectId;
using durable::Request;
using durable::Response;
using durable::State;
using durable::Stub;
using durable::Task;
using namespace std::chrono_literals;
namespace dt = durable::testing;

// ---------------------------------------------------------------- shared test state
// Written on shard threads, read by the test thread after the events finished.

struct Call {
  AlarmInfo info;
  std::optional<std::int64_t> alarmInHandler;  // getAlarm() at the start of alarm()
  std::optional<std::int64_t> alarmAfterSet;   // getAlarm() after the handler set a new one
  std::int64_t now = 0;                        // durable::now() when it ran
};

std::mutex g_mu;
std::map<std::string, std::vector<Call>> g_calls;  // by object ID
std::map<std::string, int> g_constructions;        // by object ID
std::map<std::string, int> g_failures;             // alarm() throws this many more times; -1: always
std::map<std::string, std::int64_t> g_reschedule;  // alarm() sets a new alarm this far ahead

void resetGlobals() {
  std::lock_guard lock(g_mu);
  g_calls.clear();
  g_constructions.clear();
  g_failures.clear();
  g_reschedule.clear();
}

std::vector<Call> calls(const ObjectId& id) {
  std::lock_guard lock(g_mu);
  auto it = g_calls.find(id.toString());
  return it == g_calls.end() ? std::vector<Call>{} : it->second;
}
std::size_t totalCalls() {
  std::lock_guard lock(g_mu);
  std::size_t n = 0;
  for (auto& [_, v] : g_calls) n += v.size();
  return n;
}
int constructions(const ObjectId& id) {
  std::lock_guard lock(g_mu);
  auto it = g_constructions.find(id.toString());
  return it == g_constructions.end() ? 0 : it->second;
}
void failTimes(const ObjectId& id, int n) {
  std::lock_guard lock(g_mu);
  g_failures[id.toString()] = n;
}
void rescheduleIn(const ObjectId& id, std::int64_t ms) {
  std::lock_guard lock(g_mu);
  g_reschedule[id.toString()] = ms;
}

// ---------------------------------------------------------------- the test class

class AlarmObject : public durable::DurableObject {
 public:
  AlarmObject(State& state, Env& env) : DurableObject(state, env) {
    std::lock_guard lock(g_mu);
    ++g_constructions[state.id().toString()];
  }

  Task<void> alarm(AlarmInfo info) override {
    const std::string id = state().id().toString();
    Call call;
    call.info = info;
    call.now = durable::now();
    call.alarmInHandler = co_await storage().getAlarm();
    bool fail = false;
    std::optional<std::int64_t> again;
    {
      std::lock_guard lock(g_mu);
      auto f = g_failures.find(id);
      if (f != g_failures.end() && f->second != 0) {
        fail = true;
        if (f->second > 0) --f->second;
      }
      if (auto r = g_reschedule.find(id); r != g_reschedule.end()) {
        again = r->second;
        g_reschedule.erase(r);
      }
    }
    if (again) {
      co_await storage().setAlarm(durable::now() + *again);
      call.alarmAfterSet = co_await storage().getAlarm();
    }
    {
      std::lock_guard lock(g_mu);
      g_calls[id].push_back(call);
    }
    if (fail) throw std::runtime_error("alarm failed on purpose");
  }
};

// Its constructor throws while g_brokenConstructors is positive (counting down).
std::atomic<int> g_brokenConstructors{0};

class FragileObject : public AlarmObject {
 public:
  FragileObject(State& state, Env& env) : AlarmObject(state, env) {
    int n = g_brokenConstructors.load();
    while (n > 0 && !g_brokenConstructors.compare_exchange_weak(n, n - 1)) {
    }
    if (n > 0) throw std::runtime_error("constructor failed on purpose");
  }
};

// ---------------------------------------------------------------- helpers

class AlarmTest : public ::testing::Test {
 protected:
  void SetUp() override { resetGlobals(); }
  void TearDown() override { resetGlobals(); }

  static dt::EnvOptions manual(unsigned shards = 1) {
    dt::EnvOptions o;
    o.manualClock = true;
    o.shards = shards;
    return o;
  }
};

void setAlarm(dt::Env& env, const Stub& stub, std::int64_t at) {
  env.runInDurableObject<AlarmObject>(stub, [at](AlarmObject&, State& state) -> Task<void> {
    co_await state.storage().setAlarm(at);
  });
}

void deleteAlarm(dt::Env& env, const Stub& stub) {
  env.runInDurableObject<AlarmObject>(stub, [](AlarmObject&, State& state) -> Task<void> {
    co_await state.storage().deleteAlarm();
  });
}

std::optional<std::int64_t> getAlarm(dt::Env& env, const Stub& stub) {
  auto out = std::make_shared<std::optional<std::int64_t>>();
  env.runInDurableObject<AlarmObject>(stub, [out](AlarmObject&, State& state) -> Task<void> {
    *out = co_await state.storage().getAlarm();
  });
  return *out;
}

std::set<std::string> idStrings(const std::vector<ObjectId>& ids) {
  std::set<std::string> out;
  for (auto& id : ids) out.insert(id.toString());
  return out;
}

// ---------------------------------------------------------------- firing

TEST_F(AlarmTest, FiresAtItsTimeOnce) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t t0 = durable::now();
  const std::int64_t at = t0 + 10'000;

  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
  setAlarm(env, stub, at);
  EXPECT_EQ(getAlarm(env, stub), at);

  env.advanceClock(9'999ms);
  EXPECT_TRUE(calls(stub.id()).empty());
  EXPECT_EQ(getAlarm(env, stub), at);

  env.advanceClock(1ms);
  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].now, at);
  EXPECT_EQ(c[0].info.scheduledTime, at);
  EXPECT_EQ(c[0].info.retryCount, 0);
  EXPECT_FALSE(c[0].info.isRetry);
  EXPECT_EQ(c[0].alarmInHandler, std::nullopt);

  // A successful run deletes the alarm; it never fires again.
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
  env.advanceClock(std::chrono::hours(24));
  EXPECT_EQ(calls(stub.id()).size(), 1u);
}

TEST_F(AlarmTest, SetAlarmReplacesThePreviousOne) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t t0 = durable::now();

  setAlarm(env, stub, t0 + 5'000);
  setAlarm(env, stub, t0 + 20'000);
  EXPECT_EQ(getAlarm(env, stub), t0 + 20'000);
  env.advanceClock(10'000ms);  // past the first time: replaced, so nothing
  EXPECT_TRUE(calls(stub.id()).empty());
  env.advanceClock(10'000ms);
  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].info.scheduledTime, t0 + 20'000);

  // Replacing with an earlier time moves it forward.
  setAlarm(env, stub, durable::now() + 50'000);
  setAlarm(env, stub, durable::now() + 1'000);
  env.advanceClock(1'000ms);
  EXPECT_EQ(calls(stub.id()).size(), 2u);
  env.advanceClock(60'000ms);
  EXPECT_EQ(calls(stub.id()).size(), 2u);
}

TEST_F(AlarmTest, TimeAtOrBeforeNowFiresAtOnce) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto past = ns.getByName("past");
  auto present = ns.getByName("present");
  const std::int64_t t0 = durable::now();

  setAlarm(env, past, t0 - 60'000);
  setAlarm(env, present, t0);
  env.settleAlarms();  // no advance at all
  auto c = calls(past.id());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].info.scheduledTime, t0 - 60'000);
  EXPECT_EQ(c[0].now, t0);
  ASSERT_EQ(calls(present.id()).size(), 1u);
  EXPECT_EQ(calls(present.id())[0].info.scheduledTime, t0);
  EXPECT_EQ(getAlarm(env, past), std::nullopt);
  EXPECT_EQ(getAlarm(env, present), std::nullopt);
}

TEST_F(AlarmTest, DeleteAlarmCancels) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t t0 = durable::now();

  setAlarm(env, stub, t0 + 1'000);
  deleteAlarm(env, stub);
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
  env.advanceClock(10'000ms);
  EXPECT_TRUE(calls(stub.id()).empty());

  // Deleting when there is none is harmless; a new alarm after it works.
  deleteAlarm(env, stub);
  setAlarm(env, stub, durable::now() + 1'000);
  env.advanceClock(1'000ms);
  EXPECT_EQ(calls(stub.id()).size(), 1u);
}

TEST_F(AlarmTest, GetAlarmIsNullInsideTheHandlerUnlessItSetsANewOne) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t t0 = durable::now();

  setAlarm(env, stub, t0 + 1'000);
  rescheduleIn(stub.id(), 5'000);
  env.advanceClock(1'000ms);
  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].alarmInHandler, std::nullopt);
  EXPECT_EQ(c[0].alarmAfterSet, t0 + 6'000);
  // The new alarm stands after the handler returned...
  EXPECT_EQ(getAlarm(env, stub), t0 + 6'000);

  // ...and fires at its time, as a first run.
  env.advanceClock(4'999ms);
  EXPECT_EQ(calls(stub.id()).size(), 1u);
  env.advanceClock(1ms);
  c = calls(stub.id());
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[1].info.scheduledTime, t0 + 6'000);
  EXPECT_EQ(c[1].info.retryCount, 0);
  EXPECT_FALSE(c[1].info.isRetry);
  EXPECT_EQ(c[1].alarmInHandler, std::nullopt);
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
  env.advanceClock(60'000ms);
  EXPECT_EQ(calls(stub.id()).size(), 2u);
}

// ---------------------------------------------------------------- retries

TEST_F(AlarmTest, RetriesWithBackoffThenAbandons) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t t0 = durable::now();
  const std::int64_t at = t0 + 1'000;
  failTimes(stub.id(), -1);
  setAlarm(env, stub, at);

  // Small steps, so each run's clock time is known to within one step.
  constexpr std::int64_t kStep = 25;
  const std::int64_t end = at + 200'000;  // well past 2+4+8+16+32+64 s, each +25 %
  while (durable::now() < end) env.advanceClock(std::chrono::milliseconds(kStep));

  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 7u);
  EXPECT_EQ(c[0].now, at);
  for (int i = 0; i < 7; ++i) {
    SCOPED_TRACE("run " + std::to_string(i));
    EXPECT_EQ(c[i].info.retryCount, i);
    EXPECT_EQ(c[i].info.isRetry, i > 0);
    EXPECT_EQ(c[i].info.scheduledTime, at);
    EXPECT_EQ(c[i].alarmInHandler, std::nullopt);
    if (i > 0) {
      const std::int64_t backoff = 2'000LL << (i - 1);  // 2, 4, 8, 16, 32, 64 s
      const std::int64_t gap = c[i].now - c[i - 1].now;
      EXPECT_GE(gap, backoff);
      EXPECT_LE(gap, backoff + backoff / 4 + kStep);
    }
  }
  // Abandoned: the alarm is gone and nothing fires later.
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
  env.advanceClock(std::chrono::hours(2));
  EXPECT_EQ(calls(stub.id()).size(), 7u);
}

TEST_F(AlarmTest, GetAlarmBetweenRetriesStillShowsTheAlarm) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t at = durable::now() + 1'000;
  failTimes(stub.id(), 1);
  setAlarm(env, stub, at);
  env.advanceClock(1'000ms);
  ASSERT_EQ(calls(stub.id()).size(), 1u);
  // Failed, waiting for its retry: still set, for its original time.
  EXPECT_EQ(getAlarm(env, stub), at);
  env.advanceClock(2'600ms);
  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[1].info.retryCount, 1);
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
}

TEST_F(AlarmTest, FailsTwiceThenSucceeds) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t at = durable::now() + 500;
  failTimes(stub.id(), 2);
  setAlarm(env, stub, at);

  while (durable::now() < at + 30'000) env.advanceClock(100ms);
  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c[i].info.retryCount, i);
    EXPECT_EQ(c[i].info.isRetry, i > 0);
    EXPECT_EQ(c[i].info.scheduledTime, at);
  }
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
  env.advanceClock(std::chrono::hours(1));
  EXPECT_EQ(calls(stub.id()).size(), 3u);
}

TEST_F(AlarmTest, SettingANewAlarmWhileRetryingStartsOver) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t at = durable::now() + 1'000;
  failTimes(stub.id(), 1);
  setAlarm(env, stub, at);
  env.advanceClock(1'000ms);
  ASSERT_EQ(calls(stub.id()).size(), 1u);

  // Replaced before its retry: the retry is gone and the new alarm runs as a first run.
  const std::int64_t next = durable::now() + 10'000;
  setAlarm(env, stub, next);
  env.advanceClock(5'000ms);
  EXPECT_EQ(calls(stub.id()).size(), 1u);
  env.advanceClock(5'000ms);
  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[1].info.scheduledTime, next);
  EXPECT_EQ(c[1].info.retryCount, 0);
  EXPECT_FALSE(c[1].info.isRetry);
  env.advanceClock(std::chrono::hours(1));
  EXPECT_EQ(calls(stub.id()).size(), 2u);
}

TEST_F(AlarmTest, AFailingConstructorCountsAsAFailedRun) {
  dt::Env env(manual());
  auto& ns = env.exportClass<FragileObject>("FRAGILE");
  auto stub = ns.getByName("a");
  const std::int64_t at = durable::now() + 1'000;
  env.runInDurableObject<FragileObject>(stub, [at](FragileObject&, State& state) -> Task<void> {
    co_await state.storage().setAlarm(at);
  });
  env.restart();  // the next construction is the alarm's

  // Two constructions fail: the alarm is retried (2 s, then 4 s, each + up to 25 %), and the
  // third run, a retry, reaches the handler.
  g_brokenConstructors = 2;
  while (durable::now() < at + 20'000) env.advanceClock(100ms);
  EXPECT_EQ(g_brokenConstructors.load(), 0);
  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].info.retryCount, 2);
  EXPECT_TRUE(c[0].info.isRetry);
  EXPECT_EQ(c[0].info.scheduledTime, at);
  EXPECT_GE(c[0].now, at + 6'000);

  // A constructor that always fails: abandoned after 7 attempts, the alarm deleted.
  const std::int64_t next = durable::now() + 1'000;
  env.runInDurableObject<FragileObject>(stub, [next](FragileObject&, State& state) -> Task<void> {
    co_await state.storage().setAlarm(next);
  });
  env.restart();
  g_brokenConstructors = 1'000'000;
  while (durable::now() < next + 200'000) env.advanceClock(1'000ms);
  const int attempts = 1'000'000 - g_brokenConstructors.load();
  g_brokenConstructors = 0;
  EXPECT_EQ(attempts, 7);
  EXPECT_EQ(calls(stub.id()).size(), 1u);
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);  // (a healthy constructor again)
  EXPECT_TRUE(env.listDurableObjectIds(ns).empty());
}

TEST_F(AlarmTest, FiresOnTheRealClock) {
  dt::Env env;  // the system clock: the scheduler arms a timer
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto early = ns.getByName("early");
  auto late = ns.getByName("late");
  const std::int64_t t0 = durable::now();
  // Set the later one first, so the earlier one has to re-arm the timer.
  setAlarm(env, late, t0 + 300);
  setAlarm(env, early, t0 + 100);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (totalCalls() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  auto e = calls(early.id());
  auto l = calls(late.id());
  ASSERT_EQ(e.size(), 1u);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_GE(e[0].now, t0 + 100);
  EXPECT_GE(l[0].now, t0 + 300);
  EXPECT_LE(e[0].now, l[0].now);
  EXPECT_EQ(getAlarm(env, early), std::nullopt);
  EXPECT_EQ(getAlarm(env, late), std::nullopt);
}

// ---------------------------------------------------------------- durability

TEST_F(AlarmTest, SurvivesRestartAndWakesTheObject) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t at = durable::now() + 60'000;
  setAlarm(env, stub, at);
  EXPECT_EQ(constructions(stub.id()), 1);

  env.restart();
  EXPECT_EQ(env.liveObjects(), 0u);
  env.advanceClock(59'999ms);
  EXPECT_TRUE(calls(stub.id()).empty());
  env.advanceClock(1ms);
  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].info.scheduledTime, at);
  EXPECT_EQ(constructions(stub.id()), 2);  // the alarm constructed it again
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
}

TEST_F(AlarmTest, DueDuringDowntimeFiresLateAfterRestart) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("durable-alarms-downtime-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::int64_t at = 0;
  std::string id;
  {
    dt::EnvOptions o = manual();
    o.persistDir = dir;
    dt::Env env(o);
    auto& ns = env.exportClass<AlarmObject>("ALARMS");
    auto stub = ns.getByName("a");
    id = stub.id().toString();
    at = durable::now() + 1'000;
    setAlarm(env, stub, at);
  }  // the runtime is gone
  {
    dt::EnvOptions o = manual();
    o.persistDir = dir;
    dt::Env env(o);
    // Time passed while nothing ran: the alarm is 9 s overdue when the runtime starts.
    env.clock().set(at + 9'000);
    auto& ns = env.exportClass<AlarmObject>("ALARMS");
    auto stub = ns.getByName("a");
    ASSERT_EQ(stub.id().toString(), id);
    env.settleAlarms();  // starts the runtime; no advance
    auto c = calls(stub.id());
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].info.scheduledTime, at);
    EXPECT_EQ(c[0].info.retryCount, 0);
    EXPECT_EQ(c[0].now, at + 9'000);
    EXPECT_EQ(getAlarm(env, stub), std::nullopt);
  }
  std::filesystem::remove_all(dir);
}

TEST_F(AlarmTest, FiresForAnEvictedObject) {
  dt::EnvOptions o = manual();
  o.idleTimeoutMs = 30;
  dt::Env env(o);
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t at = durable::now() + 5'000;
  setAlarm(env, stub, at);
  EXPECT_EQ(constructions(stub.id()), 1);

  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (env.liveObjects() != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(env.liveObjects(), 0u);

  env.advanceClock(5'000ms);
  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].info.scheduledTime, at);
  EXPECT_EQ(constructions(stub.id()), 2);
}

TEST_F(AlarmTest, HundredObjectsAtTheSameInstantEachFireOnce) {
  dt::Env env(manual(4));
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  const std::int64_t at = durable::now() + 30'000;
  std::vector<Stub> stubs;
  for (int i = 0; i < 100; ++i) {
    stubs.push_back(ns.getByName("obj-" + std::to_string(i)));
    setAlarm(env, stubs.back(), at);
  }
  env.advanceClock(29'999ms);
  EXPECT_EQ(totalCalls(), 0u);
  env.advanceClock(1ms);
  EXPECT_EQ(totalCalls(), 100u);
  for (auto& s : stubs) {
    auto c = calls(s.id());
    ASSERT_EQ(c.size(), 1u) << s.id().toString();
    EXPECT_EQ(c[0].info.scheduledTime, at);
  }
  env.advanceClock(std::chrono::hours(1));
  EXPECT_EQ(totalCalls(), 100u);
  EXPECT_TRUE(env.listDurableObjectIds(ns).empty());
}

// ---------------------------------------------------------------- transactions, deleteAll

TEST_F(AlarmTest, TransactionRollbackLeavesTheAlarmCommitSetsIt) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t t0 = durable::now();
  const std::int64_t t1 = t0 + 10'000, t2 = t0 + 5'000, t3 = t0 + 20'000;
  setAlarm(env, stub, t1);

  env.runInDurableObject<AlarmObject>(stub, [t1, t2](AlarmObject&, State& state) -> Task<void> {
    bool threw = false;
    std::function<Task<void>(durable::Storage&)> fn = [t2](durable::Storage& txn) -> Task<void> {
      co_await txn.setAlarm(t2);
      EXPECT_EQ(co_await txn.getAlarm(), t2);
      throw std::runtime_error("roll back");
    };
    try {
      co_await state.storage().transaction(fn);
    } catch (const std::runtime_error&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    EXPECT_EQ(co_await state.storage().getAlarm(), t1);
  });
  EXPECT_EQ(getAlarm(env, stub), t1);

  // A rolled-back deleteAlarm too.
  env.runInDurableObject<AlarmObject>(stub, [t1](AlarmObject&, State& state) -> Task<void> {
    std::function<Task<void>(durable::Storage&)> fn = [](durable::Storage& txn) -> Task<void> {
      co_await txn.deleteAlarm();
      EXPECT_EQ(co_await txn.getAlarm(), std::nullopt);
      throw std::runtime_error("roll back");
    };
    try {
      co_await state.storage().transaction(fn);
    } catch (const std::runtime_error&) {
    }
    EXPECT_EQ(co_await state.storage().getAlarm(), t1);
  });

  env.advanceClock(5'000ms);  // t2: the rolled-back time
  EXPECT_TRUE(calls(stub.id()).empty());

  env.runInDurableObject<AlarmObject>(stub, [t3](AlarmObject&, State& state) -> Task<void> {
    std::function<Task<void>(durable::Storage&)> fn = [t3](durable::Storage& txn) -> Task<void> {
      co_await txn.setAlarm(t3);
      co_await txn.put("k", std::int64_t{1});
    };
    co_await state.storage().transaction(fn);
    EXPECT_EQ(co_await state.storage().getAlarm(), t3);
  });
  EXPECT_EQ(getAlarm(env, stub), t3);
  env.advanceClock(5'000ms);  // t1: replaced by the committed t3
  EXPECT_TRUE(calls(stub.id()).empty());
  env.advanceClock(10'000ms);
  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].info.scheduledTime, t3);

  // The committed alarm was durable: it is there after a restart too (checked before firing
  // in a fresh object).
  auto other = ns.getByName("b");
  env.runInDurableObject<AlarmObject>(other, [t3](AlarmObject&, State& state) -> Task<void> {
    std::function<Task<void>(durable::Storage&)> fn = [t3](durable::Storage& txn) -> Task<void> {
      co_await txn.setAlarm(t3 + 100'000);
    };
    co_await state.storage().transaction(fn);
  });
  env.restart();
  EXPECT_EQ(getAlarm(env, other), t3 + 100'000);
}

TEST_F(AlarmTest, DeleteAllDeletesTheAlarm) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  const std::int64_t at = durable::now() + 1'000;
  env.runInDurableObject<AlarmObject>(stub, [at](AlarmObject&, State& state) -> Task<void> {
    co_await state.storage().put("k", std::int64_t{1});
    co_await state.storage().setAlarm(at);
  });
  EXPECT_EQ(env.listDurableObjectIds(ns).size(), 1u);
  env.runInDurableObject<AlarmObject>(stub, [](AlarmObject&, State& state) -> Task<void> {
    co_await state.storage().deleteAll();
    EXPECT_EQ(co_await state.storage().getAlarm(), std::nullopt);
  });
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
  env.advanceClock(10'000ms);
  EXPECT_TRUE(calls(stub.id()).empty());
  EXPECT_TRUE(env.listDurableObjectIds(ns).empty());
  env.restart();
  env.advanceClock(10'000ms);
  EXPECT_TRUE(calls(stub.id()).empty());
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
}

// ---------------------------------------------------------------- testing helpers

TEST_F(AlarmTest, RunDurableObjectAlarm) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto stub = ns.getByName("a");
  EXPECT_FALSE(env.runDurableObjectAlarm(stub));
  EXPECT_TRUE(calls(stub.id()).empty());

  const std::int64_t at = durable::now() + std::chrono::duration_cast<std::chrono::milliseconds>(24h).count();
  setAlarm(env, stub, at);
  EXPECT_TRUE(env.runDurableObjectAlarm(stub));
  auto c = calls(stub.id());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].info.scheduledTime, at);
  EXPECT_EQ(c[0].info.retryCount, 0);
  EXPECT_FALSE(c[0].info.isRetry);
  EXPECT_EQ(c[0].now, at - 86'400'000);  // now, not at its time
  EXPECT_EQ(c[0].alarmInHandler, std::nullopt);
  // Ran and succeeded: deleted, and the scheduler does not run it again at its time.
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
  EXPECT_FALSE(env.runDurableObjectAlarm(stub));
  env.advanceClock(25h);
  EXPECT_EQ(calls(stub.id()).size(), 1u);

  // A failing handler: its own exception propagates, and the alarm stays set.
  const std::int64_t later = durable::now() + 60'000;
  setAlarm(env, stub, later);
  failTimes(stub.id(), 1);
  try {
    env.runDurableObjectAlarm(stub);
    ADD_FAILURE() << "runDurableObjectAlarm did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "alarm failed on purpose");
  }
  EXPECT_EQ(calls(stub.id()).size(), 2u);
  EXPECT_EQ(getAlarm(env, stub), later);
  env.advanceClock(60'000ms);
  EXPECT_EQ(calls(stub.id()).size(), 3u);
  EXPECT_EQ(getAlarm(env, stub), std::nullopt);
}

TEST_F(AlarmTest, ListDurableObjectIdsListsObjectsWithKeysOrAlarms) {
  dt::Env env(manual());
  auto& ns = env.exportClass<AlarmObject>("ALARMS");
  auto& other = env.exportClass<AlarmObject>("OTHER");
  auto withKey = ns.getByName("with-key");
  auto withAlarm = ns.getByName("with-alarm");
  auto empty = ns.getByName("empty");
  auto elsewhere = other.getByName("with-key");

  EXPECT_TRUE(env.listDurableObjectIds(ns).empty());
  env.runInDurableObject<AlarmObject>(withKey, [](AlarmObject&, State& state) -> Task<void> {
    co_await state.storage().put("k", "v");
  });
  setAlarm(env, withAlarm, durable::now() + 1'000'000);
  env.runInDurableObject<AlarmObject>(empty, [](AlarmObject&, State& state) -> Task<void> {
    EXPECT_EQ(co_await state.storage().getAlarm(), std::nullopt);
  });
  env.runInDurableObject<AlarmObject>(elsewhere, [](AlarmObject&, State& state) -> Task<void> {
    co_await state.storage().put("k", "v");
  });

  std::set<std::string> want{withKey.id().toString(), withAlarm.id().toString()};
  EXPECT_EQ(idStrings(env.listDurableObjectIds(ns)), want);
  std::set<std::string> wantOther{elsewhere.id().toString()};
  EXPECT_EQ(idStrings(env.listDurableObjectIds(other)), wantOther);

  // Listed IDs are usable: the same object.
  for (auto& id : env.listDurableObjectIds(ns)) {
    if (id.toString() == withAlarm.id().toString()) EXPECT_EQ(getAlarm(env, ns.get(id)), durable::now() + 1'000'000);
  }

  deleteAlarm(env, withAlarm);
  std::set<std::string> onlyKey{withKey.id().toString()};
  EXPECT_EQ(idStrings(env.listDurableObjectIds(ns)), onlyKey);
}

}  // namespace
