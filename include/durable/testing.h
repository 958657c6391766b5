// durable/testing.h: test objects through the real runtime, without HTTP.
//
// What @cloudflare/vitest-pool-workers gives JavaScript authors: namespaces of your classes
// over real storage in a temporary directory, fetch() on an object, code run inside an object
// with its state (runInDurableObject), and a restart that evicts every object so the next
// event reloads from disk.
//
//   durable::testing::Env env;
//   auto& ns = env.exportClass<Counter>("COUNTER");
//   auto stub = ns.get(ns.idFromName("a"));
//   EXPECT_EQ(env.fetch(stub, "http://do/increment", {.method = "POST"}).text(), R"({"count":1})");
//   env.runInDurableObject<Counter>(stub, [](Counter&, durable::State& state) -> durable::Task<void> {
//     EXPECT_EQ(co_await state.storage().get<std::int64_t>("count"), 1);
//   });
//
// Thread safety: one test thread drives an Env; the objects run on the runtime's shards.
#pragma once

#include <durable/clock.h>
#include <durable/namespace.h>
#include <durable/object.h>
#include <durable/task.h>
#include <durable/worker.h>

#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

namespace durable::testing {

struct EnvOptions {
  std::string durability = "full";  // or "relaxed"
  unsigned shards = 1;
  std::int64_t idleTimeoutMs = 60'000;
  std::int64_t hibernationTimeoutMs = 10'000;
  std::size_t maxWebSocketMessageBytes = 32 * 1024 * 1024;
  std::size_t maxValueBytes = 128 * 1024;
  // Calls one object holds (accepted, not yet answered) before it refuses more as overloaded.
  std::size_t maxPendingCalls = 1000;
  // durable::fetch()'s limits ([durable] fetch_timeout_ms, max_fetch_response_bytes).
  std::int64_t fetchTimeoutMs = 30'000;
  std::size_t maxFetchResponseBytes = 32 * 1024 * 1024;
  // Exported classes as if created by new_sqlite_classes: key and value together up to 2 MiB,
  // instead of values up to maxValueBytes (storage.h).
  bool sqliteBacked = false;
  // Their SQL database's size limit ([durable] sql_max_database_bytes).
  std::uint64_t sqlMaxDatabaseBytes = 10ull * 1024 * 1024 * 1024;
  // Point-in-time recovery: [durable] pitr_retention_ms and pitr_snapshot_every.
  std::int64_t pitrRetentionMs = 30ll * 24 * 3600 * 1000;
  std::uint64_t pitrSnapshotEvery = 10'000;
  // Empty: a fresh temporary directory, removed with the Env.
  std::filesystem::path persistDir;
  // Install a ManualClock for the Env's lifetime: durable::now() and alarms then move only
  // with advanceClock(). The clock is process-wide: one such Env at a time.
  bool manualClock = false;
  // Open storage through a fault-injecting VFS, so tests can fail commits (see
  // failStorageWrites).
  bool faultInjection = false;
  // "sqlite": a database file per partition in persistDir, as `durable serve` keeps it.
  // "memory": rows kept in the Env's memory, surviving restart() but not the Env; every
  // commit completes on a later turn of the event loop, as over a network.
  // "postgres": rows in the PostgreSQL at postgresUrl, the Env a one-node cluster named
  // clusterNode (docs/cluster.md): every commit fenced by the slots it holds.
  std::string storageEngine = "sqlite";
  std::string postgresUrl;
  std::string clusterNode = "test";
  // The node's lease ([cluster] lease_ms): renewed every quarter of it.
  std::int64_t clusterLeaseMs = 5000;
};

class Env {
 public:
  using Factory = std::function<std::unique_ptr<DurableObject>(State&, durable::Env&)>;
  using InObject = std::function<Task<void>(DurableObject&, State&)>;

  explicit Env(EnvOptions options = {});
  ~Env();
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  // Binds class T as `binding` (and declares it). Call before the first event.
  template <class T>
  const Namespace& exportClass(const std::string& binding) {
    return exportClass(binding, [](State& s, durable::Env& e) -> std::unique_ptr<DurableObject> {
      return std::make_unique<T>(s, e);
    });
  }
  const Namespace& exportClass(const std::string& binding, Factory factory);
  // A variable for durable::Env::var.
  void setVar(const std::string& name, const std::string& value);

  // Runs `task` on a shard, as a Worker would, and waits for its result.
  template <class T>
  T run(Task<T> task) {
    auto p = std::make_shared<std::promise<Result<T>>>();
    auto f = p->get_future();
    post([p, t = std::make_shared<Task<T>>(std::move(task))]() mutable {
      spawn(std::move(*t), std::function<void(Result<T>)>([p](Result<T> r) { p->set_value(std::move(r)); }));
    });
    if constexpr (std::is_void_v<T>) {
      f.get().value();
    } else {
      return std::move(f.get()).value();
    }
  }

  Response fetch(const Stub& stub, Request request);
  Response fetch(const Stub& stub, std::string url, RequestInit init = {}) {
    return fetch(stub, Request(std::move(url), std::move(init)));
  }

  // Runs fn inside the object as one of its events (gates apply), and waits for it.
  template <class T>
  void runInDurableObject(const Stub& stub, std::function<Task<void>(T&, State&)> fn) {
    runInObject(stub, [fn = std::move(fn)](DurableObject& o, State& s) -> Task<void> {
      return fn(dynamic_cast<T&>(o), s);
    });
  }
  void runInObject(const Stub& stub, InObject fn);

  // Fires the object's alarm now, if it has one, and waits for the handler; false when none is
  // set. An exception from alarm() propagates.
  bool runDurableObjectAlarm(const Stub& stub);
  // The IDs of a namespace's objects that have stored keys or an alarm.
  std::vector<ObjectId> listDurableObjectIds(const Namespace& ns);
  // Moves the manual clock (EnvOptions::manualClock) and waits until every alarm that became
  // due has run, including retries that fall due in the same step.
  void advanceClock(std::chrono::milliseconds by);
  // Waits until no alarm is due or running.
  void settleAlarms();
  ManualClock& clock();

  // Serves `worker` over real HTTP and WebSocket on 127.0.0.1 (a free port, returned), as
  // `durable serve` would, until the Env is destroyed or restarted. The worker must outlive it.
  std::uint16_t serve(const Worker& worker);

  // With EnvOptions::faultInjection: from now on the next `count` storage writes (negative: all,
  // until healStorage) fail with an I/O error, or a full disk.
  void failStorageWrites(int count = -1, bool diskFull = false);
  // The same for the syncs that make commits durable only: the writes reach the WAL, the sync
  // fails, and the partition stops until restart() (storage/partition.h says why).
  void failStorageSyncs(int count = -1);
  void healStorage();

  // With EnvOptions::storageEngine "memory": from now on commits are applied but not reported
  // durable until releaseCommits(), so every reply and WebSocket frame behind them waits, as
  // over a slow network. The Env releases them itself before it stops or restarts.
  void holdCommits();
  void releaseCommits();

  // Stops the runtime (every object evicted, every commit landed) and starts it again over the
  // same directory.
  void restart();
  // Objects currently live on all shards.
  std::size_t liveObjects();
  // Storage commits that reached the disk since the runtime started (all partitions).
  std::uint64_t commits();

  const std::filesystem::path& dir() const;
  durable::Env& env();

 private:
  void post(std::function<void()> fn);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace durable::testing
