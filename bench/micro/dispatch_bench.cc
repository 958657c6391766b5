// Dispatch: what one event costs the runtime, as an object sees it.
//
//   same_shard   object A, inside one of its events, awaits stub.fetch() to object B on the
//                same shard, one fetch at a time; B's fetch() answers an empty Response. One
//                iteration = one event into B and its reply back into A (the reply goes
//                through A's shard queue: one post).
//                Ceiling: one boost::asio::post() of an empty handler to an io_context run by
//                the same thread (a chain: each handler posts the next).
//   other_shard  the same, with B on the other shard: the request is posted to B's shard and
//                the reply posted back, so an iteration is a round trip between two threads.
//                Ceiling: a round trip of empty handlers between two io_contexts on two
//                threads (A posts to B, whose handler posts back to A).
//
// durable::testing::Env with 2 shards and durability relaxed (nothing is written); which
// shard an object lives on is found through the public API by the thread its events run on.
#include "micro.h"

#include <durable/durable.h>
#include <durable/testing.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace micro {
namespace {

class Echo : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<durable::Response> fetch(durable::Request) override {
    durable::Response r(nullptr);
    co_return r;
  }
};

struct Dispatch {
  std::unique_ptr<durable::testing::Env> env;
  const durable::Namespace* ns = nullptr;
  std::optional<durable::Stub> caller, sameShard, otherShard;

  Dispatch() {
    durable::testing::EnvOptions o;
    o.durability = "relaxed";
    o.shards = 2;
    env = std::make_unique<durable::testing::Env>(o);
    ns = &env->exportClass<Echo>("ECHO");
    caller = ns->getByName("caller");
    const auto callerThread = threadOf(*caller);
    for (int i = 0; i < 64 && !(sameShard && otherShard); ++i) {
      auto stub = ns->getByName("callee-" + std::to_string(i));
      if (threadOf(stub) == callerThread) {
        if (!sameShard) sameShard = stub;
      } else if (!otherShard) {
        otherShard = stub;
      }
    }
    if (!sameShard || !otherShard) throw std::runtime_error("dispatch: no callee on one of the shards");
  }

  std::thread::id threadOf(const durable::Stub& stub) {
    std::thread::id id;
    env->runInObject(stub, [&id](durable::DurableObject&, durable::State&) -> durable::Task<void> {
      id = std::this_thread::get_id();
      co_return;
    });
    return id;
  }
};

std::unique_ptr<Dispatch> g_dispatch;

Dispatch& dispatch() {
  if (!g_dispatch) g_dispatch = std::make_unique<Dispatch>();
  return *g_dispatch;
}

void oursFetch(benchmark::State& st, bool sameShard) {
  auto& d = dispatch();
  const durable::Stub target = sameShard ? *d.sameShard : *d.otherShard;
  const std::string url = "http://do/ping";
  d.env->runInObject(*d.caller, [&](durable::DurableObject&, durable::State&) -> durable::Task<void> {
    for (auto _ : st) {
      durable::Request request(url);
      durable::Response response = co_await target.fetch(std::move(request));
      benchmark::DoNotOptimize(response);
    }
  });
  st.SetItemsProcessed(st.iterations());
}

// withReactor: each io_context has a timer, as every shard has (its eviction timer). Creating
// one starts Asio's epoll reactor, which the scheduler then runs (a non-blocking epoll_wait)
// between handlers, and through which it wakes an idle thread, instead of a condition
// variable. Without it the io_context has no reactor at all.
void postSameThread(benchmark::State& st, bool withReactor) {
  boost::asio::io_context ctx;
  std::optional<boost::asio::steady_timer> timer;
  if (withReactor) timer.emplace(ctx);
  std::function<void()> next = [&] {
    if (st.KeepRunning()) boost::asio::post(ctx, [&] { next(); });
  };
  boost::asio::post(ctx, [&] { next(); });
  ctx.run();
  st.SetItemsProcessed(st.iterations());
}

void postCrossThread(benchmark::State& st, bool withReactor) {
  boost::asio::io_context a, b;
  std::optional<boost::asio::steady_timer> timerA, timerB;
  if (withReactor) {
    timerA.emplace(a);
    timerB.emplace(b);
  }
  auto keepA = boost::asio::make_work_guard(a);
  auto keepB = boost::asio::make_work_guard(b);
  std::thread other([&] { b.run(); });
  std::function<void()> next = [&] {
    if (!st.KeepRunning()) {
      keepA.reset();
      return;
    }
    boost::asio::post(b, [&] { boost::asio::post(a, [&] { next(); }); });
  };
  boost::asio::post(a, [&] { next(); });
  a.run();
  keepB.reset();
  other.join();
  st.SetItemsProcessed(st.iterations());
}

}  // namespace

void registerDispatch() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("dispatch/same_shard/ours", oursFetch, true)->UseRealTime();
  RegisterBenchmark("dispatch/same_shard/post", postSameThread, false)->UseRealTime();
  RegisterBenchmark("dispatch/same_shard/post_reactor", postSameThread, true)->UseRealTime();
  RegisterBenchmark("dispatch/other_shard/ours", oursFetch, false)->UseRealTime();
  RegisterBenchmark("dispatch/other_shard/post", postCrossThread, false)->UseRealTime();
  RegisterBenchmark("dispatch/other_shard/post_reactor", postCrossThread, true)->UseRealTime();
}

void shutdownDispatch() { g_dispatch.reset(); }

}  // namespace micro
