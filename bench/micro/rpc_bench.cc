// RPC against fetch: the same increment of a counter object, called the two ways an object
// can call another (durable/rpc.h, Stub::fetch).
//
//   rpc/increment/rpc     co_await stub.call<&Counter::increment>(1), the result an int64
//   rpc/increment/fetch   co_await stub.fetch("http://do/increment", POST), the count read
//                         from the response's JSON body, as the seed's Worker does
//
// One caller object on one shard keeps 32 calls in flight to 1,000 counters in turn; each
// increment is a get and a put of the counter's storage, durability relaxed (SQLite without
// fsync, so the commit path is the same for both and the disk does not hide the difference).
// One iteration = 32 increments. The "ceiling" of the pair is fetch: the fraction printed is
// how many times the fetch rate RPC reaches (issue 16's target: at least 1.2).
#include "micro.h"

#include <durable/durable.h>
#include <durable/testing.h>

#include <memory>
#include <string>
#include <vector>

namespace micro {
namespace {

class BenchCounter : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  durable::Task<std::int64_t> increment(std::int64_t by) {
    const auto n = (co_await storage().get<std::int64_t>("count")).value_or(0) + by;
    co_await storage().put("count", n);
    co_return n;
  }

  durable::Task<durable::Response> fetch(durable::Request request) override {
    if (request.url().pathname() != "/increment") co_return durable::Response("Not found", {.status = 404});
    const auto n = co_await increment(1);
    co_return durable::Response::json(boost::json::object{{"count", n}});
  }

  using Rpc = durable::Rpc<&BenchCounter::increment>;
};

constexpr int kWindow = 32;
constexpr int kObjects = 1000;

struct Rig {
  std::unique_ptr<durable::testing::Env> env;
  const durable::Namespace* ns = nullptr;
  std::vector<durable::Stub> counters;
  std::optional<durable::Stub> caller;

  Rig() {
    durable::testing::EnvOptions o;
    o.durability = "relaxed";
    o.shards = 1;
    env = std::make_unique<durable::testing::Env>(o);
    ns = &env->exportClass<BenchCounter>("COUNTER");
    for (int i = 0; i < kObjects; ++i) counters.push_back(ns->getByName("c" + std::to_string(i)));
    caller = ns->getByName("caller");
  }
};

std::unique_ptr<Rig> g_rig;

Rig& rig() {
  if (!g_rig) g_rig = std::make_unique<Rig>();
  return *g_rig;
}

// Starts `kWindow` calls made by `call(stub)` and completes when all have answered.
template <class Call>
durable::Future<void> window(std::vector<durable::Stub>& counters, std::size_t& next, Call call) {
  durable::Promise<void> all;
  auto left = std::make_shared<int>(kWindow);
  for (int i = 0; i < kWindow; ++i) {
    const durable::Stub& stub = counters[next++ % counters.size()];
    durable::spawn(call(stub), std::function<void(durable::Result<std::int64_t>)>([all, left](durable::Result<std::int64_t> r) mutable {
                     benchmark::DoNotOptimize(r.value());
                     if (--*left == 0) all.setValue();
                   }));
  }
  return all.future();
}

durable::Task<std::int64_t> viaRpc(durable::Stub stub) { co_return co_await stub.call<&BenchCounter::increment>(1); }

durable::Task<std::int64_t> viaFetch(durable::Stub stub) {
  auto response = co_await stub.fetch("http://do/increment", {.method = "POST"});
  co_return response.json().as_object().at("count").as_int64();
}

void increments(benchmark::State& st, bool rpc) {
  auto& r = rig();
  std::size_t next = 0;
  r.env->runInObject(*r.caller, [&](durable::DurableObject&, durable::State&) -> durable::Task<void> {
    for (auto _ : st) {
      auto done = rpc ? window(r.counters, next, viaRpc) : window(r.counters, next, viaFetch);
      co_await done;
    }
  });
  st.SetItemsProcessed(st.iterations() * kWindow);
}

}  // namespace

void registerRpc() {
  benchmark::RegisterBenchmark("rpc/increment/rpc", increments, true)->UseRealTime();
  benchmark::RegisterBenchmark("rpc/increment/fetch", increments, false)->UseRealTime();
}

void shutdownRpc() { g_rig.reset(); }

}  // namespace micro
