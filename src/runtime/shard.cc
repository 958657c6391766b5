// The shard thread: its event loop and drain, the objects and sockets it owns, eviction.
#include "runtime/runtime.h"

#include <malloc.h>
#include <sys/resource.h>

#include "base/exec_context.h"
#include "base/log.h"

#include <durable/error.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

namespace durable::detail {

namespace {
thread_local Shard* t_shard = nullptr;
}  // namespace

// ---------------------------------------------------------------- Shard

std::size_t Shard::KeyHash::operator()(const Key& k) const noexcept {
  std::size_t h;
  std::memcpy(&h, k.id.data(), sizeof h);
  return h ^ static_cast<std::size_t>(k.ns);
}

Shard::Shard(Runtime& runtime, int index)
    : runtime_(runtime),
      index_(index),
      work_(ctx_.get_executor()),
      evictTimer_(ctx_),
      leaseTimer_(ctx_),
      metrics_(runtime.namespaces().size()) {}

Shard::~Shard() {
  join();
  objects_.clear();
  partitions.clear();
}

Shard* Shard::current() { return t_shard; }

HttpClient& Shard::httpClient() {
  if (!httpClient_) {
    const auto& s = settings();
    HttpClientLimits limits;
    limits.timeout = std::chrono::milliseconds(s.fetchTimeoutMs);
    limits.maxResponseBytes = s.maxFetchResponseBytes;
    httpClient_ = std::make_unique<HttpClient>(ctx_, limits);
  }
  return *httpClient_;
}

PeerChannels& Shard::peerChannels() {
  if (!peerChannels_) {
    const auto& s = settings();
    // A frame carries a whole request or response: their bodies' limit, and room for the head.
    peerChannels_ = std::make_unique<PeerChannels>(ctx_, runtime_.options().slots->secret,
                                                   std::chrono::milliseconds(s.requestTimeoutMs),
                                                   s.maxBodyBytes + 1024 * 1024);
  }
  return *peerChannels_;
}

void Shard::start() {
  thread_ = std::thread([this] {
    // Named for top -H, perf and gdb.
    pthread_setname_np(pthread_self(), ("shard-" + std::to_string(index_)).c_str());
    t_shard = this;
    setResumeScheduler([](std::coroutine_handle<> h, ExecContext ctx) {
      // A resumption inside an object is one of its events: through its input gate, which
      // holds it while another flow of the object has the gate locked.
      boost::asio::post(t_shard->ctx_, [h, ctx] { resumeNow(h, ctx); });
    });
    scheduleEviction();
    if (runtime_.options().slots) watchLease();
    timers_ = std::make_unique<ShardTimers>(ctx_);
    alarms_ = std::make_unique<AlarmScheduler>(*this);
    if (runtime_.options().pauseAlarms) alarms_->pause();
    for (auto& p : partitions) {
      p->onAlarmDurable = [this](std::int64_t ns, const ObjectId::Raw& id, std::optional<std::int64_t> time) {
        alarms_->onDurable(ns, id, time);
      };
      p->onQuiet = [this] { checkSettled(); };
    }
    if (runtime_.options().slots) {
      // Cluster mode: the node may already be serving, so the alarms are read without blocking
      // the shard (and read again each second until that works).
      loadClaimedAlarms();
    } else {
      try {
        alarms_->load();
      } catch (const std::exception& e) {
        // The shard still serves requests: better than a server that will not start. Alarms it
        // could not read stay unscheduled until the next start or the object's next setAlarm.
        log("shard ", index_, ": cannot load alarms: ", e.what());
      }
    }
    for (;;) {
      try {
        ctx_.run();
        break;
      } catch (const std::exception& e) {
        // A handler that threw past its own error handling is one event's failure, not the
        // shard's: its other objects keep being served.
        log("shard ", index_, ": unhandled exception: ", e.what());
      }
    }
    drain();
    objects_.clear();
    sockets_.clear();
    for (auto& p : partitions) {
      p->onAlarmDurable = nullptr;
      p->onQuiet = nullptr;
    }
    settledWaiters_.clear();
    alarms_.reset();
    httpClient_.reset();
    peerChannels_.reset();
    timers_.reset();
    t_shard = nullptr;
  });
}

void Shard::drain() {
  // Stopped with commits maybe in flight: run until every partition is quiet, then hibernate
  // the sockets and evict what can go (as an idle sweep would), then run what those commits
  // resumed until nothing is ready, so that no event is left suspended forever and what it
  // writes is committed too. While a commit is out, run_one() sleeps until the next handler is
  // ready: the engine posts its report here (engine.h), and work_ keeps run_one() from
  // returning on an empty queue. After the first quiet moment the wait is bounded (2 s), as a
  // handler that keeps re-posting itself must not hold the exit.
  ctx_.restart();
  std::optional<std::chrono::steady_clock::time_point> deadline;  // set once quiet
  while (!deadline || std::chrono::steady_clock::now() < *deadline) {
    std::size_t ran = 0;
    try {
      ran = ctx_.poll();
    } catch (const std::exception& e) {
      // As in start(): one event's failure does not end the drain of the others.
      log("shard ", index_, ": unhandled exception: ", e.what());
      continue;
    }
    bool quiet = !(alarms_ && alarms_->loading());
    for (auto& p : partitions) {
      p->flush();
      quiet = quiet && p->quiescent();
    }
    if (quiet && !deadline) {
      evictIdle(true);
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      continue;
    }
    if (quiet && ran == 0) break;
    if (ran > 0) continue;
    try {
      if (!deadline) {
        ctx_.run_one();
      } else {
        ctx_.run_one_until(*deadline);
      }
    } catch (const std::exception& e) {
      // As above.
      log("shard ", index_, ": unhandled exception: ", e.what());
    }
  }
}

bool Shard::settled() const {
  if (alarms_->running() > 0 || alarms_->due()) return false;
  return std::all_of(partitions.begin(), partitions.end(), [](const auto& p) { return p->quiescent(); });
}

void Shard::whenSettled(std::function<void()> settled) {
  settledWaiters_.push_back(std::move(settled));
  checkSettled();
}

void Shard::checkSettled() {
  if (settledWaiters_.empty()) return;
  if (alarms_->due()) alarms_->poke();
  if (!settled()) return;
  auto waiters = std::move(settledWaiters_);
  settledWaiters_.clear();
  for (auto& w : waiters) w();
}

void Shard::join() {
  if (thread_.joinable()) thread_.join();
}

void Shard::scheduleEviction() {
  const auto& settings = runtime_.options().settings;
  auto idle = std::chrono::milliseconds(std::min(settings.idleTimeoutMs, settings.hibernationTimeoutMs));
  auto period = std::clamp(idle / 2, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
  evictTimer_.expires_after(period);
  evictTimer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    evictIdle();
    scheduleEviction();
  });
}

ObjectSockets* Shard::liveSockets(const ObjectHost& host) {
  ObjectSockets* os = findSockets(host.ns(), host.id());
  return os && !os->sockets.empty() ? os : nullptr;
}

void Shard::touch(ObjectHost& host) {
  if (host.idleHook.is_linked()) host.idleHook.unlink();
  (liveSockets(host) ? idleWithSockets_ : idlePlain_).push_back(host);
}

void Shard::evictIdle(bool all) {
  auto now = std::chrono::steady_clock::now();
  const auto& settings = runtime_.options().settings;
  auto idle = all ? std::chrono::milliseconds(0) : std::chrono::milliseconds(settings.idleTimeoutMs);
  // An object whose only live work is hibernatable sockets leaves memory sooner.
  auto hibernate = all ? idle : std::min(idle, std::chrono::milliseconds(settings.hibernationTimeoutMs));
  std::size_t hibernated = 0;
  std::size_t evicted = 0;
  // Due but busy (an event queued, writes in flight): back in line after the sweep, behind
  // younger hosts, so a later sweep may take them up to one timeout late; they are not lost.
  std::vector<ObjectHost*> busy;
  for (IdleList* list : {&idleWithSockets_, &idlePlain_}) {
    const auto due = list == &idleWithSockets_ ? hibernate : idle;
    while (!list->empty() && now - list->front().lastActive() >= due) {
      ObjectHost& host = list->front();
      list->pop_front();
      ObjectSockets* sockets = liveSockets(host);
      if (!host.evictable(now, sockets ? hibernate : idle)) {
        busy.push_back(&host);
        continue;
      }
      if (sockets) {
        for (auto& ws : sockets->sockets) {
          if (auto conn = ws->conn.lock()) conn->hibernate();
        }
        hibernated += sockets->sockets.size();
      }
      const std::size_t nsIndex = host.ns().index;
      objects_.erase(Key{host.ns().nsId, host.id().raw()});
      metrics_.objectsLive[nsIndex].add(-1);
      metrics_.evictions[nsIndex].add();
      ++evicted;
    }
  }
  // Not yet due, or with sockets that closed since: its own list decides next time.
  for (ObjectHost* host : busy) touch(*host);
  // What evicted objects and hibernating sockets give up is scattered among what stays, in
  // pages malloc would hold forever; hand the free pages back to the system. (After 200,000
  // objects were evicted, RSS stayed at 233 MB; a malloc_trim(0) brought it to 116 MB.)
  if (hibernated >= 64 || evicted >= 256) ::malloc_trim(0);
}

std::size_t Shard::sqlObjectCap() {
  if (sqlObjectCap_ == 0) {
    rlimit limit{};
    const std::size_t descriptors =
        ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY ? limit.rlim_cur : 1'048'576;
    sqlObjectCap_ = std::max<std::size_t>(16, descriptors / 4 / 3 / std::max(1u, runtime_.shardCount()));
  }
  return sqlObjectCap_;
}

void Shard::sqlObjectOpened() {
  ++sqlObjectsLive_;
  // On a fresh stack: the caller may be in the middle of dispatching to another object.
  if (sqlObjectsLive_ > sqlObjectCap() && !sqlEvictionPosted_) {
    sqlEvictionPosted_ = true;
    boost::asio::post(ctx_, [this] {
      sqlEvictionPosted_ = false;
      evictSqlObjectsOverCap();
    });
  }
}

void Shard::evictSqlObjectsOverCap() {
  const auto now = std::chrono::steady_clock::now();
  for (IdleList* list : {&idlePlain_, &idleWithSockets_}) {
    for (auto it = list->begin(); it != list->end() && sqlObjectsLive_ > sqlObjectCap();) {
      ObjectHost& host = *it;
      ++it;
      if (!host.ns().sqliteBacked || !host.evictable(now, std::chrono::milliseconds(0))) continue;
      // Its sockets stay open and hibernate, as at the hibernation timeout.
      if (ObjectSockets* sockets = liveSockets(host)) {
        for (auto& ws : sockets->sockets) {
          if (auto conn = ws->conn.lock()) conn->hibernate();
        }
      }
      const std::size_t nsIndex = host.ns().index;
      objects_.erase(Key{host.ns().nsId, host.id().raw()});
      metrics_.objectsLive[nsIndex].add(-1);
      metrics_.evictions[nsIndex].add();
    }
  }
}

ObjectHost* Shard::findHost(const NamespaceImpl& ns, const ObjectId& id) {
  auto it = objects_.find(Key{ns.nsId, id.raw()});
  return it == objects_.end() ? nullptr : it->second.get();
}

const config::Settings& Shard::settings() const { return runtime_.options().settings; }

OutputGate* Shard::liveOutputGate(const NamespaceImpl& ns, const ObjectId& id) {
  ObjectHost* host = findHost(ns, id);
  return host ? &host->outputGate() : nullptr;
}

void Shard::runInObject(const NamespaceImpl& ns, const ObjectId& id, std::function<Task<void>(DurableObject&, State&)> fn,
                        std::function<void(std::exception_ptr)> done) {
  host(ns, id).run(std::move(fn), std::move(done));
}

ObjectSockets& Shard::socketsOf(const NamespaceImpl& ns, const ObjectId& id) { return sockets_[Key{ns.nsId, id.raw()}]; }

ObjectSockets* Shard::findSockets(const NamespaceImpl& ns, const ObjectId& id) {
  auto it = sockets_.find(Key{ns.nsId, id.raw()});
  return it == sockets_.end() ? nullptr : &it->second;
}

void Shard::dropSocket(const std::shared_ptr<WebSocketImpl>& ws) {
  auto it = sockets_.find(Key{ws->ns->nsId, ws->id.raw()});
  if (it == sockets_.end()) return;
  std::erase(it->second.sockets, ws);
  // The object's settings (auto-response) stay with it until the object has no sockets.
  if (it->second.sockets.empty() && !it->second.autoResponse && !it->second.eventTimeoutMs) sockets_.erase(it);
  notifyIfSocketsClosed();
}

void Shard::closeSockets(int code, const std::string& reason, std::function<void()> closed) {
  socketsClosed_ = std::move(closed);
  // A copy: a socket that fails at once drops itself from sockets_ while this loop runs.
  std::vector<std::shared_ptr<WebSocketImpl>> all;
  for (auto& [_, os] : sockets_) all.insert(all.end(), os.sockets.begin(), os.sockets.end());
  for (auto& ws : all) ws->close(code, reason);
  notifyIfSocketsClosed();
}

void Shard::closeMovedSockets(bool all, const std::string& reason) {
  std::vector<std::shared_ptr<WebSocketImpl>> moved;
  for (auto& [key, os] : sockets_) {
    if (all || runtime_.leaving(ObjectId(key.id, std::nullopt))) {
      moved.insert(moved.end(), os.sockets.begin(), os.sockets.end());
    }
  }
  for (auto& ws : moved) {
    if (ws->readyState < WebSocket::kClosing) ws->close(1012, reason);
  }
}

void Shard::notifyIfSocketsClosed() {
  if (socketsClosed_ && openSockets() == 0) std::exchange(socketsClosed_, nullptr)();
}

std::size_t Shard::openSockets() const {
  std::size_t n = 0;
  for (auto& [_, os] : sockets_) n += os.sockets.size();
  return n;
}

ObjectHost& Shard::host(const NamespaceImpl& ns, const ObjectId& id) {
  Key key{ns.nsId, id.raw()};
  auto it = objects_.find(key);
  if (it != objects_.end()) return *it->second;
  auto& partition = runtime_.partitionOf(id);
  auto [pos, _] = objects_.emplace(key, std::make_unique<ObjectHost>(*this, ns, id, partition));
  metrics_.objectsLive[ns.index].add(1);
  metrics_.activations[ns.index].add();
  touch(*pos->second);
  return *pos->second;
}

}  // namespace durable::detail
