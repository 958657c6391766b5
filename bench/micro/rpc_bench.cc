// RPC against fetch: the same increment of a counter object, called the two ways an object
// can call another (durable/rpc.h, Stub::fetch).
//
//   rpc/increment/rpc     co_await stub.call<&Counter::increment>(1), the result an int64
//   rpc/increment/fetch   co_await stub.fetch("http://do/increment", POST), the count read
//                         from the response's JSON body, as the seed's Worker does
//
// One caller object on one shard keeps a window of calls in flight to 1,000 counters in turn;
// each increment is a get and a put of the counter's storage, and its answer waits for the
// commit (output gate). Two storages:
//   increment_memory  the in-memory engine (commits complete on the next turn of the loop):
//                     what is left is the call itself, 32 in flight;
//   increment_sqlite  SQLite, durability relaxed (no fsync), 256 in flight: the commit thread
//                     costs both ways the same, which narrows the ratio.
// One iteration = one window of increments. The "ceiling" of each pair is fetch: the fraction
// printed is how many times the fetch rate RPC reaches (issue 16's target: at least 1.2).
#include "micro.h"

#include <durable/durable.h>
#include <durable/testing.h>

#include <map>
#include <optional>
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

constexpr int kObjects = 1000;

struct Rig {
  std::unique_ptr<durable::testing::Env> env;
  const durable::Namespace* ns = nullptr;
  std::vector<durable::Stub> counters;
  std::optional<durable::Stub> caller;

  explicit Rig(const std::string& engine) {
    durable::testing::EnvOptions o;
    o.durability = "relaxed";
    o.shards = 1;
    o.storageEngine = engine;
    env = std::make_unique<durable::testing::Env>(o);
    ns = &env->exportClass<BenchCounter>("COUNTER");
    for (int i = 0; i < kObjects; ++i) counters.push_back(ns->getByName("c" + std::to_string(i)));
    caller = ns->getByName("caller");
  }
};

std::map<std::string, std::unique_ptr<Rig>> g_rigs;

Rig& rig(const std::string& engine) {
  auto& r = g_rigs[engine];
  if (!r) r = std::make_unique<Rig>(engine);
  return *r;
}

// Starts `size` calls made by `call(stub)` and completes when all have answered.
template <class Call>
durable::Future<void> window(std::vector<durable::Stub>& counters, std::size_t& next, int size, Call call) {
  durable::Promise<void> all;
  auto left = std::make_shared<int>(size);
  for (int i = 0; i < size; ++i) {
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

void increments(benchmark::State& st, const std::string& engine, int size, bool rpc) {
  auto& r = rig(engine);
  std::size_t next = 0;
  r.env->runInObject(*r.caller, [&](durable::DurableObject&, durable::State&) -> durable::Task<void> {
    for (auto _ : st) {
      auto done = rpc ? window(r.counters, next, size, viaRpc) : window(r.counters, next, size, viaFetch);
      co_await done;
    }
  });
  st.SetItemsProcessed(st.iterations() * size);
}

}  // namespace

void registerRpc() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("rpc/increment_memory/rpc", increments, "memory", 32, true)->UseRealTime();
  RegisterBenchmark("rpc/increment_memory/fetch", increments, "memory", 32, false)->UseRealTime();
  RegisterBenchmark("rpc/increment_sqlite/rpc", increments, "sqlite", 256, true)->UseRealTime();
  RegisterBenchmark("rpc/increment_sqlite/fetch", increments, "sqlite", 256, false)->UseRealTime();
}

void shutdownRpc() { g_rigs.clear(); }

}  // namespace micro
