// One object's view of its storage: a cache over its rows in the partition, the writes not yet
// durable, and transaction overlays.
//
// The cache is authoritative for every key it holds. An entry is clean (equal to what the
// engine has), open (written since the last flush), or in flight (handed to the engine in
// batch `seq`). Dirty entries are never dropped, which is what lets a read of a key missing
// from the cache go to the engine: a key with an undurable write is always cached. After
// deleteAll the cache is complete (every key it lacks is absent), so no read goes to the
// engine again until the object is evicted.
#pragma once

#include "gates/input_gate.h"
#include "gates/output_gate.h"
#include "storage/object_sql.h"
#include "storage/partition.h"

#include <durable/storage.h>
#include <durable/value.h>

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace durable::detail {

// The smallest string greater than every string starting with `prefix`, or nullopt when there
// is none (the prefix is empty or all 0xFF bytes).
std::optional<std::string> prefixEnd(std::string_view prefix);

// Writes made inside storage.transaction(), applied to the store only if it succeeds.
struct TxnOverlay {
  std::map<std::string, std::optional<std::string>, std::less<>> writes;  // nullopt: deleted
  bool deleteAll = false;
  bool alarmChanged = false;
  std::optional<std::int64_t> alarm;
};

class ObjectStore final : private BatchWriter {
 public:
  using Accept = std::function<bool(std::string_view key, std::string_view encoded)>;
  class ListPlan {
   public:
    bool done = false;

   private:
    friend class ObjectStore;
    std::size_t pageSize() const;
    bool emit(std::string_view k, std::string_view v, const Accept& accept);
    // Merges a page of the engine's rows; true when the engine may have more to give.
    bool feed(const Rows& rows, std::size_t asked, const Accept& accept);
    void finish(const Accept& accept);

    struct Range {
      std::string lower;
      bool lowerInclusive = true;
      std::optional<std::string> upper;
    } range;
    bool reverse = false;
    bool skipEngine = false;
    std::size_t limit = SIZE_MAX;
    std::size_t taken = 0;
    std::optional<std::string> prefix;
    std::vector<std::pair<std::string, std::optional<std::string>>> overrides;  // in list order
    std::size_t nextOverride = 0;
    std::optional<std::string> resumeAfter;  // the last row fetched
  };

  struct Limits {
    std::size_t maxValueBytes = kDefaultMaxValueBytes;
    bool keyCounts = false;  // the key's bytes count against maxValueBytes too (SQLite-backed)
  };
  // A SQLite-backed object's own database (storage/object_sql.h): its file (":memory:" over an
  // engine that keeps the whole log, for tests) and the author's limits.
  struct SqlConfig {
    std::filesystem::path file;
    ObjectSqlDb::Limits limits;
    ObjectSqlDb::History history;
  };
  // The gates are the object's: a transaction locks `inputGate`; each batch the store writes
  // into holds `outputGate` until it is durable. Both outlive the store.
  ObjectStore(Partition& partition, std::int64_t ns, const ObjectId& id, Limits limits, std::function<void()> onReset,
              InputGate& inputGate, OutputGate& outputGate, std::optional<SqlConfig> sql = std::nullopt);
  ~ObjectStore();
  ObjectStore(const ObjectStore&) = delete;
  ObjectStore& operator=(const ObjectStore&) = delete;

  // Encoded values (Value::encode()); nullopt when absent.
  std::optional<std::string> read(std::string_view key, const TxnOverlay* txn);
  // `decoded`: the same value, kept so that the next get() of it copies instead of parsing.
  void write(std::string_view key, std::optional<std::string> encoded, TxnOverlay* txn,
             std::shared_ptr<Value> decoded = {});
  // Whether put() may leave encoding to writeDecoded(): not inside a savepoint of the object's
  // SQL database, where keys go to the database at once.
  bool encodesLater() const { return !sqlSavepointOpen(); }
  // A JSON value put outside a transaction whose encoding is known to fit the limits (the
  // caller checked its text and a bound on its size): it is encoded only when something needs
  // the bytes, by the engine as it commits the batch (SQLite's does it on its commit thread,
  // off the shard), or here if the shard reads them first: of the puts one batch holds for a
  // key, only the last is ever encoded. Not for a key read since it was written (a ChatRoom's
  // history on every message): encoded at put(), its next read takes the tree (takeDecoded).
  void writeDecoded(std::string_view key, std::shared_ptr<Value> decoded);
  // Whether a value of `encodedBytes` (Value::encode()'s size) is within the limits for `key`.
  bool fits(std::string_view key, std::size_t encodedBytes) const;
  // The decoded value the cache keeps for `key` (JSON only), for the caller to own, or nullopt:
  // then read() and decode. A copy, or the cache's own tree when the key is read, changed and
  // put back (a ChatRoom's history on every message): the tree goes to the caller and the
  // cache keeps the encoded bytes, so a read that comes before the put parses them.
  std::optional<Value> takeDecoded(std::string_view key, const TxnOverlay* txn);
  // Keeps `value`, just decoded from what read() returned, with its cache entry.
  void rememberDecoded(std::string_view key, const TxnOverlay* txn, const Value& value);
  // Whether the next put() of `key` should be encoded at once, so that the get() after it can
  // take the tree instead of copying it (takeDecoded): the key was read since it was written,
  // and its taken trees have come back often enough.
  bool lendsAfterPut(std::string_view key) const;
  // Whether a get() took `key`'s tree and no put() has replaced it since: its bytes are then
  // this process's own encoding, which needs no check that it reads back as it was written.
  bool takenAndNotReturned(std::string_view key, const TxnOverlay* txn) const;
  // The size of the cached encoding of `key`'s value, or 0.
  std::size_t encodedSize(std::string_view key) const;
  void removeAll(TxnOverlay* txn);
  // Several writes outside a transaction, all or none (after removing every key when
  // `deleteAll`); write() for each, but atomic when they go to a SQL database.
  void writeAll(std::vector<std::pair<std::string, std::optional<std::string>>> writes, bool deleteAll = false);
  // list(): each entry goes to `accept`, in list order, and only those it takes (returns true
  // for) count against the limit: the caller may leave out an entry without making the page
  // shorter. planList() reads the options and the cache at once; list() runs the plan over
  // an engine that never waits, listLater() over any engine.
  class ListPlan;
  ListPlan planList(const ListOptions& options, const TxnOverlay* txn);
  void list(ListPlan& plan, const Accept& accept);
  Task<void> listLater(ListPlan plan, Accept accept);

  // Reads over an engine that may wait (storage/engine.h): what a call is about to read must be
  // loaded first, with the input gate held while it waits. Always false when the engine never
  // waits, so embedded storage pays one branch.
  bool readsMayWait() const { return readsMayWait_; }
  bool needsLoad(std::string_view key, const TxnOverlay* txn) const;
  bool needsAlarmLoad(const TxnOverlay* txn) const;
  bool alarmLoaded() const { return alarmLoaded_; }
  Task<void> load(std::vector<std::string> keys, bool alarm);
  std::optional<std::int64_t> alarm(const TxnOverlay* txn);
  void setAlarm(std::optional<std::int64_t> time, TxnOverlay* txn);
  void apply(TxnOverlay&& txn);

  // While alarm() runs, getAlarm() answers null unless the handler set a new alarm; when it
  // returns normally without doing so, the alarm is deleted.
  void beginAlarm(std::int64_t scheduledTime);
  void endAlarm(bool succeeded);

  // After a reset of the object (state().abort(), a blockConcurrencyWhile timeout), the flows
  // of the old instance may still run; from then on their writes throw `why` (what their
  // callers were told), so nothing they do after the reset lands.
  void retireFlowsBelow(std::uint64_t flow, std::exception_ptr why) {
    retiredFlowsBelow_ = flow;
    retiredWhy_ = std::move(why);
  }
  // Throws if the calling flow was retired; the runtime's own calls (flow 0) always pass.
  void checkWritable() const;

  // Checks a key and an encoded value against the limits; throws Error(kInvalidArgument).
  void checkKey(std::string_view key) const;
  void checkValue(std::string_view key, const std::string& encoded) const;

  // Completes once every write so far is durable (through the output gate); fails if one
  // of their commits failed.
  Future<void> waitDurable();
  // No write is open or in flight: the object may be evicted.
  bool idle() const { return !dirty_ && inFlight_ == 0; }
  // Cluster mode: the slot epoch this object's state was loaded under; every batch it emits
  // is fenced by it (ObjectBatch::fenceEpoch), so writes from before a slot moved never land
  // under the epoch of a later claim.
  void setFenceEpoch(std::int64_t epoch) { fenceEpoch_ = epoch; }
  // Forgets what was loaded, as after a failed commit: the next read goes to the engine. Only
  // while idle().
  void forgetLoaded(std::exception_ptr why) { reset(std::move(why)); }
  std::int64_t fenceEpoch() const { return fenceEpoch_; }

  const ObjectId& id() const { return id_; }

  InputGate& inputGate() { return inputGate_; }

  // ---- The SQL database of a SQLite-backed object (docs/sql-design.md). ----
  bool sqliteBacked() const { return sqlConfig_.has_value(); }
  // Whether the database is open and holds the log's every entry: the object may run. When
  // not, openSql() before its first event, with the input gate held while it waits.
  bool sqlReady() const { return !sqlConfig_ || (sql_ && !sqlStale_ && !sql_->stale()); }
  Task<void> openSql();
  // For a statement of the author's: throws when the class is not SQLite-backed, the calling
  // flow was retired, or the database must first be brought up to the log again.
  ObjectSqlDb& sqlForStatement();
  // Commits the file's durable part now (storage/object_sql.h), for a reader from outside.
  void commitSql();
  // A statement that may have written ran: its changes leave with the next batch.
  void sqlWritten() { touch(); }
  // The database's size, the key-value writes not yet in it included.
  std::uint64_t sqlDatabaseSize();
  // deleteAll() of a SQLite-backed object drops the author's tables too.
  void wipeSql();
  // transactionSync(): KV writes go to an overlay (the enclosing transaction's, snapshotted,
  // when there is one) and SQL into a savepoint; endSyncTxn(false) undoes both.
  void beginSyncTxn(TxnOverlay* enclosing);
  void endSyncTxn(bool keep);
  // The overlay of the transactionSync() running now, if any.
  TxnOverlay* syncTxn() const { return syncTxn_; }
  // transaction() of a SQLite-backed object: its SQL statements are undone with its KV writes.
  void beginSqlSavepoint();
  void endSqlSavepoint(bool keep);

  // ---- Point-in-time recovery (durable/storage.h's bookmarks). ----
  // A bookmark names the state after an entry of the object's SQL log: "<at>-<lsn>", both 16
  // hex digits, so that bookmarks sort in time order.
  Task<std::string> currentBookmark();
  Task<std::string> bookmarkForTime(std::int64_t time);
  // Checks `bookmark` and arms the restore for the next instance; the current bookmark (the
  // way back).
  Task<std::string> restoreOnNextSession(std::string bookmark);
  // Before a new instance starts: the database must be opened, caught up or restored.
  bool sqlMustOpen() const { return !sqlReady() || (sql_ && sql_->pendingRestore()); }

 private:
  // BatchWriter, for the partition.
  void emit(std::uint64_t seq, ObjectBatch& out) override;
  void emitted() override;
  void committed(std::uint64_t seq) override;
  // The cache cannot be trusted (a commit failed): forget everything, break the output gate
  // with `why` and tell the owner.
  void reset(std::exception_ptr why) override;

  static constexpr std::uint64_t kOpen = ~std::uint64_t{0};
  // The input-gate flow of the store's own lock (quiesce_): no event's flow has this number.
  static constexpr InputGate::Flow kQuiesceFlow = ~InputGate::Flow{0};
  static constexpr InputGate::Flow kResyncFlow = ~InputGate::Flow{0} - 1;
  struct Entry {
    std::optional<std::string> value;
    // JSON values only: parsing one costs far more than copying it (a ChatRoom reads its
    // whole history on every message), and other types decode as cheaply as they copy.
    std::shared_ptr<Value> decoded;
    std::uint64_t seq = 0;  // 0 clean, kOpen open, else the in-flight batch
    bool encodePending = false;  // `value` is still to be encoded from `decoded` (writeDecoded)
    bool sqlPending = false;     // a SQLite-backed object's write, not yet in its _cf_KV (flushSqlKv)
    bool readSinceWrite = false;  // a get() has returned the value since it was written
    bool lendOnGet = false;       // it was written after a get(): the next get() takes `decoded`
    bool lent = false;            // a get() took `decoded`, and no put() has replaced it since
    std::uint8_t lendSkip = 0;     // writes after a get() still to leave `decoded` in place
    std::uint8_t lendPenalty = 0;  // lendSkip after the next taken tree that does not come back
  };
  // The entry's encoded value, encoding it first if writeDecoded() left that for later.
  static const std::optional<std::string>& encoded(Entry& e);
  void markOpen(const std::string& key, Entry& e);
  // write() and removeAll() on the cache only; `sqlPending`: the SQL database is still to get it.
  void cacheWrite(std::string_view key, std::optional<std::string> encoded, std::shared_ptr<Value> decoded,
                  bool sqlPending);
  void cacheRemoveAll();
  void touch();
  // The lending state of an entry being written (takeDecoded): `canLend` when the write keeps
  // its tree beside its bytes.
  static void noteWrite(Entry& e, bool canLend);
  // Keeps an entry's decoded value for the open batch to carry away (ObjectBatch::retired).
  void retire(Entry& e);

  template <class T>
  Task<T> awaitEngine(Future<T> answer);
  // The file no longer holds what it claims (a lost batch, a failed commit of its own): it
  // must replay the log before the next statement.
  void sqlLost();
  bool sqlSavepointOpen() const { return sql_ && sql_->inSavepoint(); }
  // A SQLite-backed object's key-value writes reach its database once per batch, not once per
  // put (a ChatRoom puts its whole history on every message): the open batch's writes go in
  // when it leaves (emit), or before anything that must see them there: a savepoint, a cut for
  // a bookmark, the size. Throws what the database threw, after abandonOpenBatch().
  void flushSqlKv();
  ObjectSqlDb& sqlWithKv() {
    ObjectSqlDb& db = sqlForStatement();
    flushSqlKv();
    return db;
  }
  // The key-value writes could not go into the database: the object's open batch fails whole,
  // as a failed commit does. Its writes (SQL and key-value) and its alarm change leave the cache
  // and the file, which catches up from the log; its turns' output fails with `why`; and the
  // instance that saw them starts again (at once, or in emitted() during a flush).
  void abandonOpenBatch(std::exception_ptr why);
  // transactionSync() and transaction(): the savepoint ends. A rollback of one that took
  // key-value writes at once leaves the cache, which held them, for the database to answer.
  void endSqlSavepointOf(bool keep);
  // Brings a stale file up to the log once nothing is in flight: at once over an engine that
  // answers now, else with the input gate held until it has (resync_).
  void resyncSql();
  // The database as it was after entry `target`: the newest snapshot at or before it, and the
  // log's entries after that one (a restore among them rebuilt the same way), in memory.
  Task<std::unique_ptr<ObjectSqlDb>> buildState(std::uint64_t target);
  // Replays the log's entries above the file's onto it (after a crash, a lost batch, a stale file).
  Task<void> catchUpSql();
  Deferred<Rows> fetchPage(const ListPlan& plan);

  Partition& partition_;
  const bool readsMayWait_;
  const bool alarmReadsMayWait_;
  const std::int64_t ns_;
  const ObjectId id_;
  const Limits limits_;
  std::function<void()> onReset_;
  InputGate& inputGate_;
  OutputGate& outputGate_;

  std::map<std::string, Entry, std::less<>> cache_;
  bool complete_ = false;
  std::vector<std::string> openKeys_;
  std::vector<std::shared_ptr<const Value>> retired_;  // decoded values replaced since the last batch
  bool openDeleteAll_ = false;
  bool dirty_ = false;
  bool nameRecorded_ = false;  // ObjectBatch::name went out with an earlier batch
  std::int64_t fenceEpoch_ = 0;
  int inFlight_ = 0;
  // Alarm: loaded lazily; alarmSeq_ like Entry::seq.
  bool alarmLoaded_ = false;
  std::optional<std::int64_t> alarm_;
  std::uint64_t alarmSeq_ = 0;
  // The keys of each batch in flight, oldest first (batches commit in order).
  std::deque<std::vector<std::string>> inFlightKeys_;
  // The output gate's Holds: one for the open batch, one per batch in flight (oldest first).
  OutputGate::Hold openHold_;
  std::deque<OutputGate::Hold> inFlightHolds_;
  std::uint64_t retiredFlowsBelow_ = 0;
  std::exception_ptr retiredWhy_;
  bool firing_ = false;
  bool firingChanged_ = false;
  std::int64_t firingTime_ = 0;

  // SQL (SQLite-backed classes only).
  std::optional<SqlConfig> sqlConfig_;
  std::unique_ptr<ObjectSqlDb> sql_;
  bool sqlStale_ = false;
  bool sqlKvPending_ = false;  // some open entry is sqlPending
  bool kvWrittenInSavepoint_ = false;  // a key-value write went into an open savepoint
  bool emitting_ = false;
  bool resetAfterEmit_ = false;
  // The SQL log entry each batch in flight carries (0: none), oldest first.
  std::deque<std::uint64_t> inFlightSqlLsn_;
  // Held while a hot object's file waits for a moment to commit (ObjectSqlDb::mustQuiesce).
  InputGate::Lock quiesce_;
  bool resyncing_ = false;
  struct SyncFrame {
    TxnOverlay* target = nullptr;
    std::optional<TxnOverlay> snapshot;  // what `target` held before, when not our own
  };
  std::vector<SyncFrame> syncFrames_;
  std::unique_ptr<TxnOverlay> syncOwn_;
  TxnOverlay* syncTxn_ = nullptr;
};

}  // namespace durable::detail
