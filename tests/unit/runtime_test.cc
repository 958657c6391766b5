// The runtime through durable::testing::Env: instances per ID, the gates, errors, eviction,
// and IDs.
//
// g++ 12: no braced temporaries of classes with std::string members (and no lambdas that
// capture strings) inside a co_await expression; such values are built in named variables.
#include <durable/error.h>
#include <durable/namespace.h>
#include <durable/object.h>
#include <durable/storage.h>
#include <durable/testing.h>
#include <durable/value.h>
#include <durable/worker.h>
#include <gtest/gtest.h>

#include "unit/test_support.h"
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace {

using durable::Env;
using durable::Error;
using durable::ErrorCode;
using durable::Future;
using durable::ObjectId;
using durable::Promise;
using durable::Request;
using durable::Response;
using durable::Result;
using durable::State;
using durable::Stub;
using durable::Task;
namespace dt = durable::testing;

// ---------------------------------------------------------------- shared test state
// Written on shard threads, read by the test thread after the events finished. Every test
// resets it (the fixture's SetUp).

std::mutex g_mu;
std::map<std::string, int> g_constructions;  // by object ID
std::vector<std::string> g_log;

void record(std::string line) {
  std::lock_guard lock(g_mu);
  g_log.push_back(std::move(line));
}
std::vector<std::string> eventLog() {
  std::lock_guard lock(g_mu);
  return g_log;
}
int constructions(const ObjectId& id) {
  std::lock_guard lock(g_mu);
  auto it = g_constructions.find(id.toString());
  return it == g_constructions.end() ? 0 : it->second;
}
void countConstruction(const ObjectId& id) {
  std::lock_guard lock(g_mu);
  ++g_constructions[id.toString()];
}

// ---------------------------------------------------------------- test objects

// /increment -> the new count, /get -> the count, /throw -> throws, as plain text.
class Counter : public durable::DurableObject {
 public:
  Counter(State& state, Env& env) : DurableObject(state, env) { countConstruction(state.id()); }

  Task<Response> fetch(Request request) override {
    const std::string path = request.url().pathname();
    if (path == "/increment") {
      auto n = (co_await storage().get<std::int64_t>("count")).value_or(0) + 1;
      co_await storage().put("count", n);
      co_return Response(std::to_string(n));
    }
    if (path == "/get") {
      auto n = (co_await storage().get<std::int64_t>("count")).value_or(0);
      co_return Response(std::to_string(n));
    }
    if (path == "/throw") {
      co_await storage().put("written-before-throw", true);
      throw Error(ErrorCode::kInternal, "boom: the handler failed");
    }
    if (path == "/throw-not-found") throw Error(ErrorCode::kNotFound, "no such thing");
    if (path == "/throw-std") throw std::out_of_range("plain");
    co_return Response("not found", {.status = 404});
  }
};

// Answers after its own write is durable: a real suspension for whoever awaits it.
class Echo : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  Task<Response> fetch(Request request) override {
    auto n = (co_await storage().get<std::int64_t>("n")).value_or(0) + 1;
    co_await storage().put("n", n);
    co_return Response(request.url().pathname());
  }
};

// /call/<tag>: logs around an await of another object, as a plain handler.
// /bcw/<tag>: the same, inside blockConcurrencyWhile.
class Caller : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  Task<Response> fetch(Request request) override {
    const std::string path = request.url().pathname();
    if (path.rfind("/call/", 0) == 0) {
      std::string tag = path.substr(6);
      co_await callEcho(tag);
      co_return Response("ok");
    }
    if (path.rfind("/bcw/", 0) == 0) {
      std::string tag = path.substr(5);
      std::function<Task<void>()> fn = [this, tag]() -> Task<void> { co_await callEcho(tag); };
      co_await state().blockConcurrencyWhile(fn);
      co_return Response("ok");
    }
    if (path.rfind("/txn/", 0) == 0) {
      std::string tag = path.substr(5);
      std::function<Task<void>(durable::Storage&)> fn = [this, tag](durable::Storage& txn) -> Task<void> {
        co_await callEcho(tag);
        co_await txn.put("txn " + tag, true);
      };
      co_await storage().transaction(fn);
      co_return Response("ok");
    }
    co_return Response("not found", {.status = 404});
  }

 private:
  Task<void> callEcho(std::string tag) {
    record("start " + tag);
    Stub echo = env().ns("ECHO").getByName("echo");
    Request req("http://echo/" + tag);
    Response r = co_await echo.fetch(std::move(req));
    EXPECT_EQ(r.text(), "/" + tag);
    record("end " + tag);
  }
};

// /wait: awaits a Future that /bcw completes from inside blockConcurrencyWhile. The Future's
// resumption is an event of its own object, so it waits for the critical section to end.
class Waker : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  Task<Response> fetch(Request request) override {
    const std::string path = request.url().pathname();
    if (path == "/wait") {
      record("wait start");
      pending_.emplace();
      Future<void> woken = pending_->future();
      co_await woken;
      record("wait resumed");
      co_return Response("ok");
    }
    std::function<Task<void>()> fn = [this]() -> Task<void> {
      record("bcw start");
      if (!pending_) record("no waiter");
      if (pending_) pending_->setValue();
      Stub echo = env().ns("ECHO").getByName("echo");
      Request req("http://echo/woken");
      co_await echo.fetch(std::move(req));
      record("bcw end");
    };
    co_await state().blockConcurrencyWhile(fn);
    co_return Response("ok");
  }

 private:
  std::optional<Promise<void>> pending_;
};

// Reads a key of its own per event, logging around the read: over an engine that answers
// later (the in-memory one), each read waits, and the input gate must keep the next event out.
class Reader : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  Task<Response> fetch(Request request) override {
    const std::string tag = request.url().pathname().substr(1);
    record("start " + tag);
    auto value = co_await storage().get<std::string>("key " + tag);
    std::optional<std::int64_t> alarm = co_await storage().getAlarm();
    durable::ListOptions options;
    options.prefix = "key ";
    durable::Entries listed = co_await storage().list(options);
    record("end " + tag);
    co_return Response(value.value_or("none") + " " + std::to_string(listed.size()) + (alarm ? " alarm" : ""));
  }
};

// Loads its state in the constructor under blockConcurrencyWhile, awaiting another object
// first so that the load really suspends.
class Loader : public durable::DurableObject {
 public:
  Loader(State& state, Env& env) : DurableObject(state, env) {
    countConstruction(state.id());
    static_cast<void>(state.blockConcurrencyWhile([this]() -> Task<void> {
      record("load start");
      Stub echo = this->env().ns("ECHO").getByName("loader");
      Request req("http://echo/load");
      co_await echo.fetch(std::move(req));
      value_ = (co_await storage().get<std::int64_t>("v")).value_or(-1);
      loaded_ = true;
      record("load end");
    }));
  }

  Task<Response> fetch(Request) override {
    record(loaded_ ? "fetch sees " + std::to_string(value_) : "fetch before load");
    co_return Response(loaded_ ? std::to_string(value_) : "not loaded");
  }

  bool loaded() const { return loaded_; }
  std::int64_t value() const { return value_; }

 private:
  bool loaded_ = false;
  std::int64_t value_ = 0;
};

// ---------------------------------------------------------------- helpers

// waitUntil: /start hands the runtime a task that finishes only after /finish, then writes.
class Lingerer : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  Task<Response> fetch(Request request) override {
    const auto path = request.url().pathname();
    if (path == "/start") {
      state().waitUntil(later());
      co_return Response("started");
    }
    if (path == "/finish") {
      gate_.setValue();
      co_return Response("finished");
    }
    const auto done = co_await state().storage().get<bool>("done");
    co_return Response(done.value_or(false) ? "done" : "pending");
  }

 private:
  Task<void> later() {
    co_await gate_.future();
    co_await state().storage().put("done", true);
  }
  Promise<void> gate_;
};

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::lock_guard lock(g_mu);
    g_constructions.clear();
    g_log.clear();
  }
};

std::string get(dt::Env& env, const Stub& stub, const std::string& path) {
  return env.fetch(stub, "http://do" + path).text();
}

// Issues `n` fetches of `path` to `stub` from one task on a shard, all before awaiting any,
// and returns the responses' bodies in arrival order.
std::vector<std::string> concurrentFetches(dt::Env& env, const Stub& stub, std::vector<std::string> paths) {
  return env.run([](Stub stub, std::vector<std::string> paths) -> Task<std::vector<std::string>> {
    auto results = std::make_shared<std::vector<std::string>>();
    const std::size_t n = paths.size();
    Promise<void> all;
    Future<void> done = all.future();
    for (const auto& path : paths) {
      durable::spawn<Response>(stub.fetch("http://do" + path), [results, all, n](Result<Response> r) mutable {
        results->push_back(r.ok() ? r.value().text() : std::string("error"));
        if (results->size() == n) all.setValue();
      });
    }
    if (n) co_await done;
    co_return std::move(*results);
  }(stub, std::move(paths)));
}

using durable::test_support::errorCodeOf;
using durable::test_support::readFromDisk;

// ---------------------------------------------------------------- instances

TEST_F(RuntimeTest, OneInstancePerId) {
  dt::Env env;
  auto& ns = env.exportClass<Counter>("COUNTER");
  const Stub a = ns.getByName("a");
  const Stub b = ns.getByName("b");
  for (int i = 1; i <= 20; ++i) EXPECT_EQ(get(env, a, "/increment"), std::to_string(i));
  EXPECT_EQ(constructions(a.id()), 1);

  const void* first = nullptr;
  const void* again = nullptr;
  const void* other = nullptr;
  env.runInDurableObject<Counter>(a, [&](Counter& c, State&) -> Task<void> {
    first = &c;
    co_return;
  });
  env.runInDurableObject<Counter>(a, [&](Counter& c, State&) -> Task<void> {
    again = &c;
    co_return;
  });
  EXPECT_EQ(first, again);
  EXPECT_EQ(constructions(a.id()), 1);

  // Another ID: another instance with storage of its own.
  EXPECT_EQ(get(env, b, "/increment"), "1");
  env.runInDurableObject<Counter>(b, [&](Counter& c, State& state) -> Task<void> {
    other = &c;
    EXPECT_EQ(co_await state.storage().get<std::int64_t>("count"), 1);
  });
  EXPECT_NE(first, other);
  EXPECT_EQ(constructions(a.id()), 1);
  EXPECT_EQ(constructions(b.id()), 1);
  EXPECT_EQ(env.liveObjects(), 2u);
  EXPECT_EQ(get(env, a, "/get"), "20");
  EXPECT_EQ(get(env, b, "/get"), "1");

  env.restart();
  EXPECT_EQ(get(env, a, "/get"), "20");
  EXPECT_EQ(get(env, b, "/get"), "1");
  EXPECT_EQ(constructions(a.id()), 2);
  EXPECT_EQ(constructions(b.id()), 2);
}

TEST_F(RuntimeTest, ConcurrentIncrementsFromOneTaskAreSerialized) {
  dt::Env env;
  auto& ns = env.exportClass<Counter>("COUNTER");
  const Stub stub = ns.getByName("hot");
  std::vector<std::string> paths(200, "/increment");
  auto bodies = concurrentFetches(env, stub, paths);
  ASSERT_EQ(bodies.size(), 200u);
  std::vector<std::int64_t> got;
  for (const auto& b : bodies) got.push_back(b == "error" ? -1 : std::stoll(b));
  std::sort(got.begin(), got.end());
  std::vector<std::int64_t> want(200);
  std::iota(want.begin(), want.end(), 1);
  EXPECT_EQ(got, want);
  EXPECT_EQ(constructions(stub.id()), 1);
  // Group commit: the 200 increments arrived together, so far fewer commits carried them.
  EXPECT_LT(env.commits(), 50u);
  EXPECT_GE(env.commits(), 1u);
  EXPECT_EQ(get(env, stub, "/get"), "200");
  env.restart();
  EXPECT_EQ(get(env, stub, "/get"), "200");
}

// ---------------------------------------------------------------- output gate

class OutputGateTest : public RuntimeTest, public ::testing::WithParamInterface<const char*> {};

// Under "relaxed" the reply still waits for the commit (durable against a crash of the
// process, not of the machine); under "full" also for the fdatasync.
TEST_P(OutputGateTest, ReplyImpliesDurability) {
  dt::EnvOptions options;
  options.durability = GetParam();
  dt::Env env(options);
  auto& ns = env.exportClass<Counter>("COUNTER");
  const Stub stub = ns.getByName("gate");
  for (int i = 1; i <= 5; ++i) {
    ASSERT_EQ(get(env, stub, "/increment"), std::to_string(i));
    // The reply has been observed: the write it followed is on disk already, without any
    // restart or flush.
    auto onDisk = readFromDisk(env, "count");
    ASSERT_TRUE(onDisk.has_value());
    EXPECT_EQ(*onDisk, durable::Value(i));
  }
  // The same through runInDurableObject: when it returns, its writes are durable.
  env.runInDurableObject<Counter>(
      stub, [](Counter&, State& state) -> Task<void> { co_await state.storage().put("direct", "yes"); });
  EXPECT_EQ(readFromDisk(env, "direct"), durable::Value("yes"));
  env.restart();
  EXPECT_EQ(get(env, stub, "/get"), "5");
}

INSTANTIATE_TEST_SUITE_P(Durability, OutputGateTest, ::testing::Values("full", "relaxed"));

// ---------------------------------------------------------------- input gate

TEST_F(RuntimeTest, BlockConcurrencyWhileInConstructorLoadsBeforeEvents) {
  dt::Env env;
  auto& ns = env.exportClass<Loader>("LOADER");
  env.exportClass<Echo>("ECHO");
  const Stub stub = ns.getByName("l");
  // First life: nothing stored yet. The event itself runs after the load.
  env.runInDurableObject<Loader>(stub, [](Loader& l, State& state) -> Task<void> {
    EXPECT_TRUE(l.loaded());
    EXPECT_EQ(l.value(), -1);
    co_await state.storage().put("v", 42);
  });
  env.restart();
  {
    std::lock_guard lock(g_mu);
    g_log.clear();
  }
  // Second life: several events arrive together while the constructor's load is suspended.
  std::vector<std::string> paths(5, "/");
  auto bodies = concurrentFetches(env, stub, paths);
  EXPECT_EQ(bodies, std::vector<std::string>(5, "42"));
  auto log = eventLog();
  std::vector<std::string> want = {"load start", "load end"};
  want.insert(want.end(), 5, "fetch sees 42");
  EXPECT_EQ(log, want);
  EXPECT_EQ(constructions(stub.id()), 2);
}

TEST_F(RuntimeTest, AwaitingAnotherObjectLetsEventsInterleave) {
  dt::Env env;
  auto& ns = env.exportClass<Caller>("CALLER");
  env.exportClass<Echo>("ECHO");
  const Stub stub = ns.getByName("c");
  std::vector<std::string> paths = {"/call/1", "/call/2"};
  EXPECT_EQ(concurrentFetches(env, stub, paths), std::vector<std::string>(2, "ok"));
  auto log = eventLog();
  ASSERT_EQ(log.size(), 4u);
  // Event 2 started while event 1 was waiting for the other object.
  auto pos = [&](const std::string& s) { return std::find(log.begin(), log.end(), s) - log.begin(); };
  EXPECT_LT(pos("start 1"), pos("start 2"));
  EXPECT_LT(pos("start 2"), pos("end 1")) << ::testing::PrintToString(log);
  EXPECT_LT(pos("start 2"), pos("end 2"));
}

TEST_F(RuntimeTest, BlockConcurrencyWhileKeepsEventsOut) {
  dt::Env env;
  auto& ns = env.exportClass<Caller>("CALLER");
  env.exportClass<Echo>("ECHO");
  const Stub stub = ns.getByName("c");
  std::vector<std::string> paths = {"/bcw/1", "/bcw/2", "/bcw/3"};
  EXPECT_EQ(concurrentFetches(env, stub, paths), std::vector<std::string>(3, "ok"));
  std::vector<std::string> want = {"start 1", "end 1", "start 2", "end 2", "start 3", "end 3"};
  EXPECT_EQ(eventLog(), want);
  // Mixed: a plain event that arrives during a critical section waits for it, and then is
  // free to interleave with the next plain one.
  {
    std::lock_guard lock(g_mu);
    g_log.clear();
  }
  paths = {"/bcw/a", "/call/b", "/call/c"};
  EXPECT_EQ(concurrentFetches(env, stub, paths), std::vector<std::string>(3, "ok"));
  auto log = eventLog();
  ASSERT_EQ(log.size(), 6u);
  EXPECT_EQ(log[0], "start a");
  EXPECT_EQ(log[1], "end a");
  auto pos = [&](const std::string& s) { return std::find(log.begin(), log.end(), s) - log.begin(); };
  EXPECT_LT(pos("start c"), pos("end b")) << ::testing::PrintToString(log);
}

TEST_F(RuntimeTest, AFutureCompletedDuringBlockConcurrencyWhileResumesAfterIt) {
  dt::Env env;
  auto& ns = env.exportClass<Waker>("WAKER");
  env.exportClass<Echo>("ECHO");
  const Stub stub = ns.getByName("w");
  EXPECT_EQ(concurrentFetches(env, stub, {"/wait", "/bcw"}), std::vector<std::string>(2, "ok"));
  std::vector<std::string> want = {"wait start", "bcw start", "bcw end", "wait resumed"};
  EXPECT_EQ(eventLog(), want);
}

TEST_F(RuntimeTest, WaitingForItsOwnStorageKeepsEventsOut) {
  for (const std::string engine : {"sqlite", "memory"}) {
    SCOPED_TRACE(engine);
    dt::EnvOptions options;
    options.storageEngine = engine;
    dt::Env env(options);
    auto& ns = env.exportClass<Reader>("READER");
    const Stub stub = ns.getByName("r");
    env.runInDurableObject<Reader>(stub, [](Reader&, State& state) -> Task<void> {
      co_await state.storage().put("key 2", "two");
    });
    // Evicted: every read of the next life goes to the engine.
    env.restart();
    {
      std::lock_guard lock(g_mu);
      g_log.clear();
    }
    std::vector<std::string> paths = {"/1", "/2", "/3"};
    auto bodies = concurrentFetches(env, stub, paths);
    std::sort(bodies.begin(), bodies.end());
    EXPECT_EQ(bodies, (std::vector<std::string>{"none 1", "none 1", "two 1"}));
    std::vector<std::string> want = {"start 1", "end 1", "start 2", "end 2", "start 3", "end 3"};
    EXPECT_EQ(eventLog(), want);
  }
}

TEST_F(RuntimeTest, TransactionKeepsEventsOut) {
  dt::Env env;
  auto& ns = env.exportClass<Caller>("CALLER");
  env.exportClass<Echo>("ECHO");
  const Stub stub = ns.getByName("c");
  std::vector<std::string> paths = {"/txn/1", "/txn/2"};
  EXPECT_EQ(concurrentFetches(env, stub, paths), std::vector<std::string>(2, "ok"));
  std::vector<std::string> want = {"start 1", "end 1", "start 2", "end 2"};
  EXPECT_EQ(eventLog(), want);
  // A plain event already waiting on another object is not resumed while a transaction
  // holds the gate: its reply is delivered only after the transaction ends.
  {
    std::lock_guard lock(g_mu);
    g_log.clear();
  }
  paths = {"/call/x", "/txn/y"};
  EXPECT_EQ(concurrentFetches(env, stub, paths), std::vector<std::string>(2, "ok"));
  want = {"start x", "start y", "end y", "end x"};
  EXPECT_EQ(eventLog(), want);
  env.runInDurableObject<Caller>(stub, [](Caller&, State& state) -> Task<void> {
    std::vector<std::string> keys = {"txn 1", "txn 2", "txn y"};
    auto found = co_await state.storage().get(keys);
    EXPECT_EQ(found.size(), 3u);
  });
}

// ---------------------------------------------------------------- errors

// What a stub's caller sees when the object's fetch throws: the exception, as on Cloudflare.
durable::Error fetchError(dt::Env& env, const Stub& stub, const std::string& url) {
  try {
    const Response r = env.fetch(stub, url);
    ADD_FAILURE() << url << " answered " << r.status() << " " << r.text() << " instead of throwing";
  } catch (const durable::Error& e) {
    return e;
  }
  return durable::Error(durable::ErrorCode::kInternal, "no error");
}

TEST_F(RuntimeTest, AHandlerThatThrowsReachesTheCallerAsARemoteErrorAndTheObjectStaysUsable) {
  dt::Env env;
  auto& ns = env.exportClass<Counter>("COUNTER");
  const Stub stub = ns.getByName("e");
  EXPECT_EQ(get(env, stub, "/increment"), "1");
  const void* before = nullptr;
  const void* after = nullptr;
  env.runInDurableObject<Counter>(stub, [&](Counter& c, State&) -> Task<void> {
    before = &c;
    co_return;
  });

  durable::Error e = fetchError(env, stub, "http://do/throw");
  EXPECT_STREQ(e.what(), "boom: the handler failed");
  EXPECT_TRUE(e.remote());
  EXPECT_FALSE(e.retryable());
  EXPECT_FALSE(e.overloaded());
  // A durable::Error keeps its code (a Worker that does not catch answers with its status),
  // anything else becomes kInternal (500) with its message.
  e = fetchError(env, stub, "http://do/throw-not-found");
  EXPECT_EQ(e.code(), durable::ErrorCode::kNotFound);
  EXPECT_STREQ(e.what(), "no such thing");
  EXPECT_TRUE(e.remote());
  e = fetchError(env, stub, "http://do/throw-std");
  EXPECT_EQ(e.code(), durable::ErrorCode::kInternal);
  EXPECT_EQ(e.httpStatus(), 500);
  EXPECT_STREQ(e.what(), "plain");
  EXPECT_TRUE(e.remote());

  // Still usable, and the same instance.
  EXPECT_EQ(get(env, stub, "/increment"), "2");
  env.runInDurableObject<Counter>(stub, [&](Counter& c, State&) -> Task<void> {
    after = &c;
    co_return;
  });
  EXPECT_EQ(before, after);
  EXPECT_EQ(constructions(stub.id()), 1);

  // An exception from runInDurableObject reaches the caller the same way.
  EXPECT_THROW(env.runInDurableObject<Counter>(stub,
                                               [](Counter&, State&) -> Task<void> {
                                                 throw std::runtime_error("inside");
                                                 co_return;
                                               }),
               std::runtime_error);
  EXPECT_EQ(get(env, stub, "/increment"), "3");
  EXPECT_EQ(constructions(stub.id()), 1);
}

// ---------------------------------------------------------------- eviction

TEST_F(RuntimeTest, IdleObjectsAreEvictedAndComeBackIntact) {
  dt::EnvOptions options;
  options.idleTimeoutMs = 50;
  dt::Env env(options);
  auto& ns = env.exportClass<Counter>("COUNTER");
  const Stub stub = ns.getByName("idle");
  EXPECT_EQ(get(env, stub, "/increment"), "1");
  EXPECT_EQ(constructions(stub.id()), 1);

  // Eviction, not speed: a sleep is the point here.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (env.liveObjects() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(env.liveObjects(), 0u);

  EXPECT_EQ(get(env, stub, "/increment"), "2");
  EXPECT_EQ(constructions(stub.id()), 2);
  EXPECT_EQ(get(env, stub, "/get"), "2");
}

TEST_F(RuntimeTest, EvictionTakesTheIdleObjectsAndKeepsTheActiveOne) {
  dt::EnvOptions options;
  options.idleTimeoutMs = 400;
  dt::Env env(options);
  auto& ns = env.exportClass<Counter>("COUNTER");
  const Stub active = ns.getByName("active");
  std::vector<Stub> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(ns.getByName("idle-" + std::to_string(i)));
  EXPECT_EQ(get(env, active, "/increment"), "1");
  for (const Stub& s : idle) EXPECT_EQ(get(env, s, "/increment"), "1");
  EXPECT_EQ(env.liveObjects(), 21u);

  // The active object is used every 40 ms, well inside its timeout, for four timeouts; the
  // others only came first. Eviction, not speed: sleeping is the point here.
  int count = 1;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1600);
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
    EXPECT_EQ(get(env, active, "/increment"), std::to_string(++count));
  }
  EXPECT_EQ(env.liveObjects(), 1u);
  EXPECT_EQ(constructions(active.id()), 1);

  // The evicted ones come back from storage.
  for (const Stub& s : idle) {
    EXPECT_EQ(get(env, s, "/increment"), "2");
    EXPECT_EQ(constructions(s.id()), 2);
  }
}

TEST_F(RuntimeTest, WaitUntilOutlivesTheResponseAndKeepsTheObjectInMemory) {
  dt::EnvOptions options;
  options.idleTimeoutMs = 100;
  dt::Env env(options);
  auto& ns = env.exportClass<Lingerer>("LINGER");
  const Stub stub = ns.getByName("l");
  // The response does not wait for the task.
  EXPECT_EQ(get(env, stub, "/start"), "started");
  EXPECT_EQ(get(env, stub, "/get"), "pending");
  // Several idle timeouts later the object is still there: its task has not finished. (Eviction,
  // not speed: sleeping is the point.)
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(env.liveObjects(), 1u);
  EXPECT_EQ(get(env, stub, "/finish"), "finished");
  std::string state;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while ((state = get(env, stub, "/get")) != "done" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(state, "done");
  // Once the task is done the object becomes evictable, and its write was durable.
  while (env.liveObjects() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(env.liveObjects(), 0u);
  EXPECT_EQ(readFromDisk(env, "done"), durable::Value(true));
}

// ---------------------------------------------------------------- IDs

TEST_F(RuntimeTest, IdFromNameIsDeterministicPerNamespaceAndJurisdiction) {
  dt::Env env;
  auto& one = env.exportClass<Counter>("ONE");
  auto& two = env.exportClass<Counter>("TWO");
  const ObjectId a = one.idFromName("x");
  EXPECT_EQ(a, one.idFromName("x"));
  EXPECT_EQ(a.toString(), one.idFromName("x").toString());
  EXPECT_EQ(a.name(), std::optional<std::string>("x"));
  EXPECT_EQ(a.toString().size(), 64u);
  EXPECT_NE(a, one.idFromName("y"));
  EXPECT_NE(a, two.idFromName("x"));

  const auto eu = one.jurisdiction("eu");
  EXPECT_EQ(eu.idFromName("x"), one.jurisdiction("eu").idFromName("x"));
  EXPECT_NE(eu.idFromName("x"), a);
  EXPECT_NE(eu.idFromName("x"), one.jurisdiction("fedramp").idFromName("x"));
  EXPECT_EQ(eu.idFromName("x").jurisdiction(), "eu");
  EXPECT_EQ(a.jurisdiction(), "");
  EXPECT_EQ(errorCodeOf([&] { (void)one.jurisdiction("mars"); }), ErrorCode::kInvalidArgument);

  // The same name in another jurisdiction is another object.
  EXPECT_EQ(get(env, one.get(a), "/increment"), "1");
  EXPECT_EQ(get(env, eu.get(eu.idFromName("x")), "/increment"), "1");
  EXPECT_EQ(get(env, two.get(two.idFromName("x")), "/increment"), "1");
  EXPECT_EQ(get(env, one.get(a), "/increment"), "2");
}

TEST_F(RuntimeTest, NewUniqueIdIsFreshAndCarriesJurisdiction) {
  dt::Env env;
  auto& ns = env.exportClass<Counter>("COUNTER");
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    ObjectId id = ns.newUniqueId();
    EXPECT_TRUE(seen.insert(id.toString()).second);
    EXPECT_EQ(id.jurisdiction(), "");
    EXPECT_FALSE(id.name().has_value());
  }
  durable::UniqueIdOptions euOptions;
  euOptions.jurisdiction = "eu";
  EXPECT_EQ(ns.newUniqueId(euOptions).jurisdiction(), "eu");
  EXPECT_NE(ns.newUniqueId(euOptions), ns.newUniqueId(euOptions));
  EXPECT_EQ(ns.jurisdiction("eu").newUniqueId().jurisdiction(), "eu");
  EXPECT_EQ(ns.jurisdiction("fedramp").newUniqueId().jurisdiction(), "fedramp");
  durable::UniqueIdOptions bad;
  bad.jurisdiction = "mars";
  EXPECT_EQ(errorCodeOf([&] { (void)ns.newUniqueId(bad); }), ErrorCode::kInvalidArgument);
  // Unique IDs reach distinct objects.
  const Stub s1 = ns.get(ns.newUniqueId());
  const Stub s2 = ns.get(ns.newUniqueId());
  EXPECT_EQ(get(env, s1, "/increment"), "1");
  EXPECT_EQ(get(env, s2, "/increment"), "1");
}

TEST_F(RuntimeTest, IdFromStringRoundTripsAndRejectsBadInput) {
  dt::Env env;
  auto& ns = env.exportClass<Counter>("COUNTER");
  auto& other = env.exportClass<Counter>("OTHER");
  const ObjectId named = ns.idFromName("n");
  const ObjectId unique = ns.newUniqueId();
  EXPECT_EQ(ns.idFromString(named.toString()), named);
  EXPECT_EQ(ns.idFromString(unique.toString()), unique);
  EXPECT_EQ(ns.idFromString(named.toString()).toString(), named.toString());
  std::string upper = unique.toString();
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  EXPECT_EQ(ns.idFromString(upper), unique);

  // The same object through a parsed ID.
  EXPECT_EQ(get(env, ns.get(named), "/increment"), "1");
  EXPECT_EQ(get(env, ns.get(ns.idFromString(named.toString())), "/increment"), "2");

  std::string flipped = named.toString();
  flipped[10] = flipped[10] == '0' ? '1' : '0';
  std::string nonHex = named.toString();
  nonHex[0] = 'g';
  for (const std::string& bad : {std::string(), std::string("not-an-id"), named.toString().substr(0, 63),
                                 named.toString() + "0", nonHex, flipped, other.idFromName("n").toString()}) {
    EXPECT_EQ(errorCodeOf([&] { (void)ns.idFromString(bad); }), ErrorCode::kInvalidArgument) << bad;
  }
  // A jurisdiction's namespace accepts only its own IDs.
  const auto eu = ns.jurisdiction("eu");
  const ObjectId euId = eu.newUniqueId();
  EXPECT_EQ(eu.idFromString(euId.toString()), euId);
  EXPECT_EQ(errorCodeOf([&] { (void)eu.idFromString(unique.toString()); }), ErrorCode::kInvalidArgument);
}

TEST_F(RuntimeTest, GetWithAnotherNamespacesIdThrows) {
  dt::Env env;
  auto& ns = env.exportClass<Counter>("COUNTER");
  auto& other = env.exportClass<Counter>("OTHER");
  EXPECT_EQ(errorCodeOf([&] { (void)ns.get(other.idFromName("x")); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(errorCodeOf([&] { (void)ns.get(other.newUniqueId()); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(errorCodeOf([&] { (void)other.get(ns.idFromName("x")); }), ErrorCode::kInvalidArgument);
  EXPECT_NO_THROW((void)ns.get(ns.idFromName("x")));
  // A jurisdiction's namespace takes only IDs of that jurisdiction; the plain one takes all.
  const auto eu = ns.jurisdiction("eu");
  EXPECT_EQ(errorCodeOf([&] { (void)eu.get(ns.idFromName("x")); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(errorCodeOf([&] { (void)eu.get(other.jurisdiction("eu").idFromName("x")); }), ErrorCode::kInvalidArgument);
  EXPECT_NO_THROW((void)eu.get(eu.idFromName("x")));
  EXPECT_NO_THROW((void)ns.get(eu.idFromName("x")));
}

TEST_F(RuntimeTest, WorkerRouteWithBadIdAnswers400) {
  dt::Env env;
  auto& ns = env.exportClass<Counter>("COUNTER");
  auto& other = env.exportClass<Counter>("OTHER");
  durable::Worker worker;
  worker.post("/counter/:id/increment", [](durable::Context& c) -> Task<Response> {
    const durable::Namespace& counters = c.env().ns("COUNTER");
    const Stub stub = counters.get(counters.idFromString(c.param("id")));
    Request req("http://do/increment");
    co_return co_await stub.fetch(std::move(req));
  });
  durable::Env& bindings = env.env();

  auto call = [&](const std::string& id) {
    durable::RequestInit init;
    init.method = "POST";
    return env.run(worker.fetch(Request("http://worker/counter/" + id + "/increment", init), bindings));
  };

  Response bad = call("not-a-valid-id");
  EXPECT_EQ(bad.status(), 400);
  auto body = bad.json();
  ASSERT_TRUE(body.is_object());
  ASSERT_TRUE(body.as_object().contains("error"));
  EXPECT_TRUE(body.as_object().at("error").is_string());
  EXPECT_NE(std::string(body.as_object().at("error").as_string()).find("Invalid Durable Object ID"), std::string::npos);

  // Another namespace's ID is just as bad.
  EXPECT_EQ(call(other.idFromName("w").toString()).status(), 400);
  const std::string good = ns.idFromName("w").toString();
  Response ok = call(good);
  EXPECT_EQ(ok.status(), 200);
  EXPECT_EQ(ok.text(), "1");
  EXPECT_EQ(call(good).text(), "2");
}

TEST_F(RuntimeTest, GetByNameEqualsGetOfIdFromName) {
  dt::Env env;
  auto& ns = env.exportClass<Counter>("COUNTER");
  const Stub byName = ns.getByName("same");
  const Stub byId = ns.get(ns.idFromName("same"));
  EXPECT_EQ(byName.id(), byId.id());
  EXPECT_EQ(byName.id().toString(), byId.id().toString());
  EXPECT_EQ(byName.id().name(), byId.id().name());
  EXPECT_EQ(get(env, byName, "/increment"), "1");
  EXPECT_EQ(get(env, byId, "/increment"), "2");
  EXPECT_EQ(constructions(byId.id()), 1);
  const auto eu = ns.jurisdiction("eu");
  EXPECT_EQ(eu.getByName("same").id(), eu.get(eu.idFromName("same")).id());
  EXPECT_NE(eu.getByName("same").id(), byName.id());
}

}  // namespace
