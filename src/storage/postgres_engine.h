// The cluster's engine: a partition's rows in PostgreSQL, which is also the authority on who
// owns which slot (docs/cluster.md). Every commit is fenced: its first statement checks, and
// locks FOR SHARE, the slot rows of every object it writes at the epochs this node holds
// (storage/slot_table.h), so a node that lost a slot (its lease lapsed, another node claimed
// it and bumped the epoch) has its whole batch refused by the server, nothing of it written.
// A claim's UPDATE of a slot row waits for the commits that hold it, so a commit either lands
// before the claim or fails. Temporal's shard row (`range_id`) is the model.
//
// I/O runs on the shard's event loop (storage/pg_connection.h): one connection for commits,
// one for objects' reads, one for the admin API's reads and the alarms of claimed slots (made
// on first use; their scans do not queue in front of an object's read), and a blocking one
// for the start-up's purge of deleted classes, closed after it. A batch is durable when the
// server answers its sync (synchronous_commit, as the server or the connection string sets
// it). One commit is in flight at a time; batches submitted meanwhile wait and go out together
// (accepting()), which is what gives group commit across the shard's objects.
//
// Schema: durable_kv, durable_alarms, durable_names, durable_sqllog keyed like the SQLite
// engine's tables (storage/sqlite_engine.h), each row with its object's slot; durable_slots,
// durable_nodes and durable_cluster for ownership (cluster/membership.h).
#pragma once

#include "storage/engine.h"
#include "storage/pg_connection.h"
#include "storage/postgres_schema.h"
#include "storage/slot_table.h"

#include <boost/asio/io_context.hpp>

#include <deque>
#include <set>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace durable::detail {


class PostgresEngine final : public StorageEngine {
 public:
  // Partition `index` of `partitions` on this node: it holds the objects whose slot % partitions
  // is index, and answers for those only.
  // `relaxed`: a commit is reported once PostgreSQL has it in memory (synchronous_commit =
  // off for this engine's commits; durability "relaxed"), not once its WAL is flushed.
  PostgresEngine(int index, int partitions, std::string conninfo, std::string node,
                 std::shared_ptr<SlotTable> slots, boost::asio::io_context& shard, bool relaxed = false);
  ~PostgresEngine() override;

  bool readsMayWait() const override { return true; }
  Deferred<std::optional<std::string>> read(std::int64_t ns, const ObjectId::Raw& id, std::string_view key) override;
  Deferred<Rows> scan(std::int64_t ns, const ObjectId::Raw& id, std::string_view lower, bool lowerInclusive,
                      const std::optional<std::string>& upper, bool reverse, std::size_t limit) override;
  Deferred<std::optional<std::int64_t>> readAlarm(std::int64_t ns, const ObjectId::Raw& id) override;
  Deferred<std::optional<int>> countAlarmRun(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) override;
  Deferred<std::vector<SqlLogEntry>> readSqlLog(std::int64_t ns, const ObjectId::Raw& id, std::uint64_t afterLsn,
                                                std::uint64_t throughLsn) override;
  Deferred<SqlLogPosition> sqlLogPosition(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) override;
  bool accepting() override;
  void submit(CommitBatch batch) override;
  void purgeNamespace(std::int64_t ns) override;
  Deferred<std::vector<StoredObject>> listObjects(std::int64_t ns, const std::optional<ObjectId::Raw>& after,
                                       std::size_t limit) override;
  Deferred<std::size_t> countObjects(std::int64_t ns) override;
  Deferred<StoredObject> describeObject(std::int64_t ns, const ObjectId::Raw& id) override;
  void loadAlarms(const std::function<void(std::int64_t, const ObjectId::Raw&, std::int64_t)>& fn) override;
  Deferred<std::vector<StoredAlarm>> readAlarms() override;
  void abandonInFlight() override;

 private:
  void startCommit();
  PgBlocking& admin();
  // The rows of a scan of this partition's alarms whose slots this node holds.
  std::vector<StoredAlarm> heldAlarms(const PGresult* r) const;

  const int index_, partitions_;
  const std::string conninfo_, node_;
  const std::shared_ptr<SlotTable> slots_;
  boost::asio::io_context& shard_;
  // Names the writer's server process among the others (pg_stat_activity's application_name).
  const std::string writerName_;
  PgConnection writer_, reader_, bulk_;
  // A commit's outcome, once it is settled on the server: the sink learns it, the next starts.
  void commitEnded(std::uint64_t seq, std::uint64_t epoch, const std::map<int, std::int64_t>& fence,
                   std::exception_ptr error, const std::string& sqlState, const std::string& detail,
                   bool outcomeUnknown);
  std::unique_ptr<PgBlocking> admin_;
  std::deque<CommitBatch> queued_;
  bool committing_ = false;
  bool readyWhenDone_ = false;  // accepting() said no: report engineReady() when this commit ends
  std::optional<std::uint64_t> failedEpoch_;
  // The server process of a commit cut off on this side that could not be ended yet
  // (PostgreSQL unreachable, or the process did not exit in time): until it is, every read
  // first ends it, and fails while it cannot, so that nothing reloads from rows its
  // transaction may still change.
  std::set<int> writersToEnd_;
  template <class T>
  Future<T> readAfterEnds(std::vector<PgQuery> queries, std::function<T(std::vector<PgResult>&)> decode);
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace durable::detail
