// The SQL log through a real Partition on both engines (storage/engine.h): entries an object
// emits with its batches are durable with them, read back in LSN order above a given LSN,
// pruned through an LSN, gone with a purged namespace, and (SQLite) still there after the
// partition's file is opened again.
#include "storage/memory_engine.h"
#include "storage/partition.h"
#include "storage/sqlite_engine.h"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace durable::detail;

constexpr std::int64_t kNs = 7;

// Drives the partition as an object's store does: one batch's part, then waits for its report.
class Writer final : public BatchWriter {
 public:
  std::vector<SqlLogEntry> next;
  std::optional<std::uint64_t> prune;
  std::uint64_t committedSeq = 0;
  bool wasReset = false;
  durable::ObjectId::Raw id{};

  void emit(std::uint64_t, ObjectBatch& out) override {
    out.ns = kNs;
    out.id = id;
    out.sqlLog = std::move(next);
    out.sqlLogPruneThrough = prune;
    next.clear();
    prune.reset();
  }
  void committed(std::uint64_t seq) override { committedSeq = seq; }
  void reset(std::exception_ptr) override { wasReset = true; }
};

class SqlLogEngineTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("durable-sqllog-" + std::to_string(::getpid()) + "-" + GetParam());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    rows_ = std::make_shared<MemoryEngine::Data>();
    open();
    writer_.id[0] = 1;
    writer_.id[31] = 9;
  }
  void TearDown() override {
    partition_.reset();
    fs::remove_all(dir_);
  }
  void open() {
    partition_.reset();
    std::unique_ptr<StorageEngine> engine;
    if (GetParam() == "sqlite") {
      engine = std::make_unique<SqliteEngine>(0, dir_ / "p0.sqlite", durable::config::Durability::kFull, ctx_);
    } else {
      engine = std::make_unique<MemoryEngine>(rows_, ctx_);
    }
    partition_ = std::make_unique<Partition>(0, std::move(engine), ctx_);
  }
  // One batch with the writer's part; returns once the partition reported it.
  void commit() {
    const std::uint64_t before = writer_.committedSeq;
    partition_->markDirty(&writer_);
    for (int i = 0; i < 5000 && writer_.committedSeq == before && !writer_.wasReset; ++i) {
      ctx_.restart();
      ctx_.run_for(std::chrono::milliseconds(2));
    }
    ASSERT_GT(writer_.committedSeq, before) << "the batch was not reported durable";
  }
  std::vector<SqlLogEntry> read(std::uint64_t after, std::uint64_t through = UINT64_MAX) {
    return answer(partition_->readSqlLog(kNs, writer_.id, after, through));
  }
  SqlLogPosition position(std::int64_t time) { return answer(partition_->sqlLogPosition(kNs, writer_.id, time)); }
  template <class T>
  T answer(Deferred<T> deferred) {
    if (auto* now = std::get_if<T>(&deferred)) return std::move(*now);
    auto future = std::get<durable::Future<T>>(std::move(deferred));
    std::optional<T> got;
    durable::spawn<void>([](durable::Future<T> f, std::optional<T>& out) -> durable::Task<void> {
      out = co_await std::move(f);
    }(std::move(future), got));
    for (int i = 0; i < 500 && !got; ++i) {
      ctx_.restart();
      ctx_.run_for(std::chrono::milliseconds(2));
    }
    return got.value_or(T{});
  }
  static std::vector<std::uint64_t> lsns(const std::vector<SqlLogEntry>& entries) {
    std::vector<std::uint64_t> out;
    for (const auto& e : entries) out.push_back(e.lsn);
    return out;
  }

  fs::path dir_;
  boost::asio::io_context ctx_;
  // The engine's reports come from its threads: run_for waits for them rather than returning.
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ = boost::asio::make_work_guard(ctx_);
  std::shared_ptr<MemoryEngine::Data> rows_;
  std::unique_ptr<Partition> partition_;
  Writer writer_;
};

TEST_P(SqlLogEngineTest, EntriesAreDurableReadInOrderPrunedAndPurged) {
  for (std::uint64_t lsn = 1; lsn <= 5; ++lsn) {
    writer_.next.push_back(SqlLogEntry{lsn, "records of " + std::to_string(lsn) + std::string("\0bytes", 6),
                                       static_cast<std::int64_t>(lsn) * 1000});
    commit();
  }
  auto all = read(0);
  ASSERT_EQ(lsns(all), (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(all[2].records, std::string("records of 3") + std::string("\0bytes", 6));
  EXPECT_EQ(lsns(read(3)), (std::vector<std::uint64_t>{4, 5}));
  EXPECT_TRUE(read(5).empty());
  EXPECT_EQ(lsns(read(1, 3)), (std::vector<std::uint64_t>{2, 3}));
  EXPECT_EQ(all[3].at, 4000);
  // Point-in-time: the last entry at or before a time, and the oldest kept.
  EXPECT_EQ(position(3500).lsn, 3u);
  EXPECT_EQ(position(3500).at, 3000);
  EXPECT_EQ(position(3000).lsn, 3u);
  EXPECT_EQ(position(999).lsn, 0u);
  EXPECT_EQ(position(999).oldestLsn, 1u);

  // An entry and a prune in one batch: the entry stays, what the file holds goes.
  writer_.next.push_back(SqlLogEntry{6, "six", 6000});
  writer_.next.push_back(SqlLogEntry{7, "seven", 7000});
  writer_.prune = 4;
  commit();
  EXPECT_EQ(lsns(read(0)), (std::vector<std::uint64_t>{5, 6, 7}));
  EXPECT_EQ(position(4500).lsn, 0u) << "entry 4 was pruned";
  EXPECT_EQ(position(4500).oldestLsn, 5u);

  if (GetParam() == "sqlite") {
    open();  // the partition's file again, as after a restart
    EXPECT_EQ(lsns(read(0)), (std::vector<std::uint64_t>{5, 6, 7}));
    EXPECT_EQ(read(0)[2].at, 7000);
  }
  partition_->purgeNamespace(kNs);
  EXPECT_TRUE(read(0).empty());
}

INSTANTIATE_TEST_SUITE_P(Engines, SqlLogEngineTest, ::testing::Values("sqlite", "memory"));

}  // namespace
