#include "storage/postgres_engine.h"

#include <durable/error.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstring>
#include <map>
#include <set>

namespace durable::detail {

namespace {

// durable_fence is defined with the schema (storage/postgres_schema.cc).
const PgStatement kFence{"fence", "SELECT durable_fence($1::int[], $2::bigint[], $3::text)"};
const PgStatement kUpsert{"upsert",
                          "INSERT INTO durable_kv(ns, obj, key, value, slot) VALUES($1::int8, $2::bytea, $3::bytea, "
                          "$4::bytea, $5::int8) ON CONFLICT (ns, obj, key) DO UPDATE SET value = excluded.value"};
const PgStatement kDelete{"delete", "DELETE FROM durable_kv WHERE ns = $1::int8 AND obj = $2::bytea AND key = $3::bytea"};
const PgStatement kDeleteAll{"delete_all", "DELETE FROM durable_kv WHERE ns = $1::int8 AND obj = $2::bytea"};
const PgStatement kSetAlarm{"set_alarm",
                            "INSERT INTO durable_alarms(ns, obj, time, slot) VALUES($1::int8, $2::bytea, $3::int8, "
                            "$4::int8) ON CONFLICT (ns, obj) DO UPDATE SET time = excluded.time, runs = 0"};
const PgStatement kDeleteAlarm{"delete_alarm", "DELETE FROM durable_alarms WHERE ns = $1::int8 AND obj = $2::bytea"};
const PgStatement kName{"name",
                        "INSERT INTO durable_names(ns, obj, name, slot) VALUES($1::int8, $2::bytea, $3::bytea, "
                        "$4::int8) ON CONFLICT (ns, obj) DO NOTHING"};
const PgStatement kAppendLog{"append_log",
                             "INSERT INTO durable_sqllog(ns, obj, lsn, records, at, slot) VALUES($1::int8, $2::bytea, "
                             "$3::int8, $4::bytea, $5::int8, $6::int8) ON CONFLICT (ns, obj, lsn) DO UPDATE SET "
                             "records = excluded.records, at = excluded.at"};
const PgStatement kPruneLog{"prune_log",
                            "DELETE FROM durable_sqllog WHERE ns = $1::int8 AND obj = $2::bytea AND lsn <= $3::int8"};
const PgStatement kRead{"read", "SELECT value FROM durable_kv WHERE ns = $1::int8 AND obj = $2::bytea AND key = $3::bytea"};
// Ends the server process of a writer connection that failed on this side, waiting up to 2 s
// for it to exit: its transaction is then committed or rolled back, not still running. Answers
// how many such processes are left (0: ended, or gone already).
const PgStatement kEndWriter{"end_writer",
                             "SELECT count(*) FILTER (WHERE NOT ended)::int8 FROM (SELECT pg_terminate_backend(pid, 2000) "
                             "AS ended FROM pg_stat_activity WHERE pid = ANY($1::int[]) AND application_name = $2::text) t"};
const PgStatement kReadAlarm{"read_alarm", "SELECT time FROM durable_alarms WHERE ns = $1::int8 AND obj = $2::bytea"};
// Fenced like a commit: a node that no longer holds the slot at this epoch counts nothing, and
// the alarm is not run there (the slot's owner runs it).
const PgStatement kCountAlarmRun{"count_alarm_run",
                                 "UPDATE durable_alarms a SET runs = runs + 1 WHERE a.ns = $1::int8 AND a.obj = $2::bytea "
                                 "AND a.time = $3::int8 AND EXISTS (SELECT 1 FROM durable_slots s WHERE s.slot = a.slot "
                                 "AND s.owner = $4::text AND s.epoch = $5::int8 FOR SHARE) RETURNING (a.runs - 1)::int8"};
const PgStatement kReadLog{"read_log",
                           "SELECT lsn, records, at FROM durable_sqllog WHERE ns = $1::int8 AND obj = $2::bytea AND "
                           "lsn > $3::int8 AND lsn <= $4::int8 ORDER BY lsn"};
const PgStatement kLogAt{"log_at",
                         "SELECT lsn, at FROM durable_sqllog WHERE ns = $1::int8 AND obj = $2::bytea AND at <= $3::int8 "
                         "ORDER BY lsn DESC LIMIT 1"};
const PgStatement kLogOldest{"log_oldest",
                             "SELECT lsn FROM durable_sqllog WHERE ns = $1::int8 AND obj = $2::bytea ORDER BY lsn LIMIT 1"};

PgStatement scanStatement(bool lowerInclusive, bool hasUpper, bool reverse) {
  std::string sql = "SELECT key, value FROM durable_kv WHERE ns = $1::int8 AND obj = $2::bytea AND key ";
  sql += lowerInclusive ? ">= $3::bytea" : "> $3::bytea";
  if (hasUpper) sql += " AND key < $5::bytea";
  sql += reverse ? " ORDER BY key DESC" : " ORDER BY key ASC";
  sql += " LIMIT $4::int8";
  return {"scan" + std::to_string((lowerInclusive ? 1 : 0) | (hasUpper ? 2 : 0) | (reverse ? 4 : 0)), sql};
}

const PgStatement kScans[8] = {scanStatement(false, false, false), scanStatement(true, false, false),
                               scanStatement(false, true, false),  scanStatement(true, true, false),
                               scanStatement(false, false, true),  scanStatement(true, false, true),
                               scanStatement(false, true, true),   scanStatement(true, true, true)};

std::string_view rawBytes(const ObjectId::Raw& id) { return {reinterpret_cast<const char*>(id.data()), id.size()}; }

PgParams objectParams(std::int64_t ns, const ObjectId::Raw& id) {
  PgParams p;
  p.int8(ns).bytes(rawBytes(id));
  return p;
}

template <class T>
Future<T> answer(PgConnection& conn, std::vector<PgQuery> queries,
                 std::function<T(std::vector<PgResult>&)> decode) {
  Promise<T> promise;
  Future<T> future = promise.future();
  conn.exchange(std::move(queries), [promise, decode = std::move(decode)](PgOutcome o) mutable {
    if (o.error) {
      promise.setError(o.error);
      return;
    }
    try {
      promise.setValue(decode(o.results));
    } catch (...) {
      promise.setError(std::current_exception());
    }
  });
  return future;
}

std::vector<PgQuery> one(const PgStatement& s, PgParams params) {
  std::vector<PgQuery> q;
  q.push_back({&s, std::move(params)});
  return q;
}

bool rawId(std::string_view bytes, ObjectId::Raw& id) {
  if (bytes.size() != ObjectId::kBytes) return false;
  std::memcpy(id.data(), bytes.data(), id.size());
  return true;
}

// The slots a refused fence names ("3,17"); empty when it names none or is not understood.
std::set<int> lostSlots(const std::string& detail) {
  std::set<int> out;
  for (std::size_t at = 0; at < detail.size();) {
    const auto comma = std::min(detail.find(',', at), detail.size());
    int slot = 0;
    const auto [end, ec] = std::from_chars(detail.data() + at, detail.data() + comma, slot);
    if (ec != std::errc() || end != detail.data() + comma) return {};
    out.insert(slot);
    at = comma + 1;
  }
  return out;
}

// A commit never sits idle inside a transaction (its statements and sync go out together), so
// a session that does was cut off mid-send: it must not keep its slot rows locked against a
// claim for long.
std::string writerOptions(const SlotTable& slots, bool relaxed, const std::string& name) {
  std::string o = "-c idle_in_transaction_session_timeout=" + std::to_string(std::max<std::int64_t>(slots.lease.count() / 2, 100));
  o += " -c application_name=" + name;
  // Full durability is PostgreSQL's synchronous commit whatever the server, role or database
  // default to; relaxed answers before the WAL is flushed.
  o += relaxed ? " -c synchronous_commit=off" : " -c synchronous_commit=on";
  return o;
}
}  // namespace

PostgresEngine::PostgresEngine(int index, int partitions, std::string conninfo, std::string node,
                               std::shared_ptr<SlotTable> slots, boost::asio::io_context& shard, bool relaxed)
    : index_(index),
      partitions_(partitions),
      conninfo_(std::move(conninfo)),
      node_(std::move(node)),
      slots_(std::move(slots)),
      shard_(shard),
      writerName_("durable-" + node_ + "-writer-" + std::to_string(index)),
      writer_(conninfo_, shard, writerOptions(*slots_, relaxed, writerName_)),
      reader_(conninfo_, shard),
      bulk_(conninfo_, shard, {}, PgConnection::Connect::kOnFirstUse) {}

PostgresEngine::~PostgresEngine() { *alive_ = false; }

PgBlocking& PostgresEngine::admin() {
  if (!admin_ || !admin_->ok()) admin_ = std::make_unique<PgBlocking>(conninfo_);
  return *admin_;
}

Deferred<std::optional<std::string>> PostgresEngine::read(std::int64_t ns, const ObjectId::Raw& id,
                                                          std::string_view key) {
  auto p = objectParams(ns, id);
  p.bytes(key);
  return readAfterEnds<std::optional<std::string>>(one(kRead, std::move(p)), [](std::vector<PgResult>& r) {
    if (PQntuples(r[0].get()) == 0) return std::optional<std::string>();
    return std::optional<std::string>(std::string(pgBytes(r[0].get(), 0, 0)));
  });
}

Deferred<Rows> PostgresEngine::scan(std::int64_t ns, const ObjectId::Raw& id, std::string_view lower,
                                    bool lowerInclusive, const std::optional<std::string>& upper, bool reverse,
                                    std::size_t limit) {
  auto p = objectParams(ns, id);
  p.bytes(lower).int8(static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX)));
  if (upper) p.bytes(*upper);
  const auto& s = kScans[(lowerInclusive ? 1 : 0) | (upper ? 2 : 0) | (reverse ? 4 : 0)];
  return readAfterEnds<Rows>(one(s, std::move(p)), [](std::vector<PgResult>& r) {
    Rows rows;
    const int n = PQntuples(r[0].get());
    rows.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      rows.push_back({std::string(pgBytes(r[0].get(), i, 0)), std::string(pgBytes(r[0].get(), i, 1))});
    }
    return rows;
  });
}

Deferred<std::optional<std::int64_t>> PostgresEngine::readAlarm(std::int64_t ns, const ObjectId::Raw& id) {
  return readAfterEnds<std::optional<std::int64_t>>(one(kReadAlarm, objectParams(ns, id)),
                                             [](std::vector<PgResult>& r) {
                                               if (PQntuples(r[0].get()) == 0) return std::optional<std::int64_t>();
                                               return std::optional<std::int64_t>(pgInt8(r[0].get(), 0, 0));
                                             });
}

Deferred<std::optional<int>> PostgresEngine::countAlarmRun(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) {
  auto p = objectParams(ns, id);
  p.int8(time).bytes(node_).int8(slots_->epoch(slots_->slotOf(id)));
  return readAfterEnds<std::optional<int>>(one(kCountAlarmRun, std::move(p)), [](std::vector<PgResult>& r) {
    if (PQntuples(r[0].get()) == 0) return std::optional<int>();
    return std::optional<int>(static_cast<int>(pgInt8(r[0].get(), 0, 0)));
  });
}

Deferred<std::vector<SqlLogEntry>> PostgresEngine::readSqlLog(std::int64_t ns, const ObjectId::Raw& id,
                                                              std::uint64_t afterLsn, std::uint64_t throughLsn) {
  auto p = objectParams(ns, id);
  p.int8(static_cast<std::int64_t>(std::min<std::uint64_t>(afterLsn, INT64_MAX)))
      .int8(static_cast<std::int64_t>(std::min<std::uint64_t>(throughLsn, INT64_MAX)));
  return readAfterEnds<std::vector<SqlLogEntry>>(one(kReadLog, std::move(p)), [](std::vector<PgResult>& r) {
    std::vector<SqlLogEntry> out;
    const int n = PQntuples(r[0].get());
    for (int i = 0; i < n; ++i) {
      out.push_back({static_cast<std::uint64_t>(pgInt8(r[0].get(), i, 0)), std::string(pgBytes(r[0].get(), i, 1)),
                     pgInt8(r[0].get(), i, 2)});
    }
    return out;
  });
}

Deferred<SqlLogPosition> PostgresEngine::sqlLogPosition(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) {
  std::vector<PgQuery> q;
  auto at = objectParams(ns, id);
  at.int8(time);
  q.push_back({&kLogAt, std::move(at)});
  q.push_back({&kLogOldest, objectParams(ns, id)});
  return readAfterEnds<SqlLogPosition>(std::move(q), [](std::vector<PgResult>& r) {
    SqlLogPosition position;
    if (PQntuples(r[0].get()) > 0) {
      position.lsn = static_cast<std::uint64_t>(pgInt8(r[0].get(), 0, 0));
      position.at = pgInt8(r[0].get(), 0, 1);
    }
    if (PQntuples(r[1].get()) > 0) position.oldestLsn = static_cast<std::uint64_t>(pgInt8(r[1].get(), 0, 0));
    return position;
  });
}

bool PostgresEngine::accepting() {
  if (!committing_) return true;
  readyWhenDone_ = true;
  return false;
}

void PostgresEngine::submit(CommitBatch batch) {
  queued_.push_back(std::move(batch));
  if (!committing_) startCommit();
}

void PostgresEngine::startCommit() {
  // Batches of a failed epoch come first (epochs only grow) and are refused unwritten.
  std::optional<std::uint64_t> refusedThrough;
  while (!queued_.empty() && failedEpoch_ && queued_.front().epoch <= *failedEpoch_) {
    refusedThrough = queued_.front().seq;
    queued_.pop_front();
  }
  if (refusedThrough) {
    boost::asio::post(shard_, [this, alive = alive_, seq = *refusedThrough] {
      if (*alive) {
        sink_->engineFailed(seq, std::make_exception_ptr(Error(ErrorCode::kUnavailable, "an earlier commit failed")),
                            CommitFailure::kNotWritten);
      }
    });
  }
  if (queued_.empty()) return;

  std::vector<CommitBatch> batches(std::make_move_iterator(queued_.begin()), std::make_move_iterator(queued_.end()));
  queued_.clear();
  const std::uint64_t seq = batches.back().seq;
  const std::uint64_t epoch = batches.back().epoch;

  std::map<int, std::int64_t> fence;
  std::string unheld;
  std::vector<PgQuery> queries;
  queries.push_back({&kFence, {}});
  std::string scratch;
  for (const CommitBatch& batch : batches) {
    for (const ObjectBatch& ob : batch.objects) {
      const int slot = slots_->slotOf(ob.id);
      const std::int64_t held = ob.fenceEpoch ? ob.fenceEpoch : slots_->epoch(slot);
      if (held == 0 && unheld.empty()) unheld = std::to_string(slot);
      // Two objects of one slot loaded under different epochs: the older one's is sent, and
      // fails, since only the newest can still be held.
      auto [at, fresh] = fence.emplace(slot, held);
      if (!fresh) at->second = std::min(at->second, held);
      if (ob.deleteAll) queries.push_back({&kDeleteAll, objectParams(ob.ns, ob.id)});
      for (const WriteOp& w : ob.writes) {
        auto p = objectParams(ob.ns, ob.id);
        p.bytes(w.key);
        if (const std::string* bytes = w.bytes(scratch)) {
          p.bytes(*bytes).int8(slot);
          queries.push_back({&kUpsert, std::move(p)});
        } else {
          queries.push_back({&kDelete, std::move(p)});
        }
      }
      if (ob.alarmChanged) {
        auto p = objectParams(ob.ns, ob.id);
        if (ob.alarm) {
          p.int8(*ob.alarm).int8(slot);
          queries.push_back({&kSetAlarm, std::move(p)});
        } else {
          queries.push_back({&kDeleteAlarm, std::move(p)});
        }
      }
      if (ob.name) {
        auto p = objectParams(ob.ns, ob.id);
        p.bytes(*ob.name).int8(slot);
        queries.push_back({&kName, std::move(p)});
      }
      for (const SqlLogEntry& entry : ob.sqlLog) {
        auto p = objectParams(ob.ns, ob.id);
        p.int8(static_cast<std::int64_t>(entry.lsn)).bytes(entry.records).int8(entry.at).int8(slot);
        queries.push_back({&kAppendLog, std::move(p)});
      }
      if (ob.sqlLogPruneThrough) {
        auto p = objectParams(ob.ns, ob.id);
        p.int8(static_cast<std::int64_t>(*ob.sqlLogPruneThrough));
        queries.push_back({&kPruneLog, std::move(p)});
      }
    }
  }
  if (!unheld.empty()) {
    failedEpoch_ = epoch;
    boost::asio::post(shard_, [this, alive = alive_, seq, unheld] {
      if (!*alive) return;
      sink_->engineFailed(seq,
                          std::make_exception_ptr(Error(ErrorCode::kUnavailable,
                                                        "this node does not hold slot " + unheld + " (cluster mode)")),
                          CommitFailure::kNotWritten);
      if (std::exchange(readyWhenDone_, false)) sink_->engineReady();
    });
    return;
  }
  std::vector<int> fencedSlots;
  std::vector<std::int64_t> fencedEpochs;
  for (const auto& [slot, held] : fence) {
    fencedSlots.push_back(slot);
    fencedEpochs.push_back(held);
  }
  queries.front().params.text(pgArray(fencedSlots)).text(pgArray(fencedEpochs)).bytes(node_);

  committing_ = true;
  writer_.exchange(std::move(queries), [this, alive = alive_, seq, epoch, fence = std::move(fence),
                                        batches = std::make_shared<std::vector<CommitBatch>>(std::move(batches))](
                                           PgOutcome o) mutable {
    if (!*alive) return;
    // The batches (and the decoded values they retire) are released here, on the shard.
    batches->clear();
    const int pid = writer_.lastBackendPid();
    if (o.error && o.sqlState.empty() && o.sent && pid != 0) {
      // The connection failed with the commit's outcome unknown, and its transaction may still
      // be finishing on the server. The objects reload once this commit has failed: first the
      // transaction is ended, so that what they read includes it or never will.
      // If it cannot be ended now, the reads that follow end it first (readAfterEnds), with
      // any earlier one that could not be ended either.
      writersToEnd_.insert(pid);
      const std::vector<int> pids(writersToEnd_.begin(), writersToEnd_.end());
      PgParams p;
      p.text(pgArray(pids)).bytes(writerName_);
      std::vector<PgQuery> end;
      end.push_back({&kEndWriter, std::move(p)});
      reader_.exchange(std::move(end), [this, alive, seq, epoch, fence = std::move(fence), error = o.error, pids](PgOutcome e) {
        if (!*alive) return;
        if (!e.error && pgInt8(e.results[0].get(), 0, 0) == 0) {
          for (int ended : pids) writersToEnd_.erase(ended);
        }
        commitEnded(seq, epoch, fence, error, "", "", true);
      });
      return;
    }
    // An error the server reported rolled the transaction back; a connection lost after the
    // commit went out leaves it unknown whether it landed.
    commitEnded(seq, epoch, fence, o.error, o.sqlState, o.detail, o.sqlState.empty() && o.sent);
  });
}

template <class T>
Future<T> PostgresEngine::readAfterEnds(std::vector<PgQuery> queries, std::function<T(std::vector<PgResult>&)> decode) {
  if (writersToEnd_.empty()) return answer<T>(reader_, std::move(queries), std::move(decode));
  const std::vector<int> pids(writersToEnd_.begin(), writersToEnd_.end());
  PgParams p;
  p.text(pgArray(pids)).bytes(writerName_);
  queries.insert(queries.begin(), PgQuery{&kEndWriter, std::move(p)});
  return answer<T>(reader_, std::move(queries), [this, alive = alive_, pids, decode = std::move(decode)](std::vector<PgResult>& r) {
    if (pgInt8(r[0].get(), 0, 0) != 0) {
      throw Error(ErrorCode::kUnavailable,
                  "a commit cut off earlier is still running on PostgreSQL (its server process did not end in time); "
                  "the object loads once it has ended",
                  {.retryable = true});
    }
    if (*alive) {
      for (int ended : pids) writersToEnd_.erase(ended);
    }
    r.erase(r.begin());
    return decode(r);
  });
}

void PostgresEngine::commitEnded(std::uint64_t seq, std::uint64_t epoch, const std::map<int, std::int64_t>& fence,
                                 std::exception_ptr error, const std::string& sqlState, const std::string& detail,
                                 bool outcomeUnknown) {
  committing_ = false;
  if (error) {
    failedEpoch_ = epoch;
    std::exception_ptr why = error;
    if (sqlState == kFenceSqlState) {
      // The slots another node holds now (the fence names them) serve no more here: a reset
      // object must not reload and answer from rows the new owner is writing. The batch's
      // other slots stay held; their objects reload. Without the names, none stays held, and
      // those still ours are claimed back at the next round.
      const auto lost = lostSlots(detail);
      for (const auto& [slot, held] : fence) {
        if (lost.empty() || lost.count(slot)) slots_->dropIfAt(slot, held);
      }
      why = std::make_exception_ptr(
          Error(ErrorCode::kUnavailable, "this node no longer holds the object's slot; the write was not made"));
    }
    sink_->engineFailed(seq, why, outcomeUnknown ? CommitFailure::kOutcomeUnknown : CommitFailure::kNotWritten);
  } else {
    sink_->engineCommitted(seq);
  }
  if (std::exchange(readyWhenDone_, false)) sink_->engineReady();
  if (!queued_.empty() && !committing_) startCommit();
}

void PostgresEngine::abandonInFlight() {
  // Closing fails every exchange in flight (a commit: failed, its objects reset); the next
  // exchange connects again.
  if (writer_.inFlight()) writer_.close();
  if (reader_.inFlight()) reader_.close();
  if (bulk_.inFlight()) bulk_.close();
}

void PostgresEngine::purgeNamespace(std::int64_t ns) {
  auto& db = admin();
  for (const char* table : {"durable_kv", "durable_alarms", "durable_names", "durable_sqllog"}) {
    db.run(std::string("DELETE FROM ") + table + " WHERE ns = $1::int8", PgParams().int8(ns));
  }
  admin_.reset();  // start-up only: not a connection to keep
}

namespace {
// The objects of one namespace with anything stored, and their slots.
#define DURABLE_OBJECTS_OF                                                                                        \
  "(SELECT obj, slot FROM durable_kv WHERE ns = $1::int8 UNION SELECT obj, slot FROM durable_alarms WHERE ns = "  \
  "$1::int8 UNION SELECT obj, slot FROM durable_sqllog WHERE ns = $1::int8) AS o WHERE slot % $2::int8 = $3::int8"
// What the admin API shows of one object ($1: its namespace, `obj`: it), as four columns.
#define DURABLE_DESCRIBE(obj)                                                                                        \
  "(SELECT count(*) FROM durable_kv WHERE ns = $1::int8 AND obj = " obj "), (SELECT coalesce(sum(length(key) + "    \
  "length(value)), 0)::int8 FROM durable_kv WHERE ns = $1::int8 AND obj = " obj "), (SELECT time FROM "             \
  "durable_alarms WHERE ns = $1::int8 AND obj = " obj "), (SELECT name FROM durable_names WHERE ns = $1::int8 AND " \
  "obj = " obj ")"

const PgStatement kListObjects{"list_objects", "SELECT l.obj, " DURABLE_DESCRIBE("l.obj") " FROM (SELECT obj FROM " DURABLE_OBJECTS_OF
                                               " AND obj > $4::bytea ORDER BY obj LIMIT $5::int8) AS l ORDER BY l.obj"};
const PgStatement kCountObjects{"count_objects", "SELECT count(*) FROM " DURABLE_OBJECTS_OF};
const PgStatement kDescribeObject{"describe_object", "SELECT " DURABLE_DESCRIBE("$2::bytea")};
const PgStatement kAlarmsOfPartition{"alarms_of_partition",
                                     "SELECT ns, obj, time, slot::int8 FROM durable_alarms WHERE slot % $1::int8 = $2::int8"};
#undef DURABLE_OBJECTS_OF
#undef DURABLE_DESCRIBE

// One object as the four columns of DURABLE_DESCRIBE from `col` on describe it.
StoredObject described(const PGresult* r, int row, int col, const ObjectId::Raw& id) {
  StoredObject o;
  o.id = id;
  o.keys = static_cast<std::size_t>(pgInt8(r, row, col));
  o.bytes = static_cast<std::uint64_t>(pgInt8(r, row, col + 1));
  if (!pgNull(r, row, col + 2)) o.alarm = pgInt8(r, row, col + 2);
  if (!pgNull(r, row, col + 3)) o.name = std::string(pgBytes(r, row, col + 3));
  return o;
}
}  // namespace

Deferred<std::vector<StoredObject>> PostgresEngine::listObjects(std::int64_t ns, const std::optional<ObjectId::Raw>& after,
                                                                std::size_t limit) {
  auto p = PgParams()
               .int8(ns)
               .int8(partitions_)
               .int8(index_)
               .bytes(after ? rawBytes(*after) : std::string_view())
               .int8(static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX)));
  return answer<std::vector<StoredObject>>(bulk_, one(kListObjects, std::move(p)), [](std::vector<PgResult>& r) {
    std::vector<StoredObject> out;
    for (int i = 0; i < PQntuples(r[0].get()); ++i) {
      ObjectId::Raw id;
      if (rawId(pgBytes(r[0].get(), i, 0), id)) out.push_back(described(r[0].get(), i, 1, id));
    }
    return out;
  });
}

Deferred<std::size_t> PostgresEngine::countObjects(std::int64_t ns) {
  return answer<std::size_t>(bulk_, one(kCountObjects, PgParams().int8(ns).int8(partitions_).int8(index_)),
                             [](std::vector<PgResult>& r) { return static_cast<std::size_t>(pgInt8(r[0].get(), 0, 0)); });
}

Deferred<StoredObject> PostgresEngine::describeObject(std::int64_t ns, const ObjectId::Raw& id) {
  return answer<StoredObject>(bulk_, one(kDescribeObject, objectParams(ns, id)),
                              [id](std::vector<PgResult>& r) { return described(r[0].get(), 0, 0, id); });
}

void PostgresEngine::loadAlarms(const std::function<void(std::int64_t, const ObjectId::Raw&, std::int64_t)>& fn) {
  PgResult r;
  try {
    r = admin().run(kAlarmsOfPartition.sql, PgParams().int8(partitions_).int8(index_));
  } catch (const std::exception&) {
    // The admin connection may be one the server dropped, and it looks alive until used: once
    // more on a new one.
    admin_.reset();
    r = admin().run(kAlarmsOfPartition.sql, PgParams().int8(partitions_).int8(index_));
  }
  // Not a serving node's path (its alarms are read through bulk_): this connection is not kept.
  admin_.reset();
  for (const auto& a : heldAlarms(r.get())) fn(a.ns, a.id, a.time);
}

Deferred<std::vector<StoredAlarm>> PostgresEngine::readAlarms() {
  return answer<std::vector<StoredAlarm>>(bulk_, one(kAlarmsOfPartition, PgParams().int8(partitions_).int8(index_)),
                                          [this, alive = alive_](std::vector<PgResult>& r) {
                                            if (!*alive) return std::vector<StoredAlarm>();
                                            return heldAlarms(r[0].get());
                                          });
}

std::vector<StoredAlarm> PostgresEngine::heldAlarms(const PGresult* r) const {
  std::vector<StoredAlarm> out;
  for (int i = 0; i < PQntuples(r); ++i) {
    StoredAlarm a;
    if (!rawId(pgBytes(r, i, 1), a.id)) continue;
    // Only the slots this node holds: another node fires the rest.
    if (slots_->epoch(static_cast<int>(pgInt8(r, i, 3))) == 0) continue;
    a.ns = pgInt8(r, i, 0);
    a.time = pgInt8(r, i, 2);
    out.push_back(a);
  }
  return out;
}

}  // namespace durable::detail
