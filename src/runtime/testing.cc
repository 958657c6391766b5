#include <durable/testing.h>

#include "net/http_server.h"
#include "runtime/runtime.h"
#include "runtime/state_lock.h"
#include "storage/fault_vfs.h"
#include "cluster/membership.h"
#include "storage/memory_engine.h"
#include "storage/postgres_engine.h"

#include <durable/error.h>

#include <openssl/sha.h>

#include <atomic>
#include <limits>
#include <mutex>
#include <random>
#include <thread>

namespace durable::testing {

namespace {
std::filesystem::path makeTempDir() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  auto dir = std::filesystem::temp_directory_path() /
             ("durable-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
              std::to_string(rd()));
  std::filesystem::create_directories(dir);
  return dir;
}
}  // namespace

struct Env::Impl {
  EnvOptions options;
  std::shared_ptr<ManualClock> clock;
  std::filesystem::path dir;
  bool ownsDir = false;
  // Like a server: one process (and one Env) per state directory.
  std::unique_ptr<detail::StateDirLock> lock;
  std::vector<std::unique_ptr<detail::NamespaceImpl>> namespaces;
  std::map<std::string, std::string, std::less<>> vars;
  std::unique_ptr<detail::Runtime> runtime;
  std::unique_ptr<detail::HttpServer> http;
  std::map<std::string, Namespace> handles;
  // storageEngine "memory": each partition's rows, kept across restart().
  std::vector<std::shared_ptr<detail::MemoryEngine::Data>> memoryRows;
  // storageEngine "postgres": this Env as a node of a cluster, kept across restart().
  // The cluster's lease thread tells the runtime of the current incarnation (it changes at
  // restart()) what it claims and asks it whether slots are quiet, as the server's does.
  // Declared before `cluster`: that thread ends before the mutex goes.
  std::mutex runtimeSwap;
  std::unique_ptr<detail::ClusterMembership> cluster;

  void setRuntime(std::unique_ptr<detail::Runtime> next) {
    std::lock_guard lock(runtimeSwap);
    runtime = std::move(next);
  }

  detail::Runtime& started() {
    if (!runtime) {
      detail::RuntimeOptions ro;
      ro.persistDir = dir;
      ro.settings.durability =
          options.durability == "relaxed" ? config::Durability::kRelaxed : config::Durability::kFull;
      ro.settings.shards = options.shards;
      ro.settings.idleTimeoutMs = options.idleTimeoutMs;
      ro.settings.maxValueBytes = options.maxValueBytes;
      ro.settings.sqlMaxDatabaseBytes = options.sqlMaxDatabaseBytes;
      ro.settings.pitrRetentionMs = options.pitrRetentionMs;
      ro.settings.pitrSnapshotEvery = options.pitrSnapshotEvery;
      ro.settings.maxPendingCalls = options.maxPendingCalls;
      ro.settings.fetchTimeoutMs = options.fetchTimeoutMs;
      ro.settings.maxFetchResponseBytes = options.maxFetchResponseBytes;
      ro.faultInjection = options.faultInjection;
      if (options.storageEngine == "memory") {
        ro.engine = [this](int p, boost::asio::io_context& shard) -> std::unique_ptr<detail::StorageEngine> {
          while (memoryRows.size() <= static_cast<std::size_t>(p)) {
            memoryRows.push_back(std::make_shared<detail::MemoryEngine::Data>());
          }
          return std::make_unique<detail::MemoryEngine>(memoryRows[static_cast<std::size_t>(p)], shard);
        };
      }
      const int partitions = static_cast<int>(std::max(1u, options.shards));
      if (options.storageEngine == "postgres") {
        if (!cluster) {
          detail::ClusterOptions co;
          co.url = options.postgresUrl;
          co.node = options.clusterNode;
          co.lease = std::chrono::milliseconds(options.clusterLeaseMs);
          cluster = std::make_unique<detail::ClusterMembership>(co);
          const auto askFor = std::min<std::chrono::milliseconds>(co.lease / 8, std::chrono::milliseconds(100));
          cluster->start(
              [this](const std::vector<int>&) {
                std::lock_guard lock(runtimeSwap);
                if (runtime) runtime->slotsClaimed();
              },
              [this, askFor](const std::vector<int>& slots) {
                std::lock_guard lock(runtimeSwap);
                return !runtime || runtime->slotsQuiet(slots, askFor);
              });
        }
        ro.slots = cluster->slots();
        ro.engine = [this, partitions](int p, boost::asio::io_context& shard) -> std::unique_ptr<detail::StorageEngine> {
          return std::make_unique<detail::PostgresEngine>(p, partitions, options.postgresUrl, options.clusterNode,
                                                          cluster->slots(), shard);
        };
      }
      ro.settings.hibernationTimeoutMs = options.hibernationTimeoutMs;
      ro.settings.maxWebSocketMessageBytes = options.maxWebSocketMessageBytes;
      std::vector<detail::NamespaceImpl*> ns;
      for (auto& n : namespaces) ns.push_back(n.get());
      setRuntime(std::make_unique<detail::Runtime>(ro, ns, vars, std::vector<std::int64_t>{}, partitions));
      runtime->start();
    }
    return *runtime;
  }
};

Env::Env(EnvOptions options) : impl_(std::make_unique<Impl>()) {
  if (options.storageEngine != "sqlite" && options.storageEngine != "memory" && options.storageEngine != "postgres") {
    throw Error(ErrorCode::kInvalidArgument, "EnvOptions::storageEngine: \"" + options.storageEngine +
                                                 "\" is not \"sqlite\", \"memory\" or \"postgres\"");
  }
  if (options.storageEngine == "postgres" && options.postgresUrl.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "EnvOptions::storageEngine \"postgres\" needs EnvOptions::postgresUrl");
  }
  impl_->options = std::move(options);
  if (impl_->options.manualClock) {
    impl_->clock = std::make_shared<ManualClock>();
    setClock(impl_->clock);
  }
  if (impl_->options.persistDir.empty()) {
    impl_->dir = makeTempDir();
    impl_->ownsDir = true;
  } else {
    impl_->dir = impl_->options.persistDir;
    std::filesystem::create_directories(impl_->dir);
  }
  try {
    impl_->lock = std::make_unique<detail::StateDirLock>(impl_->dir);
  } catch (...) {
    // The Env is not made, so its destructor will not undo the clock it installed.
    if (impl_->clock) setClock(nullptr);
    throw;
  }
}

Env::~Env() {
  if (impl_->options.faultInjection) detail::disarmStorageFaults();
  releaseCommits();
  // Threads stop first, then the acceptors go while their io_contexts still exist.
  if (impl_->runtime) impl_->runtime->stop();
  impl_->http.reset();
  impl_->setRuntime(nullptr);
  if (impl_->clock) setClock(nullptr);
  if (impl_->ownsDir) {
    std::error_code ec;
    std::filesystem::remove_all(impl_->dir, ec);
  }
}

const Namespace& Env::exportClass(const std::string& binding, Factory factory) {
  if (impl_->runtime) throw Error(ErrorCode::kInvalidArgument, "exportClass() must come before the first event");
  auto ns = std::make_unique<detail::NamespaceImpl>();
  ns->binding = binding;
  ns->className = binding;
  ns->nsId = static_cast<std::int64_t>(impl_->namespaces.size() + 1);
  // A key derived from the binding, so that the same test over the same directory (a restart,
  // or a second Env on persistDir) sees the same IDs.
  std::string seed = "durable-testing:" + binding;
  SHA256(reinterpret_cast<const unsigned char*>(seed.data()), seed.size(), ns->key.data());
  ns->factory = std::move(factory);
  ns->sqliteBacked = impl_->options.sqliteBacked;
  auto [it, _] = impl_->handles.insert_or_assign(binding, detail::makeNamespace(ns.get()));
  impl_->namespaces.push_back(std::move(ns));
  return it->second;
}

void Env::setVar(const std::string& name, const std::string& value) { impl_->vars[name] = value; }

void Env::post(std::function<void()> fn) { detail::postTo(impl_->started().shard(0), std::move(fn)); }

Response Env::fetch(const Stub& stub, Request request) {
  auto s = std::make_shared<Stub>(stub);
  return run([](std::shared_ptr<Stub> s, Request r) -> Task<Response> { co_return co_await s->fetch(std::move(r)); }(
      s, std::move(request)));
}

namespace {
const detail::NamespaceImpl* namespaceOf(const std::vector<std::unique_ptr<detail::NamespaceImpl>>& all,
                                         const ObjectId& id) {
  for (auto& n : all) {
    try {
      detail::makeNamespace(n.get()).idFromString(id.toString());
      return n.get();
    } catch (const Error&) {
      // Not this namespace's ID.
    }
  }
  throw Error(ErrorCode::kInvalidArgument, "the stub belongs to no exported class");
}

template <class T>
T waitFor(std::future<T>& f) {
  if (f.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    throw Error(ErrorCode::kInternal, "durable::testing: timed out waiting for the runtime");
  }
  return f.get();
}
}  // namespace

bool Env::runDurableObjectAlarm(const Stub& stub) {
  auto& rt = impl_->started();
  const detail::NamespaceImpl* ns = namespaceOf(impl_->namespaces, stub.id());
  // Whether an alarm was set, and what its handler (or loading it) threw.
  struct Outcome {
    bool ran = false;
    std::exception_ptr error;
  };
  auto done = std::make_shared<std::promise<Outcome>>();
  auto f = done->get_future();
  ObjectId id = stub.id();
  detail::Shard& shard = rt.shardOf(id);
  detail::postTo(shard, [&shard, ns, id, done] {
    auto& host = shard.host(*ns, id);
    spawn(host.currentAlarm(),
          std::function<void(Result<std::optional<std::int64_t>>)>([&host, done](Result<std::optional<std::int64_t>> r) {
            if (!r.ok() || !r.value()) {
              done->set_value(Outcome{false, r.error()});
              return;
            }
            AlarmInfo info;
            info.scheduledTime = *r.value();
            host.alarm(info, [done](std::exception_ptr error) { done->set_value(Outcome{true, std::move(error)}); });
          }));
  });
  Outcome outcome = waitFor(f);
  if (outcome.error) std::rethrow_exception(outcome.error);
  return outcome.ran;
}

std::vector<ObjectId> Env::listDurableObjectIds(const Namespace& ns) {
  auto& rt = impl_->started();
  // Namespaces differ by key, so the same name tells them apart.
  std::int64_t nsId = -1;
  for (auto& n : impl_->namespaces) {
    if (detail::makeNamespace(n.get()).idFromName("durable-testing-probe") == ns.idFromName("durable-testing-probe")) nsId = n->nsId;
  }
  if (nsId < 0) throw Error(ErrorCode::kInvalidArgument, "listDurableObjectIds: not a namespace of this Env");
  std::vector<ObjectId> out;
  for (unsigned i = 0; i < rt.shardCount(); ++i) {
    std::promise<std::vector<ObjectId::Raw>> p;
    auto f = p.get_future();
    detail::postTo(rt.shard(i), [&rt, &p, i, nsId] {
      // On the shard: an engine over the network answers later.
      auto list = [](detail::Shard& shard, std::int64_t nsId) -> Task<std::vector<ObjectId::Raw>> {
        std::vector<ObjectId::Raw> all;
        for (auto& part : shard.partitions) {
          auto pending = detail::answerOf(part->listObjects(nsId, std::nullopt, std::numeric_limits<std::size_t>::max()));
          std::vector<detail::StoredObject> objects = co_await std::move(pending);
          for (const auto& o : objects) all.push_back(o.id);
        }
        co_return all;
      };
      spawn(list(rt.shard(i), nsId), std::function<void(Result<std::vector<ObjectId::Raw>>)>(
                                         [&p](Result<std::vector<ObjectId::Raw>> r) {
                                           if (r.ok()) {
                                             p.set_value(std::move(r).value());
                                           } else {
                                             p.set_exception(r.error());
                                           }
                                         }));
    });
    for (auto& raw : waitFor(f)) out.emplace_back(raw, std::nullopt);
  }
  return out;
}

void Env::advanceClock(std::chrono::milliseconds by) {
  clock().advance(by);
  settleAlarms();
}

void Env::settleAlarms() {
  auto& rt = impl_->started();
  // An alarm on one shard may write to an object on another: done when a whole pass finds
  // every shard settled without waiting.
  for (bool waited = true; waited;) {
    waited = false;
    for (unsigned i = 0; i < rt.shardCount(); ++i) {
      auto p = std::make_shared<std::promise<bool>>();
      auto f = p->get_future();
      detail::Shard& shard = rt.shard(i);
      detail::postTo(shard, [&shard, p] {
        auto atOnce = std::make_shared<bool>(true);
        shard.whenSettled([p, atOnce] { p->set_value(*atOnce); });
        *atOnce = false;
      });
      if (!waitFor(f)) waited = true;
    }
  }
}

void Env::failStorageWrites(int count, bool diskFull) {
  if (!impl_->options.faultInjection) {
    throw Error(ErrorCode::kInvalidArgument, "failStorageWrites() needs EnvOptions::faultInjection");
  }
  impl_->started();
  detail::armStorageFaults(diskFull ? detail::StorageFault::kDiskFull : detail::StorageFault::kIoError, count);
}

void Env::failStorageSyncs(int count) {
  if (!impl_->options.faultInjection) {
    throw Error(ErrorCode::kInvalidArgument, "failStorageSyncs() needs EnvOptions::faultInjection");
  }
  impl_->started();
  detail::armStorageFaults(detail::StorageFault::kIoError, count, /*syncsOnly=*/true);
}

void Env::healStorage() { detail::disarmStorageFaults(); }

void Env::holdCommits() {
  if (impl_->options.storageEngine != "memory") {
    throw Error(ErrorCode::kInvalidArgument, "holdCommits() needs EnvOptions::storageEngine = \"memory\"");
  }
  impl_->started();
  for (auto& rows : impl_->memoryRows) {
    std::lock_guard lock(rows->mu);
    rows->holding = true;
  }
}

void Env::releaseCommits() {
  for (auto& rows : impl_->memoryRows) rows->release();
}

ManualClock& Env::clock() {
  if (!impl_->clock) throw Error(ErrorCode::kInvalidArgument, "this Env has no manual clock (EnvOptions::manualClock)");
  return *impl_->clock;
}

void Env::runInObject(const Stub& stub, InObject fn) {
  auto& rt = impl_->started();
  const detail::NamespaceImpl* ns = namespaceOf(impl_->namespaces, stub.id());
  std::promise<std::exception_ptr> done;
  auto f = done.get_future();
  auto holder = std::make_shared<InObject>(std::move(fn));
  rt.dispatchRun(*ns, stub.id(),
                 [holder](DurableObject& o, State& s) -> Task<void> { return (*holder)(o, s); },
                 [&done, holder](std::exception_ptr e) { done.set_value(e); });
  if (auto e = f.get()) std::rethrow_exception(e);
}

void Env::restart() {
  releaseCommits();
  if (impl_->runtime) impl_->runtime->stop();
  impl_->http.reset();
  impl_->setRuntime(nullptr);
  impl_->started();
}

std::uint16_t Env::serve(const Worker& worker) {
  auto& rt = impl_->started();
  if (impl_->http) throw Error(ErrorCode::kInvalidArgument, "serve(): this Env serves already");
  detail::HttpOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  impl_->http = std::make_unique<detail::HttpServer>(rt, worker, options);
  impl_->http->start();
  return impl_->http->port();
}

std::size_t Env::liveObjects() {
  auto& rt = impl_->started();
  std::size_t n = 0;
  for (unsigned i = 0; i < rt.shardCount(); ++i) {
    std::promise<std::size_t> p;
    auto f = p.get_future();
    detail::postTo(rt.shard(i), [&] { p.set_value(rt.shard(i).liveObjects()); });
    n += f.get();
  }
  return n;
}

std::uint64_t Env::commits() {
  auto& rt = impl_->started();
  std::uint64_t n = 0;
  for (unsigned i = 0; i < rt.shardCount(); ++i) {
    std::promise<std::uint64_t> p;
    auto f = p.get_future();
    detail::postTo(rt.shard(i), [&] {
      std::uint64_t c = 0;
      for (auto& part : rt.shard(i).partitions) c += part->commits();
      p.set_value(c);
    });
    n += f.get();
  }
  return n;
}

const std::filesystem::path& Env::dir() const { return impl_->dir; }

durable::Env& Env::env() { return impl_->started().env(); }

}  // namespace durable::testing
