// An object's host on its shard: its instance, its gates and the events that run in it
// (runtime/runtime.h, ObjectHost). The cluster's checks on an object's events:
// runtime/cluster.cc.
#include "runtime/runtime.h"

#include "storage/sqlite_engine.h"

#include "base/exec_context.h"
#include "base/log.h"
#include "base/remote_error.h"
#include "base/request_tag.h"
#include "net/error_response.h"

#include <durable/clock.h>
#include <durable/error.h>

#include <algorithm>
#include <optional>
#include <utility>

namespace durable::detail {

void resumeNow(std::coroutine_handle<> h, ExecContext ctx) {
  if (ctx.host) return static_cast<ObjectHost*>(ctx.host)->resumeGated(h, ctx);
  ContextScope scope(ctx);
  h.resume();
}

// ---------------------------------------------------------------- ObjectHost

std::optional<ObjectStore::SqlConfig> sqlConfigOf(const RuntimeOptions& options, const NamespaceImpl& ns,
                                                  const ObjectId& id) {
  if (!ns.sqliteBacked) return std::nullopt;
  const auto& s = options.settings;
  ObjectStore::SqlConfig config;
  config.limits = {s.sqlMaxDatabaseBytes, s.sqlMaxValueBytes, s.sqlMaxStatementBytes, s.sqlMaxBoundParameters,
                   s.sqlMaxColumns};
  config.history = {s.pitrSnapshotEvery, s.pitrRetentionMs};
  if (options.engine) {
    // An engine of the tests' keeps every log entry: the database is rebuilt from them.
    config.file = ":memory:";
  } else {
    const std::string hex = id.toString();
    config.file = sqlFileOf(options.persistDir, ns.nsId, hex);
  }
  return config;
}

std::filesystem::path sqlFileOf(const std::filesystem::path& persistDir, std::int64_t nsId, const std::string& hexId) {
  return persistDir / "sql" / std::to_string(nsId) / hexId.substr(0, 2) / (hexId + ".sqlite");
}

ObjectHost::ObjectHost(Shard& shard, const NamespaceImpl& ns, const ObjectId& id, Partition& partition)
    : shard_(shard),
      ns_(ns),
      id_(id),
      store_(partition, ns.nsId, id,
             ns.sqliteBacked ? ObjectStore::Limits{kMaxSqliteKeyValueBytes, true}
                             : ObjectStore::Limits{shard.runtime().options().settings.maxValueBytes, false},
             [this] { breakInstance(); }, gate_, outputGate_, sqlConfigOf(shard.runtime().options(), ns, id)),
      storage_(&store_),
      state_(this),
      gate_([this](std::function<void()> fn) { postTo(shard_, std::move(fn)); },
            [this] {
              // A new event constructs the instance; its constructor may lock the gate itself.
              if (!instance_) ensureInstance();
              return true;
            }),
      lastActive_(std::chrono::steady_clock::now()) {
  if (ns_.sqliteBacked) shard_.sqlObjectOpened();
}

ObjectHost::~ObjectHost() {
  // The instance goes first: its destructor may still touch State and Storage.
  instance_.reset();
  if (ns_.sqliteBacked) shard_.sqlObjectClosed();
}

void ObjectHost::resumeGated(std::coroutine_handle<> h, const ExecContext& ctx) {
  gate_.resume(ctx.flow, [h, ctx] {
    ContextScope scope(ctx);
    h.resume();
  });
}

const std::string& ObjectHost::idHex() const {
  if (idHex_.empty()) idHex_ = id_.toString();
  return idHex_;
}

void ObjectHost::ensureInstance() {
  if (instance_) return;
  if (store_.sqlMustOpen() && !openSql()) return;
  try {
    ContextScope scope({this, shard_.nextFlow()});
    instance_ = ns_.factory(state_, shard_.runtime().env());
    constructError_ = nullptr;
    return;
  } catch (...) {
    // Every event that arrives while there is no instance fails with this, until one is made.
    constructError_ = std::current_exception();
  }
  log("object ", ns_.className, " ", id_.toString(), ": constructor threw: ", describeException(constructError_));
}

bool ObjectHost::openSql() {
  if (sqlOpenFailed_) {
    // The event that waited for the failed open fails with its error; the next one tries again.
    sqlOpenFailed_ = false;
    return false;
  }
  const std::uint64_t flow = shard_.nextFlow();
  auto lock = std::make_shared<InputGate::Lock>(gate_.lock(flow));
  // Shared: over an engine that answers later, the completion runs after this call returned.
  auto finished = std::make_shared<bool>(false);
  ContextScope scope({this, flow});
  spawn(store_.openSql(), std::function<void(Result<void>)>([this, lock, finished](Result<void> r) {
          *finished = true;
          if (!r.ok()) {
            log("object ", ns_.className, " ", id_.toString(), ": its SQL database cannot be opened: ",
                describeException(r.error()));
            constructError_ = r.error();
            sqlOpenFailed_ = true;
          }
          // Released last: the gate may start the waiting event at once (it calls back here).
          lock->release();
        }));
  // Done at once (the engine answered now): the event goes on, or fails with the error.
  if (*finished && sqlOpenFailed_) sqlOpenFailed_ = false;
  return *finished && !store_.sqlMustOpen();
}

std::exception_ptr ObjectHost::constructFailure() const {
  return std::make_exception_ptr(Error(ErrorCode::kInternal,
                                       "Durable Object constructor failed: " + describeException(constructError_),
                                       {.remote = true}));
}

void ObjectHost::enter(std::function<void()> start) { gate_.enter(std::move(start)); }

void ObjectHost::endEvent() {
  --running_;
  if (eventLog) logEvent('E');
  lastActive_ = std::chrono::steady_clock::now();
  shard_.touch(*this);
  if (running_ == 0 && gate_.broken()) {
    instance_.reset();
    stuck_ = false;
    gate_.reset();
    outputGate_.repair();
  }
  gate_.wake();
}

void ObjectHost::breakInstance() {
  logWarn("object ", ns_.className, " ", id_.toString(), ": reset");
  gate_.breakGate();
  if (running_ == 0) {
    instance_.reset();
    stuck_ = false;
    gate_.reset();
    outputGate_.repair();
  }
}

void ObjectHost::resetInstance(std::exception_ptr why, bool stuck) {
  // The old instance's flows may go on running; what they write from now on throws.
  store_.retireFlowsBelow(shard_.nextFlow(), why);
  resetError_ = std::move(why);
  resetWhileWriting_ = nullptr;
  failBelow_ = ++generation_;
  stuck_ = stuck_ || stuck;
  breakInstance();
  if (stuck_) {
    // Each start sees stuck_ and answers resetError_ at once.
    for (auto& start : gate_.takeNewEvents()) start();
  }
}

void ObjectHost::abort(const std::string& reason) {
  log("object ", ns_.className, " ", id_.toString(), ": aborted: ", reason);
  auto why = std::make_exception_ptr(
      Error(ErrorCode::kUnavailable, "Durable Object was reset by state.abort(): " + reason, {.retryable = true}));
  resetInstance(why, false);
  std::rethrow_exception(why);
}

bool ObjectHost::admitCall() {
  if (pendingCalls_ >= shard_.settings().maxPendingCalls) return false;
  ++pendingCalls_;
  return true;
}

namespace {
// Cloudflare's words for the same refusal.
std::exception_ptr overloadedError() {
  return std::make_exception_ptr(Error(ErrorCode::kUnavailable, "Durable Object is overloaded. Too many requests queued.",
                                       {.overloaded = true}));
}
}  // namespace

void ObjectHost::fetch(Request request, const RequestTag& tag, Shard* replyTo,
                       std::function<void(Result<Response>)> reply) {
  if (stuck_) {
    sendReply<Result<Response>>(replyTo, std::move(reply), resetError_);
    return;
  }
  if (auto fenced = fencedOut()) {
    sendReply<Result<Response>>(replyTo, std::move(reply), fenced);
    return;
  }
  if (!admitCall()) {
    sendReply<Result<Response>>(replyTo, std::move(reply), overloadedError());
    return;
  }
  // Admitted at once, the event is not wrapped for the queue.
  if (gate_.admitsNewEvent()) {
    startFetch(std::move(request), tag, replyTo, std::move(reply));
    return;
  }
  gate_.enqueue([this, request = std::move(request), tag, replyTo, reply = std::move(reply)]() mutable {
    startFetch(std::move(request), tag, replyTo, std::move(reply));
  });
}

template <class R>
void ObjectHost::sendReply(Shard* replyTo, std::function<void(R)> reply, R result) {
  if (!replyTo) {
    reply(std::move(result));
    return;
  }
  // Straight to Asio, not through postTo(): one allocation fewer on every request.
  boost::asio::post(replyTo->context(), [reply = std::move(reply), result = std::move(result)]() mutable {
    reply(std::move(result));
  });
}

void ObjectHost::startFetch(Request request, const RequestTag& tag, Shard* replyTo,
                            std::function<void(Result<Response>)> reply) {
  if (stuck_ || !instance_) {
    --pendingCalls_;
    sendReply<Result<Response>>(replyTo, std::move(reply), stuck_ ? resetError_ : constructFailure());
    return;
  }
  beginEvent();
  ContextScope scope({this, shard_.nextFlow(), requestTagFor(request.headers(), tag)});
  spawn(runFetch(std::move(request)),
        std::function<void(Result<Response>)>(
            [this, generation = generation_, startMark = outputGate_.mark(), replyTo,
             reply = std::move(reply)](Result<Response> r) mutable {
              --pendingCalls_;
              if (auto reset = resetFailure(generation, startMark)) r = Result<Response>(reset);
              endEvent();
              sendReply(replyTo, std::move(reply), std::move(r));
            }));
}

void ObjectHost::call(bool (*isClass)(DurableObject&), std::function<Task<void>(DurableObject&)> body,
                      const RequestTag& tag, Shard* replyTo, std::function<void(std::exception_ptr)> done) {
  if (stuck_) {
    sendReply<std::exception_ptr>(replyTo, std::move(done), resetError_);
    return;
  }
  if (auto fenced = fencedOut()) {
    sendReply<std::exception_ptr>(replyTo, std::move(done), fenced);
    return;
  }
  if (!admitCall()) {
    sendReply<std::exception_ptr>(replyTo, std::move(done), overloadedError());
    return;
  }
  gate_.enter([this, isClass, body = std::move(body), tag, replyTo, done = std::move(done)]() mutable {
    std::exception_ptr refused;
    if (stuck_) {
      refused = resetError_;
    } else if (!instance_) {
      refused = constructFailure();
    } else if (!isClass(*instance_)) {
      refused = std::make_exception_ptr(Error(ErrorCode::kInvalidArgument, "RPC: the objects of namespace " + ns_.binding +
                                                                               " are of class " + ns_.className +
                                                                               ", which does not have the method called"));
    }
    if (refused) {
      --pendingCalls_;
      sendReply(replyTo, std::move(done), std::move(refused));
      return;
    }
    beginEvent();
    ContextScope scope({this, shard_.nextFlow(), tag});
    spawn(runInside([body = std::move(body)](DurableObject& o, State&) { return body(o); }, true),
          std::function<void(Result<void>)>([this, generation = generation_, startMark = outputGate_.mark(), replyTo,
                                             done = std::move(done)](Result<void> r) {
            --pendingCalls_;
            auto reset = resetFailure(generation, startMark);
            endEvent();
            sendReply(replyTo, std::move(done), reset ? reset : r.error());
          }));
  });
}

void ObjectHost::run(std::function<Task<void>(DurableObject&, State&)> fn, std::function<void(std::exception_ptr)> done) {
  if (stuck_) return done(resetError_);
  if (auto fenced = fencedOut()) return done(fenced);
  enter([this, fn = std::move(fn), done = std::move(done)]() mutable {
    if (stuck_ || !instance_) {
      done(stuck_ ? resetError_ : constructFailure());
      return;
    }
    beginEvent();
    ContextScope scope({this, shard_.nextFlow()});
    spawn(runInside(std::move(fn)),
          std::function<void(Result<void>)>([this, generation = generation_, startMark = outputGate_.mark(),
                                             done = std::move(done)](Result<void> r) {
            auto reset = resetFailure(generation, startMark);
            endEvent();
            done(reset ? reset : r.error());
          }));
  });
}

Task<void> ObjectHost::runInside(std::function<Task<void>(DurableObject&, State&)> fn, bool rpc) {
  const std::uint64_t startMark = outputGate_.mark();
  std::exception_ptr error;
  try {
    co_await fn(*instance_, state_);
  } catch (...) {
    // Thrown after the output gate: the writes it made before throwing are still awaited.
    error = std::current_exception();
  }
  if (error && rpc) log("object ", ns_.className, " ", id_.toString(), ": RPC method threw: ", describeException(error));
  // Named, not a temporary in the co_await: the waiter must stay where it was registered. A
  // failure of the writes is the caller's error (retryable), not the method's.
  auto gate = outputGate_.wait();
  co_await gate;
  if (auto fenced = outputFenced(startMark)) std::rethrow_exception(fenced);
  if (error) std::rethrow_exception(rpc ? asRemote(error) : error);
}

void ObjectHost::alarm(AlarmInfo info, std::function<void(std::exception_ptr)> done) {
  if (stuck_) return done(resetError_);
  if (auto fenced = fencedOut()) return done(fenced);
  enter([this, info, done = std::move(done)]() mutable {
    if (stuck_ || !instance_) {
      done(stuck_ ? resetError_ : constructFailure());
      return;
    }
    beginEvent();
    ContextScope scope({this, shard_.nextFlow()});
    store_.beginAlarm(info.scheduledTime);
    spawn(runAlarm(info),
          std::function<void(Result<void>)>([this, generation = generation_, startMark = outputGate_.mark(),
                                             done = std::move(done)](Result<void> r) {
            auto reset = resetFailure(generation, startMark);
            endEvent();
            done(reset ? reset : r.error());
          }));
  });
}

Task<void> ObjectHost::runAlarm(AlarmInfo info) {
  std::exception_ptr error;
  try {
    // endAlarm() compares the alarm with the one that fired: over an engine that answers
    // later, it is loaded first.
    if (store_.readsMayWait() && !store_.alarmLoaded()) {
      std::vector<std::string> none;
      co_await store_.load(std::move(none), true);
    }
    co_await instance_->alarm(info);
  } catch (...) {
    // Retried by the scheduler: the alarm's own writes are kept, its deletion is not.
    error = std::current_exception();
  }
  if (error) {
    log("object ", ns_.className, " ", id_.toString(), ": alarm threw (retry ", info.retryCount,
        "): ", describeException(error));
  }
  store_.endAlarm(!error);
  auto gate = outputGate_.wait();
  co_await gate;
  if (error) std::rethrow_exception(error);
}

void ObjectHost::abandonAlarm(std::int64_t scheduledTime) {
  // Not through the input gate: it runs no author code (so it needs no instance, and a
  // constructor that keeps failing is not run once more), and its compare-and-delete is one
  // turn after the load, so no event can come between the two. It counts as an event so that
  // the object is not evicted while the alarm loads.
  beginEvent();
  spawn(
      [](ObjectHost* self, std::int64_t scheduledTime) -> Task<void> {
        const std::optional<std::int64_t> current = co_await self->currentAlarm();
        if (current == scheduledTime) self->store_.setAlarm(std::nullopt, nullptr);
      }(this, scheduledTime),
      std::function<void(Result<void>)>([this](Result<void> r) {
        if (!r.ok()) {
          log("object ", ns_.className, " ", id_.toString(), ": abandoning its alarm failed: ",
              describeException(r.error()));
        }
        endEvent();
      }));
}

Task<std::optional<std::int64_t>> ObjectHost::currentAlarm() {
  if (store_.readsMayWait() && !store_.alarmLoaded()) {
    std::vector<std::string> none;
    co_await store_.load(std::move(none), true);
  }
  co_return store_.alarm(nullptr);
}

Task<Response> ObjectHost::runFetch(Request request) {
  const std::uint64_t startMark = outputGate_.mark();
  std::optional<Response> response;
  std::exception_ptr thrown;
  try {
    response.emplace(co_await instance_->fetch(std::move(request)));
  } catch (...) {
    // It reaches the caller's stub.fetch() as the exception (remote()), as on Cloudflare.
    thrown = std::current_exception();
  }
  if (thrown) log("object ", ns_.className, " ", id_.toString(), ": fetch threw: ", describeException(thrown));
  // A failure of the writes before the reply is the caller's error: it must not leave as if
  // they had landed.
  auto gate = outputGate_.wait();
  co_await gate;
  // Self-fencing (docs/cluster.md): no answer leaves once this node may have lost the object.
  if (auto fenced = outputFenced(startMark)) std::rethrow_exception(fenced);
  if (thrown) std::rethrow_exception(asRemote(thrown));
  co_return std::move(*response);
}

Future<void> ObjectHost::blockConcurrencyWhile(std::function<Task<void>()> fn) {
  const std::uint64_t flow = shard_.nextFlow();
  // Shared between the completion and the deadline, whichever comes first.
  struct Block {
    InputGate::Lock lock;
    Promise<void> promise;
    bool settled = false;
    ShardTimers::Id deadline = 0;
  };
  auto block = std::make_shared<Block>();
  block->lock = gate_.lock(flow);
  beginEvent();
  Future<void> future = block->promise.future();
  // Cloudflare resets an object whose blockConcurrencyWhile() callback runs past 30 seconds;
  // so do we. Its code cannot be stopped, so until it ends every event fails at once.
  block->deadline = shard_.timers().at(durable::now() + kBlockConcurrencyWhileTimeoutMs, [this, block] {
    if (block->settled) return;
    block->settled = true;
    auto why = std::make_exception_ptr(Error(ErrorCode::kUnavailable,
                                             "A call to blockConcurrencyWhile() in a Durable Object waited for too long. "
                                             "The call was canceled and the Durable Object was reset.",
                                             {.retryable = true}));
    log("object ", ns_.className, " ", id_.toString(), ": blockConcurrencyWhile() ran past ",
        kBlockConcurrencyWhileTimeoutMs / 1000, " s: the object is reset");
    block->lock.release();
    block->promise.setError(why);
    resetInstance(why, true);
  });
  auto holder = std::make_shared<std::function<Task<void>()>>(std::move(fn));
  ContextScope scope({this, flow, currentContext().request});
  spawn((*holder)(), std::function<void(Result<void>)>([this, block, holder](Result<void> r) mutable {
          shard_.timers().cancel(block->deadline);
          if (!block->settled) {
            block->settled = true;
            block->lock.release();
            if (!r.ok()) {
              log("object ", ns_.className, " ", id_.toString(),
                  ": blockConcurrencyWhile threw: ", describeException(r.error()));
              gate_.breakGate();
              block->promise.setError(r.error());
            } else {
              block->promise.setValue();
            }
          }
          endEvent();
        }));
  return future;
}

void ObjectHost::waitUntil(Task<void> task) {
  beginEvent();
  spawn(std::move(task), std::function<void(Result<void>)>([this](Result<void> r) {
          if (!r.ok()) {
            log("object ", ns_.className, " ", id_.toString(), ": waitUntil task failed: ", describeException(r.error()));
          }
          endEvent();
        }));
}

bool ObjectHost::quiet() const { return running_ == 0 && gate_.idle() && store_.idle(); }

bool ObjectHost::evictable(std::chrono::steady_clock::time_point now, std::chrono::milliseconds idle) const {
  return quiet() && now - lastActive_ >= idle;
}

}  // namespace durable::detail
