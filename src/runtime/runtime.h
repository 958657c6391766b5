// The runtime: shards that own objects, and the hosts that run them.
//
// Thread-per-core: each Shard is one thread with its own io_context, its own storage
// partitions and the objects whose IDs hash to those partitions. Nothing here is shared
// between shards except what is immutable after start (namespaces, Env, options), so the hot
// path takes no locks: a request for an object on another shard is posted there, and the
// reply is posted back.
//
// An ObjectHost is one live object: the author's instance, its State and ObjectStore, and the
// two gates (src/gates/). The input gate is a list of event flows holding critical sections
// (blockConcurrencyWhile, transaction, a wait on the object's own storage); while it is
// non-empty no other flow starts or resumes from outside (another object's reply). The output
// gate holds a reply, a WebSocket message or an alarm's end until the writes before it are
// committed.
#pragma once

#include "gates/input_gate.h"
#include "gates/output_gate.h"
#include "runtime/alarm_scheduler.h"
#include "runtime/timers.h"
#include "net/http_client.h"
#include "net/peer_channel.h"
#include "config/config.h"
#include "ids/id_codec.h"
#include "net/http_host.h"
#include "net/websocket.h"
#include "storage/object_store.h"
#include "storage/partition.h"
#include "storage/slot_table.h"

#include <durable/namespace.h>
#include <durable/object.h>
#include <durable/rpc.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace durable {
struct Env::Impl {
  std::map<std::string, Namespace, std::less<>> namespaces;
  std::map<std::string, std::string, std::less<>> vars;
};
}  // namespace durable

namespace durable::detail {

class Runtime;
class Shard;

// How long a blockConcurrencyWhile() callback may run before the object is reset (Cloudflare's
// limit).
inline constexpr std::int64_t kBlockConcurrencyWhileTimeoutMs = 30'000;

using ObjectFactory = std::function<std::unique_ptr<DurableObject>(State&, Env&)>;

struct NamespaceImpl {
  std::string binding;
  std::string className;
  std::int64_t nsId = 0;
  NamespaceKey key{};
  // Created by new_sqlite_classes: the storage limits of SQLite-backed objects (storage.h).
  bool sqliteBacked = false;
  ObjectFactory factory;
  // Set by the runtime that serves the namespace: which it is, and its position among them.
  Runtime* runtime = nullptr;
  std::size_t index = 0;
};

// Where a SQLite-backed object keeps its own database: a directory per namespace, fanned out by
// the ID's first byte so that no directory holds a million files.
std::filesystem::path sqlFileOf(const std::filesystem::path& persistDir, std::int64_t nsId, const std::string& hexId);

// DURABLE_EVENT_LOG=FILE (tests): every event's start and end, one line each, "B|E <monotonic
// ns> <object ID hex>", appended; "%p" in FILE becomes the process ID. The cluster tests check
// with it that no two nodes ever run events of one object at the same time.
extern std::FILE* eventLog;

class ObjectHost {
 public:
  ObjectHost(Shard& shard, const NamespaceImpl& ns, const ObjectId& id, Partition& partition);
  ~ObjectHost();
  ObjectHost(const ObjectHost&) = delete;
  ObjectHost& operator=(const ObjectHost&) = delete;

  // Delivers a request; once the response may leave (output gate), `reply` runs: posted to
  // `replyTo`'s queue when given (a caller on any shard, this one included: a fresh stack),
  // else inline on this shard. It gets the object's exception instead of a response when its
  // fetch threw (Error::remote()), or the runtime's (a reset: retryable(); too many calls
  // pending: overloaded()).
  // `tag`: the request the caller serves; the event's is requestTagFor() it (base/request_tag.h).
  void fetch(Request request, const RequestTag& tag, Shard* replyTo, std::function<void(Result<Response>)> reply);
  // An RPC call: `body` runs on the instance as an event, if `isClass` says the instance is
  // of the class the caller named. `done` runs like fetch()'s `reply`, with body's exception
  // (made remote) or the runtime's, or null.
  // `tag`: the request the caller serves (base/request_tag.h), for the event's log lines and calls.
  void call(bool (*isClass)(DurableObject&), std::function<Task<void>(DurableObject&)> body, const RequestTag& tag,
            Shard* replyTo, std::function<void(std::exception_ptr)> done);
  // Runs the object's alarm() as an event; `done` runs once its writes are durable, with what
  // the alarm threw (nullptr: it succeeded).
  void alarm(AlarmInfo info, std::function<void(std::exception_ptr)> done);
  // Deletes the alarm set for `scheduledTime` (it failed every retry), if it is still that one.
  void abandonAlarm(std::int64_t scheduledTime);
  // The alarm as the object's storage has it, loaded first if it must be.
  Task<std::optional<std::int64_t>> currentAlarm();
  // Runs fn as an event of this object (for durable/testing.h); `done` runs once its writes
  // are durable, with its error if it threw.
  void run(std::function<Task<void>(DurableObject&, State&)> fn, std::function<void(std::exception_ptr)> done);

  // Resumes a coroutine of flow `flow` now if the input gate admits it, else when it opens.
  void resumeGated(std::coroutine_handle<> h, const ExecContext& ctx);

  Future<void> blockConcurrencyWhile(std::function<Task<void>()> fn);
  // state().abort(): every event running now fails (its caller gets a retryable error) and the
  // instance is replaced once they have ended. Throws that error, to end the calling event.
  [[noreturn]] void abort(const std::string& reason);
  // Cluster mode: the node's lease may have lapsed, or the slot moved: what runs now fails and
  // the instance goes. An event that wrote nothing fails with `why`; one that wrote may have
  // had its writes land, and fails with `whileWriting`: its caller must not take the failure
  // as "not done" (resetFailure).
  void fenceOff(std::exception_ptr why, std::exception_ptr whileWriting) {
    resetInstance(std::move(why), false);
    resetWhileWriting_ = std::move(whileWriting);
    resetMark_ = outputGate_.mark();
  }
  bool runningEvents() const { return running_ > 0; }
  // No event runs or waits to, and no write of it is open or in flight.
  bool quiet() const;
  void waitUntil(Task<void> task);

  bool evictable(std::chrono::steady_clock::time_point now, std::chrono::milliseconds idle) const;
  std::chrono::steady_clock::time_point lastActive() const { return lastActive_; }

  // Links the host into one of its shard's idle lists (Shard::touch); unlinks itself when
  // the host is destroyed.
  boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> idleHook;
  const ObjectId& id() const { return id_; }
  // id().toString(), made once, for log lines.
  const std::string& idHex() const;
  OutputGate& outputGate() { return outputGate_; }
  Storage& storage() { return storage_; }
  // Commits the durable part of a SQLite-backed object's file, for a reader from outside.
  void commitSql() { store_.commitSql(); }
  const NamespaceImpl& ns() const { return ns_; }
  Shard& shard() { return shard_; }

  // Whether output may leave now: the lease is trusted and the slot held at the epoch the
  // object's state was loaded under (always, on a single node).
  bool mayRelease() const;

 private:
  void startFetch(Request request, const RequestTag& tag, Shard* replyTo,
                  std::function<void(Result<Response>)> reply);
  template <class R>
  static void sendReply(Shard* replyTo, std::function<void(R)> reply, R result);
  Task<Response> runFetch(Request request);
  // Counts a call in, or refuses it (false) when max_pending_calls are pending already.
  bool admitCall();
  Task<void> runAlarm(AlarmInfo info);
  // `rpc`: fn is an RPC method's call; what it throws is logged and reaches the caller as
  // remote (asRemote).
  Task<void> runInside(std::function<Task<void>(DurableObject&, State&)> fn, bool rpc = false);
  // Runs `start` now if the input gate admits a new event, else when it does.
  void enter(std::function<void()> start);
  void ensureInstance();
  // Brings a SQLite-backed object's database up to its log before the instance is made: true
  // when it is ready now; else the input gate stays locked until it is (or the open failed).
  bool openSql();
  // The error of an event that finds no instance because its constructor threw.
  std::exception_ptr constructFailure() const;
  // Cluster mode: why this node may not run an event of this object now (its lease may have
  // lapsed; it does not hold the object's slot; the object is still settling writes of an
  // older epoch of its slot), or null. State loaded under an older epoch is dropped first.
  std::exception_ptr fencedOut();
  // Cluster mode, as an answer is about to leave: why it must not (the lease may have lapsed or
  // the slot moved since the event began), or null. `startMark`: the output gate's mark when
  // the event began; writes since make the refusal non-retryable (they may have landed).
  std::exception_ptr outputFenced(std::uint64_t startMark) const;
  void beginEvent() {
    ++running_;
    if (eventLog) logEvent('B');
  }
  void endEvent();
  void logEvent(char what);
  void breakInstance();
  // The events running now fail with `why` when they end, and the instance is reset once they
  // have. `stuck`: their code may never end (blockConcurrencyWhile timed out): until it does,
  // every event waiting or arriving fails at once with `why` instead of waiting.
  void resetInstance(std::exception_ptr why, bool stuck);
  // What an event that started in generation `generation`, when the output gate's mark was
  // `startMark`, answers instead of its own result.
  std::exception_ptr resetFailure(std::uint64_t generation, std::uint64_t startMark) const {
    if (generation >= failBelow_) return nullptr;
    // The mark moved: writes were made since the event began (its own, or others' beside it).
    return resetWhileWriting_ && startMark != resetMark_ ? resetWhileWriting_ : resetError_;
  }

  Shard& shard_;
  const NamespaceImpl& ns_;
  const ObjectId id_;
  mutable std::string idHex_;
  // Before store_: the store's Holds release into it when the store goes.
  OutputGate outputGate_;
  ObjectStore store_;
  Storage storage_;
  State state_;
  std::unique_ptr<DurableObject> instance_;

  InputGate gate_;
  std::exception_ptr constructError_;
  bool sqlOpenFailed_ = false;
  int running_ = 0;
  std::size_t pendingCalls_ = 0;  // accepted by fetch() or call(), not yet answered
  // Events started in a generation below failBelow_ fail with resetError_ (resetInstance).
  std::uint64_t generation_ = 0;
  std::uint64_t failBelow_ = 0;
  std::exception_ptr resetError_;
  // fenceOff(): what an event that wrote answers instead, and the output gate's mark then.
  std::exception_ptr resetWhileWriting_;
  std::uint64_t resetMark_ = 0;
  bool stuck_ = false;
  std::chrono::steady_clock::time_point lastActive_;
};

// final: the shard's own calls to what SocketShard declares are not virtual.
class Shard final : public SocketShard {
 public:
  Shard(Runtime& runtime, int index);
  ~Shard();

  boost::asio::io_context& context() override { return ctx_; }
  const config::Settings& settings() const override;
  Runtime& runtime() { return runtime_; }

  void start();
  void join();
  // The live host for an ID, constructed on first use. Shard thread only.
  ObjectHost& host(const NamespaceImpl& ns, const ObjectId& id);
  // The live host, or nullptr when the object is not in memory.
  ObjectHost* findHost(const NamespaceImpl& ns, const ObjectId& id);

  // The WebSockets of an object, which outlive its instance (hibernation).
  ObjectSockets& socketsOf(const NamespaceImpl& ns, const ObjectId& id) override;
  ObjectSockets* findSockets(const NamespaceImpl& ns, const ObjectId& id);
  void dropSocket(const std::shared_ptr<WebSocketImpl>& ws) override;
  OutputGate* liveOutputGate(const NamespaceImpl& ns, const ObjectId& id) override;
  bool outputAllowed(const NamespaceImpl& ns, const ObjectId& id) override;
  void runInObject(const NamespaceImpl& ns, const ObjectId& id, std::function<Task<void>(DurableObject&, State&)> fn,
                   std::function<void(std::exception_ptr)> done) override;
  // Starts the closing handshake on every WebSocket of this shard (shutdown: 1001); `closed`
  // runs on this thread once none is left open (at once when none is).
  void closeSockets(int code, const std::string& reason, std::function<void()> closed);
  // Cluster mode: closes the sockets of this shard's objects whose slot this node no longer
  // holds (all of them when `all`), with 1012, so their clients reconnect to the new owner.
  void closeMovedSockets(bool all, const std::string& reason);
  // Cluster mode: whether an object `which` picks runs an event or has writes open or in flight.
  bool anyBusy(const std::function<bool(const ObjectHost&)>& which) const;
  // Cluster mode, after this node claimed slots: their alarms are scheduled (retried each second
  // until storage answers).
  void loadClaimedAlarms();
  std::size_t liveObjects() const { return objects_.size(); }
  // Written on this shard's thread, read from any (metrics.h).
  metrics::ShardMetrics& metrics() override { return metrics_; }
  // Removes hosts idle for longer than the idle timeout (the hibernation timeout for one
  // whose only live work is hibernatable sockets); `all`: every host that can go now.
  void evictIdle(bool all = false);
  // Records that `host` was just active: it moves to the back of its idle list.
  void touch(ObjectHost& host);
  // A SQLite-backed object keeps its own file open (three descriptors with its WAL and index)
  // while it is in memory. Past this shard's share of a quarter of the descriptor limit (the
  // rest is for connections: max_connections), the least recently active idle ones leave memory
  // at once rather than at their idle timeout, so that a burst of a million objects never runs
  // the process out of descriptors.
  void sqlObjectOpened();
  void sqlObjectClosed() { --sqlObjectsLive_; }
  // AlarmScheduler::runNow() for an object of this shard.
  AlarmScheduler::RunNow runAlarmNow(std::int64_t ns, const ObjectId::Raw& id) { return alarms_->runNow(ns, id); }
  AlarmScheduler& alarms() { return *alarms_; }
  int index() const { return index_; }

  std::vector<std::unique_ptr<Partition>> partitions;  // indexed by partition / shard count

  // Runs `settled` on this thread once no alarm is due or running and every partition has
  // committed what it was given: at once if that holds now (durable/testing.h's settleAlarms).
  void whenSettled(std::function<void()> settled);
  // Something that whenSettled() waits on ended: an alarm's run, a partition's commits.
  void checkSettled();

  // The shard whose thread is running, or nullptr.
  static Shard* current();
  // This shard's timers (durable::sleep); from its own thread, while it runs.
  ShardTimers& timers() { return *timers_; }
  // This shard's outbound HTTP (durable::fetch), made on first use; from its own thread.
  HttpClient& httpClient();
  // Cluster mode: the channels to the other nodes, for requests to objects they hold
  // (runtime/forward.cc); made on first use; from its own thread.
  PeerChannels& peerChannels();
  std::uint64_t nextFlow() { return ++flows_; }

 private:
  struct Key {
    std::int64_t ns;
    ObjectId::Raw id;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept;
  };
  void scheduleEviction();
  bool settled() const;
  // After stop(): runs what is left until every commit has landed.
  void drain();
  std::size_t openSockets() const;
  void notifyIfSocketsClosed();
  // The host's sockets if it has any open, else nullptr.
  ObjectSockets* liveSockets(const ObjectHost& host);

  // Live hosts in the order they were last active, oldest first: a sweep looks at the front
  // until it meets one not yet due, so it costs what it evicts, not what stays. (Walking every
  // live object each period took 16-22 % of the shard thread at a million objects on one
  // shard; these lists, 0-0.16 %: bench/results/2026-11-27.md, "Scale run".)
  // Hosts with sockets go to their own list because they are due sooner.
  using IdleList = boost::intrusive::list<
      ObjectHost,
      boost::intrusive::member_hook<ObjectHost, decltype(ObjectHost::idleHook), &ObjectHost::idleHook>,
      boost::intrusive::constant_time_size<false>>;

  Runtime& runtime_;
  const int index_;
  boost::asio::io_context ctx_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  boost::asio::steady_timer evictTimer_;
  // Cluster mode: self-fencing of what is already running (watchLease).
  boost::asio::steady_timer leaseTimer_;
  bool leaseLapsed_ = false;
  std::uint64_t slotDropsSeen_ = 0;
  void watchLease();
  std::unordered_map<Key, std::unique_ptr<ObjectHost>, KeyHash> objects_;
  std::unordered_map<Key, ObjectSockets, KeyHash> sockets_;
  IdleList idlePlain_, idleWithSockets_;
  std::uint64_t flows_ = 0;
  // Evicts idle SQLite-backed objects, oldest first, until at most sqlObjectCap() are live.
  void evictSqlObjectsOverCap();
  std::size_t sqlObjectCap();
  std::size_t sqlObjectsLive_ = 0;
  std::size_t sqlObjectCap_ = 0;  // 0: not computed yet
  bool sqlEvictionPosted_ = false;
  std::unique_ptr<AlarmScheduler> alarms_;
  std::unique_ptr<ShardTimers> timers_;
  std::unique_ptr<HttpClient> httpClient_;
  std::unique_ptr<PeerChannels> peerChannels_;
  std::function<void()> socketsClosed_;  // closeSockets()'s callback, until it has run
  std::vector<std::function<void()>> settledWaiters_;
  metrics::ShardMetrics metrics_;
  std::thread thread_;
};

struct RuntimeOptions {
  std::filesystem::path persistDir;
  config::Settings settings;
  bool faultInjection = false;  // tests only: partitions write through storage/fault_vfs.h
  bool pauseAlarms = false;     // AlarmScheduler::pause() on every shard
  // Empty: each partition is a SQLite file under persistDir. Else the engine of partition p,
  // on the shard context given (durable/testing.h's in-memory storage).
  std::function<std::unique_ptr<StorageEngine>(int p, boost::asio::io_context& shard)> engine;
  // Cluster mode (cluster/membership.h): the slots this node holds. Objects are placed in
  // partitions by slot.
  std::shared_ptr<const SlotTable> slots;
};

// The shard count when the config says 0: one per core but one. Each shard also keeps a commit
// and a sync thread per partition busy, and the kernel's network work needs a core too. On the
// 2-core machine, with the load generator on the same cores, two shards over one, side by side
// (bench/ab.sh, wrk -c32, durability full): GET 0.67, one hot object 0.94, 1,000 objects 1.02
// (bench/results/2026-11-27.md).
unsigned defaultShardCount();

// Whether a request asks for a WebSocket ("Upgrade: websocket", in any case): only then may an
// object's WebSocket answer it, and only then is it relayed to another node.
bool asksForWebSocket(const Request& request);

// final: calls through Runtime& to what HttpHost declares are not virtual.
class Runtime final : public HttpHost {
 public:
  // `namespaces` are owned by the caller and outlive the runtime; each gets runtime = this.
  Runtime(RuntimeOptions options, const std::vector<NamespaceImpl*>& namespaces,
          std::map<std::string, std::string, std::less<>> vars, const std::vector<std::int64_t>& purge,
          int partitions);
  ~Runtime();

  void start();
  // Cluster mode: this node claimed slots; each shard schedules their stored alarms. Any thread.
  void slotsClaimed();
  // Flushes every partition and waits for the commits, then stops the shard threads.
  void stop();
  // Sends a close frame with `code` on every open WebSocket and waits, at most `wait`, for the
  // closing handshakes to end. From outside the shard threads, before stop().
  void closeWebSockets(int code, const std::string& reason, std::chrono::milliseconds wait);

  Env& env() override { return env_; }
  const RuntimeOptions& options() const { return options_; }
  unsigned shardCount() const override { return static_cast<unsigned>(shards_.size()); }
  Shard& shard(unsigned i) override { return *shards_[i]; }
  boost::asio::io_context& shardContext(unsigned i) override { return shards_[i]->context(); }
  Shard& shardOf(const ObjectId& id) { return *shards_[partitionIndex(id) % shards_.size()]; }
  Partition& partitionOf(const ObjectId& id);
  // The bound class with this namespace id, or nullptr.
  const NamespaceImpl* namespaceById(std::int64_t nsId) const;
  // The served namespaces, by NamespaceImpl::index.
  const std::vector<const NamespaceImpl*>& namespaces() const { return namespaces_; }
  // In cluster mode a slot lies in one partition, so a slot's objects share one engine.
  int partitionIndex(const ObjectId& id) const {
    if (options_.slots) return options_.slots->slotOf(id.raw()) % partitionCount_;
    return static_cast<int>(id.hash() % static_cast<std::size_t>(partitionCount_));
  }

  // Cluster mode (runtime/forward.cc): the path other nodes send an object's requests to,
  // and what answers there (the front HTTP server routes it here before the Worker).
  static constexpr std::string_view kForwardPath = "/.durable/cluster/fetch";
  static constexpr std::string_view kCallPath = "/.durable/cluster/call";
  // Cluster mode: the object's slot is not this node's (runtime/cluster.cc).
  bool heldElsewhere(const ObjectId& id) const;
  // The object's slot is not held here, or is being handed to another node (draining).
  bool leaving(const ObjectId& id) const;
  // Hand-off (the membership thread): whether no object of these slots, on any shard, runs an
  // event or has writes open or in flight. Waits up to `wait` for the shards to answer.
  bool slotsQuiet(const std::vector<int>& slots, std::chrono::milliseconds wait);
  Task<Response> acceptForwarded(Request request);
  // A node's request for a channel (net/peer_channel.h): 101, and the connection is served.
  Response acceptChannel(const Request& request);
  // Sends a request to an object from any thread; `reply` runs on the caller's shard (or, when
  // called from outside any shard, on the object's shard).
  void dispatchFetch(const NamespaceImpl& ns, const ObjectId& id, Request request, const RequestTag& tag,
                     std::function<void(Result<Response>)> reply, bool waitedForHandOff = false);
  // An RPC call (ObjectHost::call), or `remote` sent to the node that holds the object; `done`
  // runs where dispatchFetch's `reply` does.
  void dispatchCall(const NamespaceImpl& ns, const ObjectId& id, bool (*isClass)(DurableObject&),
                    std::function<Task<void>(DurableObject&)> body, RpcRemote remote, const RequestTag& tag,
                    std::function<void(std::exception_ptr)> done, bool waitedForHandOff = false);
  // Cluster mode: when the object's slot is being handed to another node (draining), runs
  // `then` on this shard once the hand-off is over (or after the drain limit) and answers true;
  // false when there is nothing to wait for. A request then goes to the new owner instead of
  // failing while the slot moves.
  bool afterHandOff(const ObjectId& id, std::function<void()> then);
  // Cluster mode: done once `slot` is no longer draining, or after SlotTable::handOffLimit().
  Task<void> handedOff(int slot) const;
  // Runs fn inside the object as an event; `done` runs on the object's shard.
  void dispatchRun(const NamespaceImpl& ns, const ObjectId& id, std::function<Task<void>(DurableObject&, State&)> fn,
                   std::function<void(std::exception_ptr)> done);

 private:
  void forwardFetch(const NamespaceImpl& ns, const ObjectId& id, Request request, const RequestTag& tag,
                    std::function<void(Result<Response>)> reply);
  Task<Response> forwarded(Shard& via, const NamespaceImpl& ns, ObjectId id, Request request, RequestTag tag);
  void forwardCall(const NamespaceImpl& ns, const ObjectId& id, bool (*isClass)(DurableObject&),
                   std::function<Task<void>(DurableObject&)> body, RpcRemote remote, const RequestTag& tag,
                   std::function<void(std::exception_ptr)> done);
  Task<void> forwardedCall(Shard& via, const NamespaceImpl& ns, ObjectId id, bool (*isClass)(DurableObject&),
                           std::function<Task<void>(DurableObject&)> body, RpcRemote remote, RequestTag tag);
  // Sends make(owner's address, slot epoch) to the node holding the object's slot, reading the
  // routes again and trying once more on a 421; nullopt when this node holds the slot now.
  // An upgrade goes on a connection of its own (sendUpgrade), which a 101 carries back.
  Task<std::optional<Response>> toOwner(Shard& via, ObjectId id,
                                        std::function<Request(const std::string&, std::int64_t)> make,
                                        bool upgrade = false);
  Task<Response> acceptForwardedCall(const NamespaceImpl& ns, const ObjectId& id, const Request& request);
  // Runs `deliver` on `owner`: now when the caller is on that shard, else posted there.
  template <class Deliver>
  void deliverOn(Shard& owner, Shard* caller, Deliver deliver);

  RuntimeOptions options_;
  int partitionCount_;
  std::map<std::int64_t, const NamespaceImpl*> byNsId_;
  std::vector<const NamespaceImpl*> namespaces_;
  Env::Impl envImpl_;
  Env env_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<bool> started_{false};  // read by the cluster lease thread (slotsClaimed)
};

// Posts fn to the shard thread; the caller keeps everything fn references alive until it runs.
void postTo(Shard& shard, std::function<void()> fn);

// Resumes a coroutine that suspended in `ctx`, on this (its shard's) thread, from a completion
// handler: through its object's input gate when it runs in one, else at once with ctx restored.
void resumeNow(std::coroutine_handle<> h, ExecContext ctx);

}  // namespace durable::detail
