// An engine that keeps rows in memory: what the storage tests run on to show that nothing
// above the engine seam (storage/engine.h) depends on SQLite, and a model of a networked
// engine: every read is answered and every commit reported on a later turn of the shard's
// event loop, never inside the call.
//
// The rows live in a MemoryEngine::Data owned by whoever creates the engine (the test Env), so
// they survive a runtime restart, as a file would. Nothing survives the process.
#pragma once

#include "storage/engine.h"

#include <boost/asio/io_context.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace durable::detail {

class MemoryEngine final : public StorageEngine {
 public:
  // One partition's rows. Locked: an engine belongs to one shard thread, but a runtime
  // restarted over the same rows may put the partition on another.
  struct Data {
    std::mutex mu;
    // (ns, object) -> key -> encoded value.
    std::map<std::pair<std::int64_t, ObjectId::Raw>, std::map<std::string, std::string, std::less<>>> kv;
    std::map<std::pair<std::int64_t, ObjectId::Raw>, std::int64_t> alarms;
    std::map<std::pair<std::int64_t, ObjectId::Raw>, std::string> names;
    std::map<std::pair<std::int64_t, ObjectId::Raw>, std::map<std::uint64_t, SqlLogEntry>> sqlLog;
    // While set, commits are applied but not reported durable, so output behind them waits
    // (testing::Env::holdCommits). The reports wait here, in order, for release().
    bool holding = false;
    std::vector<std::function<void()>> heldReports;
    // Ends holding and sends the held reports, in order.
    void release();
  };

  MemoryEngine(std::shared_ptr<Data> rows, boost::asio::io_context& shard);

  bool readsMayWait() const override { return true; }
  Deferred<std::optional<std::string>> read(std::int64_t ns, const ObjectId::Raw& id, std::string_view key) override;
  Deferred<Rows> scan(std::int64_t ns, const ObjectId::Raw& id, std::string_view lower, bool lowerInclusive,
                      const std::optional<std::string>& upper, bool reverse, std::size_t limit) override;
  Deferred<std::optional<std::int64_t>> readAlarm(std::int64_t ns, const ObjectId::Raw& id) override;
  Deferred<std::vector<SqlLogEntry>> readSqlLog(std::int64_t ns, const ObjectId::Raw& id, std::uint64_t afterLsn,
                                                std::uint64_t throughLsn) override;
  Deferred<SqlLogPosition> sqlLogPosition(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) override;
  bool accepting() override { return true; }
  void submit(CommitBatch batch) override;
  void purgeNamespace(std::int64_t ns) override;
  Deferred<std::vector<StoredObject>> listObjects(std::int64_t ns, const std::optional<ObjectId::Raw>& after,
                                       std::size_t limit) override;
  Deferred<std::size_t> countObjects(std::int64_t ns) override;
  Deferred<StoredObject> describeObject(std::int64_t ns, const ObjectId::Raw& id) override;
  void loadAlarms(const std::function<void(std::int64_t, const ObjectId::Raw&, std::int64_t)>& fn) override;

 private:
  StoredObject describeLocked(std::int64_t ns, const ObjectId::Raw& id) const;

  std::shared_ptr<Data> rows_;
  boost::asio::io_context& shard_;
};

}  // namespace durable::detail
