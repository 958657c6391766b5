// Resetting an object on purpose: state().abort(reason), and a blockConcurrencyWhile() callback
// that runs past 30 seconds. Callers of the events that were running get a retryable error,
// writes made before are kept, and the next event meets a new instance.
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

std::atomic<int> g_instances{0};
// What a write of the old instance did after the reset: "landed" or the error it threw.
std::string g_lateWrite;

class Resettable : public durable::DurableObject {
 public:
  Resettable(durable::State& state, durable::Env& env) : DurableObject(state, env) { ++g_instances; }

  Task<Response> fetch(Request request) override {
    const auto path = request.url().pathname();
    if (path == "/slow") {
      co_await durable::sleep(1000ms);
      co_return Response("slow done");
    }
    if (path == "/abort") {
      co_await storage().put("before", std::string("kept"));
      state().abort("bad state");
    }
    if (path == "/abort-caught") {
      // Catching the error does not save the event: its caller still gets it.
      try {
        state().abort("caught it");
      } catch (const durable::Error&) {
      }
      // Nor can it write any more: what it does after the reset must not land.
      g_lateWrite = co_await tryWrite("after-abort");
      co_return Response("caught");
    }
    if (path == "/block") {
      co_await state().blockConcurrencyWhile([this]() -> Task<void> {
        co_await durable::sleep(60'000ms);
        g_lateWrite = co_await tryWrite("after-timeout");
      });
      co_return Response("blocked");
    }
    if (path == "/late") {
      const auto a = co_await storage().get<std::string>("after-abort");
      const auto b = co_await storage().get<std::string>("after-timeout");
      co_return Response(a.value_or("-") + "," + b.value_or("-"));
    }
    co_return Response((co_await storage().get<std::string>("before")).value_or("none"));
  }

  Task<std::string> tryWrite(std::string key) {
    try {
      co_await storage().put(key, std::string("late"));
    } catch (const durable::Error& e) {
      co_return std::string(e.what());
    }
    co_return "landed";
  }

  Task<std::int64_t> abortByRpc() {
    state().abort("from rpc");
    co_return 0;
  }
  using Rpc = durable::Rpc<&Resettable::abortByRpc>;
};

durable::Error errorOf(dt::Env& env, const durable::Stub& stub, const std::string& url) {
  try {
    const auto r = env.fetch(stub, url);
    ADD_FAILURE() << url << " answered " << r.status() << " " << r.text();
  } catch (const durable::Error& e) {
    return e;
  }
  return durable::Error(durable::ErrorCode::kInternal, "none");
}

std::future<durable::Result<Response>> startFetch(dt::Env& env, const durable::Stub& stub, const std::string& url) {
  auto p = std::make_shared<std::promise<durable::Result<Response>>>();
  auto f = p->get_future();
  env.run([](durable::Stub stub, std::string url, std::shared_ptr<std::promise<durable::Result<Response>>> p) -> Task<void> {
    durable::spawn(stub.fetch(url), std::function<void(durable::Result<Response>)>(
                                        [p](durable::Result<Response> r) { p->set_value(std::move(r)); }));
    co_return;
  }(stub, url, p));
  return f;
}

void expectRetryable(durable::Result<Response> r, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "answered " << r.value().text();
  try {
    std::rethrow_exception(r.error());
  } catch (const durable::Error& e) {
    EXPECT_TRUE(e.retryable()) << e.what();
    EXPECT_FALSE(e.overloaded());
    EXPECT_EQ(e.code(), durable::ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

dt::EnvOptions manualClock() {
  dt::EnvOptions o;
  o.manualClock = true;
  return o;
}

TEST(Abort, FailsEveryRunningEventKeepsEarlierWritesAndTheNextEventMeetsANewInstance) {
  dt::Env env(manualClock());
  const auto& ns = env.exportClass<Resettable>("RESETTABLE");
  const auto stub = ns.getByName("a");
  EXPECT_EQ(env.fetch(stub, "http://do/get").text(), "none");
  const int before = g_instances.load();

  auto slow = startFetch(env, stub, "http://do/slow");  // running (asleep) when the object aborts
  const auto e = errorOf(env, stub, "http://do/abort");
  EXPECT_TRUE(e.retryable());
  EXPECT_FALSE(e.remote());
  EXPECT_NE(std::string(e.what()).find("bad state"), std::string::npos) << e.what();

  env.advanceClock(1000ms);
  expectRetryable(slow.get(), "bad state");

  EXPECT_EQ(env.fetch(stub, "http://do/get").text(), "kept");
  EXPECT_EQ(g_instances.load(), before + 1);

  // Catching it inside changes nothing for the caller, and its later write throws.
  EXPECT_TRUE(errorOf(env, stub, "http://do/abort-caught").retryable());
  EXPECT_NE(g_lateWrite.find("caught it"), std::string::npos) << g_lateWrite;
  EXPECT_EQ(g_instances.load(), before + 1);
  EXPECT_EQ(env.fetch(stub, "http://do/get").text(), "kept");
  EXPECT_EQ(g_instances.load(), before + 2);

  // From an RPC method the same.
  try {
    env.run(stub.call<&Resettable::abortByRpc>());
    ADD_FAILURE() << "no error";
  } catch (const durable::Error& e) {
    EXPECT_TRUE(e.retryable());
    EXPECT_NE(std::string(e.what()).find("from rpc"), std::string::npos) << e.what();
  }
}

TEST(BlockConcurrencyWhile, ACallbackPast30SecondsResetsTheObjectAndItsCallersFailAtOnce) {
  dt::Env env(manualClock());
  const auto& ns = env.exportClass<Resettable>("RESETTABLE");
  const auto stub = ns.getByName("b");
  EXPECT_EQ(env.fetch(stub, "http://do/get").text(), "none");
  const int before = g_instances.load();

  auto blocked = startFetch(env, stub, "http://do/block");
  auto queued = startFetch(env, stub, "http://do/get");  // waits at the input gate
  EXPECT_EQ(queued.wait_for(200ms), std::future_status::timeout);

  env.advanceClock(29'999ms);
  EXPECT_EQ(queued.wait_for(100ms), std::future_status::timeout);
  env.advanceClock(1ms);
  expectRetryable(blocked.get(), "blockConcurrencyWhile");
  expectRetryable(queued.get(), "blockConcurrencyWhile");
  // Its callback still runs: every new event fails at once instead of waiting for it.
  expectRetryable(startFetch(env, stub, "http://do/get").get(), "blockConcurrencyWhile");

  // Once the callback ends, the object is replaced and serves again; what the callback wrote
  // after the reset threw and did not land.
  env.advanceClock(30'000ms);
  for (int i = 0; i < 100; ++i) {
    auto r = startFetch(env, stub, "http://do/get").get();
    if (r.ok()) {
      EXPECT_EQ(r.value().text(), "none");
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(g_instances.load(), before + 1);
  EXPECT_NE(g_lateWrite.find("blockConcurrencyWhile"), std::string::npos) << g_lateWrite;
  EXPECT_EQ(env.fetch(stub, "http://do/late").text(), "-,-");
}

}  // namespace
