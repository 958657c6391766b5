#include "runtime/runtime.h"

#include "net/websocket_relay.h"
#include "storage/sqlite_engine.h"

#include "base/exec_context.h"
#include "base/log.h"
#include "base/remote_error.h"
#include "base/request_tag.h"
#include "net/error_response.h"

#include <durable/clock.h>
#include <durable/error.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstdlib>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <unistd.h>
#include <optional>
#include <utility>

namespace durable::detail {

void postTo(Shard& shard, std::function<void()> fn) { boost::asio::post(shard.context(), std::move(fn)); }

// ---------------------------------------------------------------- Runtime

unsigned defaultShardCount() {
  const unsigned cores = std::thread::hardware_concurrency();
  return cores > 1 ? cores - 1 : 1;
}

Runtime::Runtime(RuntimeOptions options, const std::vector<NamespaceImpl*>& namespaces,
                 std::map<std::string, std::string, std::less<>> vars, const std::vector<std::int64_t>& purge,
                 int partitions)
    : options_(std::move(options)), partitionCount_(partitions), env_(&envImpl_) {
  if (const char* path = std::getenv("DURABLE_EVENT_LOG"); path && *path && !eventLog) {
    std::string file = path;
    if (auto at = file.find("%p"); at != std::string::npos) file.replace(at, 2, std::to_string(::getpid()));
    eventLog = std::fopen(file.c_str(), "a");
  }
  // Log lines written during an object's event name the object.
  setObjectOfHost([](void* host) -> LogObject {
    const auto* h = static_cast<const ObjectHost*>(host);
    return {h->ns().binding, h->idHex()};
  });
  unsigned shards = options_.settings.shards;
  if (shards == 0) shards = defaultShardCount();
  shards = std::min<unsigned>(shards, static_cast<unsigned>(partitionCount_));
  for (std::size_t i = 0; i < namespaces.size(); ++i) {
    namespaces[i]->index = i;
    namespaces_.push_back(namespaces[i]);
  }
  for (unsigned i = 0; i < shards; ++i) shards_.push_back(std::make_unique<Shard>(*this, static_cast<int>(i)));

  std::filesystem::create_directories(options_.persistDir / "partitions");
  for (int p = 0; p < partitionCount_; ++p) {
    Shard& s = *shards_[static_cast<unsigned>(p) % shards];
    std::unique_ptr<StorageEngine> engine;
    if (options_.engine) {
      engine = options_.engine(p, s.context());
    } else {
      auto file = options_.persistDir / "partitions" / ("p" + std::to_string(p) + ".sqlite");
      engine = std::make_unique<SqliteEngine>(p, file, options_.settings.durability, s.context(), options_.faultInjection);
    }
    auto part = std::make_unique<Partition>(p, std::move(engine), s.context());
    for (auto ns : purge) part->purgeNamespace(ns);
    s.partitions.push_back(std::move(part));
  }
  // After the partitions' purge is durable: the objects' own databases of a deleted class.
  for (auto ns : purge) {
    std::error_code ignored;
    std::filesystem::remove_all(options_.persistDir / "sql" / std::to_string(ns), ignored);
  }

  for (NamespaceImpl* ns : namespaces) {
    ns->runtime = this;
    byNsId_[ns->nsId] = ns;
    envImpl_.namespaces.emplace(ns->binding, makeNamespace(ns));
  }
  envImpl_.vars = std::move(vars);
}

Runtime::~Runtime() { stop(); }

const NamespaceImpl* Runtime::namespaceById(std::int64_t nsId) const {
  auto it = byNsId_.find(nsId);
  return it == byNsId_.end() ? nullptr : it->second;
}

Partition& Runtime::partitionOf(const ObjectId& id) {
  int p = partitionIndex(id);
  return *shards_[static_cast<unsigned>(p) % shards_.size()]->partitions[static_cast<unsigned>(p) / shards_.size()];
}

void Runtime::start() {
  if (started_) return;
  started_ = true;
  for (auto& s : shards_) s->start();
}

void Runtime::stop() {
  if (!started_) return;
  started_ = false;
  // Each shard leaves its loop and drains (Shard::drain): it exits once every commit landed.
  for (auto& sp : shards_) {
    Shard* s = sp.get();
    postTo(*s, [s] { s->context().stop(); });
  }
  for (auto& s : shards_) s->join();
}

void Runtime::closeWebSockets(int code, const std::string& reason, std::chrono::milliseconds wait) {
  if (!started_) return;
  // Shared with the shards: one whose peers never answer calls back after this has returned
  // (stop() cuts such peers off).
  struct Waiter {
    std::mutex mutex;
    std::condition_variable done;
    std::size_t open;  // shards with a socket still open
  };
  auto waiter = std::make_shared<Waiter>();
  waiter->open = shards_.size();
  for (auto& sp : shards_) {
    Shard* s = sp.get();
    postTo(*s, [s, code, reason, waiter] {
      s->closeSockets(code, reason, [waiter] {
        std::lock_guard lock(waiter->mutex);
        --waiter->open;
        waiter->done.notify_all();
      });
    });
  }
  // Relays (cluster mode) to objects other nodes hold: their clients get the same close.
  closeRelays(code, reason);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::unique_lock lock(waiter->mutex);
  waiter->done.wait_until(lock, deadline, [&] { return waiter->open == 0; });
  lock.unlock();
  while (openRelays() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

template <class Deliver>
void Runtime::deliverOn(Shard& owner, Shard* caller, Deliver deliver) {
  // On the owner's own thread the event starts at once: the caller is suspended already, and
  // the reply still comes back through the queue, on a fresh stack.
  if (caller == &owner) {
    deliver();
  } else {
    postTo(owner, std::move(deliver));
  }
}

void Runtime::dispatchFetch(const NamespaceImpl& ns, const ObjectId& id, Request request, const RequestTag& tag,
                            std::function<void(Result<Response>)> reply, bool waitedForHandOff) {
  if (!waitedForHandOff && options_.slots) {
    auto held = std::make_shared<std::pair<Request, std::function<void(Result<Response>)>>>(std::move(request),
                                                                                           std::move(reply));
    if (afterHandOff(id, [this, &ns, id, tag, held] {
          dispatchFetch(ns, id, std::move(held->first), tag, std::move(held->second), true);
        })) {
      return;
    }
    request = std::move(held->first);
    reply = std::move(held->second);
  }
  if (heldElsewhere(id)) {
    forwardFetch(ns, id, std::move(request), tag, std::move(reply));
    return;
  }
  Shard* caller = Shard::current();
  Shard& owner = shardOf(id);
  deliverOn(owner, caller,
            [&owner, &ns, id, caller, request = std::move(request), tag, reply = std::move(reply)]() mutable {
              owner.host(ns, id).fetch(std::move(request), tag, caller, std::move(reply));
            });
}

void Runtime::dispatchCall(const NamespaceImpl& ns, const ObjectId& id, bool (*isClass)(DurableObject&),
                           std::function<Task<void>(DurableObject&)> body, RpcRemote remote, const RequestTag& tag,
                           std::function<void(std::exception_ptr)> done, bool waitedForHandOff) {
  if (!waitedForHandOff && options_.slots) {
    auto held = std::make_shared<std::tuple<std::function<Task<void>(DurableObject&)>, RpcRemote,
                                            std::function<void(std::exception_ptr)>>>(std::move(body), std::move(remote),
                                                                                       std::move(done));
    if (afterHandOff(id, [this, &ns, id, isClass, tag, held] {
          dispatchCall(ns, id, isClass, std::move(std::get<0>(*held)), std::move(std::get<1>(*held)), tag,
                       std::move(std::get<2>(*held)), true);
        })) {
      return;
    }
    body = std::move(std::get<0>(*held));
    remote = std::move(std::get<1>(*held));
    done = std::move(std::get<2>(*held));
  }
  if (heldElsewhere(id)) {
    forwardCall(ns, id, isClass, std::move(body), std::move(remote), tag, std::move(done));
    return;
  }
  Shard* caller = Shard::current();
  Shard& owner = shardOf(id);
  deliverOn(owner, caller,
            [&owner, &ns, id, caller, isClass, body = std::move(body), tag, done = std::move(done)]() mutable {
              owner.host(ns, id).call(isClass, std::move(body), tag, caller, std::move(done));
            });
}

void Runtime::dispatchRun(const NamespaceImpl& ns, const ObjectId& id,
                          std::function<Task<void>(DurableObject&, State&)> fn,
                          std::function<void(std::exception_ptr)> done) {
  Shard& owner = shardOf(id);
  postTo(owner, [&owner, &ns, id, fn = std::move(fn), done = std::move(done)]() mutable {
    owner.host(ns, id).run(std::move(fn), std::move(done));
  });
}

}  // namespace durable::detail
