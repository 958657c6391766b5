// The SQL log through a real Partition on both engines (storage/engine.h): entries an object
// emits with its batches are durable with them, read back in LSN order above a given LSN,
// pruned through an LSN, gone with a purged namespace, and (SQLite) still there after the
// partition's file is opened again. "sqlite-window4" is the SQLite engine with a journal of 4
// rows, so that entries move to the history in runs all the time (sqlite_engine.h);
// "sqlite-window4-fold1" moves one entry per batch, so runs are moved in parts.
#include "storage/fault_vfs.h"
#include "storage/memory_engine.h"
#include "storage/partition.h"
#include "storage/sqlite_engine.h"

#include <gtest/gtest.h>

#include <sqlite3.h>

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

// Two objects' writers, and the LSN each wrote last.
struct TwoWriters {
  Writer a, b;
  std::uint64_t la = 0, lb = 0;
  TwoWriters() {
    a.id[0] = 0xa;
    b.id[0] = 0xb;
  }
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
    } else if (GetParam() == "sqlite-window4") {
      engine = std::make_unique<SqliteEngine>(0, dir_ / "p0.sqlite", durable::config::Durability::kFull, ctx_,
                                              /*faultInjection=*/true, /*journalWindow=*/4);
    } else if (GetParam() == "sqlite-window4-fold1") {
      // One entry moved per batch: objects' runs are moved in parts, the journal lags behind.
      engine = std::make_unique<SqliteEngine>(0, dir_ / "p0.sqlite", durable::config::Durability::kFull, ctx_,
                                              /*faultInjection=*/false, /*journalWindow=*/4, /*foldBudget=*/1);
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
  // A batch with a's next entry, and b's when `withB`.
  void twoWritersBatch(TwoWriters& w, bool withB) {
    std::vector<Writer*> dirty{&w.a};
    w.a.next.push_back({++w.la, recordsOf('a', w.la), static_cast<std::int64_t>(w.la) * 10});
    if (withB) {
      w.b.next.push_back({++w.lb, recordsOf('b', w.lb), static_cast<std::int64_t>(w.lb) * 10});
      dirty.push_back(&w.b);
    }
    commitAll(dirty);
  }
  // Several objects' parts in one batch; returns once each was reported (or reset).
  void commitAll(std::vector<Writer*> writers) {
    std::vector<std::uint64_t> before;
    for (Writer* w : writers) {
      before.push_back(w->committedSeq);
      partition_->markDirty(w);
    }
    auto done = [&] {
      for (std::size_t i = 0; i < writers.size(); ++i) {
        if (writers[i]->committedSeq == before[i] && !writers[i]->wasReset) return false;
      }
      return true;
    };
    for (int i = 0; i < 5000 && !done(); ++i) {
      ctx_.restart();
      ctx_.run_for(std::chrono::milliseconds(2));
    }
    ASSERT_TRUE(done()) << "the batch was not reported";
  }
  std::vector<SqlLogEntry> read(std::uint64_t after, std::uint64_t through = UINT64_MAX) {
    return answer(partition_->readSqlLog(kNs, writer_.id, after, through));
  }
  std::vector<SqlLogEntry> readOf(const Writer& w, std::uint64_t after = 0) {
    return answer(partition_->readSqlLog(kNs, w.id, after, UINT64_MAX));
  }
  SqlLogPosition position(std::int64_t time) { return answer(partition_->sqlLogPosition(kNs, writer_.id, time)); }
  SqlLogPosition positionOf(const Writer& w, std::int64_t time) {
    return answer(partition_->sqlLogPosition(kNs, w.id, time));
  }
  // A count straight from the partition's file.
  std::int64_t countIn(const char* sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2((dir_ / "p0.sqlite").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    std::int64_t n = -1;
    if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
  }
  static std::string recordsOf(char object, std::uint64_t lsn) {
    return std::string(1, object) + std::to_string(lsn) + std::string("\0x", 2);
  }
  // Every entry of `w`'s from `first` to `last`, with its records and time.
  void expectEntries(const Writer& w, char object, std::uint64_t first, std::uint64_t last) {
    const auto entries = readOf(w);
    ASSERT_EQ(entries.size(), last - first + 1) << object;
    for (std::uint64_t lsn = first; lsn <= last; ++lsn) {
      const auto& e = entries[lsn - first];
      ASSERT_EQ(e.lsn, lsn) << object;
      EXPECT_EQ(e.records, recordsOf(object, lsn)) << object;
      EXPECT_EQ(e.at, static_cast<std::int64_t>(lsn) * 10) << object;
    }
  }
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

TEST_P(SqlLogEngineTest, ManyObjectsEntriesStayWholeAcrossJournalHistoryPruneAndRestart) {
  Writer a, b, c;
  a.id[0] = 0xa;
  b.id[0] = 0xb;
  c.id[0] = 0xc;
  // a writes every batch, b every other, c every third: the journal interleaves them, runs of
  // each move to the history at different places.
  std::uint64_t la = 0, lb = 0, lc = 0;
  auto write = [&](int batches) {
    for (int i = 0; i < batches; ++i) {
      std::vector<Writer*> dirty{&a};
      a.next.push_back({++la, recordsOf('a', la), static_cast<std::int64_t>(la) * 10});
      if (la % 2 == 0) {
        b.next.push_back({++lb, recordsOf('b', lb), static_cast<std::int64_t>(lb) * 10});
        dirty.push_back(&b);
      }
      if (la % 3 == 0) {
        // Two entries in one batch, as an object whose turns were cut twice.
        c.next.push_back({++lc, recordsOf('c', lc), static_cast<std::int64_t>(lc) * 10});
        c.next.push_back({++lc, recordsOf('c', lc), static_cast<std::int64_t>(lc) * 10});
        dirty.push_back(&c);
      }
      commitAll(dirty);
    }
  };
  write(30);
  expectEntries(a, 'a', 1, la);
  expectEntries(b, 'b', 1, lb);
  expectEntries(c, 'c', 1, lc);
  if (GetParam() == "sqlite-window4") {
    EXPECT_GT(countIn("SELECT count(*) FROM sqlhistory"), 0) << "nothing was folded";
    EXPECT_GT(countIn("SELECT count(*) FROM sqlhistory WHERE last > lsn"), 0) << "no run of several entries";
    EXPECT_LE(countIn("SELECT count(*) FROM sqljournal"), 4 + 4) << "the journal outgrew its window";
  }
  if (GetParam() == "sqlite-window4-fold1") {
    EXPECT_GT(countIn("SELECT count(*) FROM sqlhistory WHERE lsn = last"), 0) << "no run moved in parts";
  }
  // The last entry at or before a time, and the oldest, wherever they are.
  EXPECT_EQ(positionOf(a, 125).lsn, 12u);
  EXPECT_EQ(positionOf(a, 125).at, 120);
  EXPECT_EQ(positionOf(a, 125).oldestLsn, 1u);
  EXPECT_EQ(positionOf(c, 1000).lsn, lc);

  // A prune inside a run of the history: from the next entry on, everything stays.
  a.prune = 17;
  commitAll({&a});
  expectEntries(a, 'a', 18, la);
  EXPECT_EQ(positionOf(a, 170).lsn, 0u) << "entry 17 was pruned";
  EXPECT_EQ(positionOf(a, 1000).oldestLsn, 18u);
  expectEntries(b, 'b', 1, lb);

  if (GetParam() != "memory") {
    open();  // as after a restart: the journal's rows are read again
    expectEntries(a, 'a', 18, la);
    expectEntries(b, 'b', 1, lb);
    expectEntries(c, 'c', 1, lc);
  }
  write(20);
  expectEntries(a, 'a', 18, la);
  expectEntries(b, 'b', 1, lb);
  expectEntries(c, 'c', 1, lc);
  EXPECT_EQ(positionOf(b, 1000).oldestLsn, 1u);
  EXPECT_EQ(answer(partition_->countObjects(kNs)), 3u);
  partition_->purgeNamespace(kNs);
  EXPECT_TRUE(readOf(a).empty());
  EXPECT_TRUE(readOf(c).empty());
  EXPECT_EQ(answer(partition_->countObjects(kNs)), 0u);
}

TEST_P(SqlLogEngineTest, AFailedBatchLeavesTheJournalAsItWas) {
  if (GetParam() != "sqlite-window4") GTEST_SKIP() << "faults are injected through the SQLite engine's VFS";
  Writer a, b;
  a.id[0] = 0xa;
  b.id[0] = 0xb;
  std::uint64_t l = 0;
  for (; l < 12; ++l) {
    a.next.push_back({l + 1, recordsOf('a', l + 1), static_cast<std::int64_t>(l + 1) * 10});
    b.next.push_back({l + 1, recordsOf('b', l + 1), static_cast<std::int64_t>(l + 1) * 10});
    commitAll({&a, &b});
  }
  // A batch (its entries, the runs it folds, the rows it deletes) fails as a whole, then the
  // same LSNs go again: four times in a row, so that some failed batch folded and truncated
  // (with a window of 4, every third batch here does).
  for (; l < 16; ++l) {
    a.next.push_back({l + 1, "lost", (static_cast<std::int64_t>(l) + 1) * 10});
    b.next.push_back({l + 1, "lost", (static_cast<std::int64_t>(l) + 1) * 10});
    armStorageFaults(StorageFault::kIoError);
    commitAll({&a, &b});
    disarmStorageFaults();
    ASSERT_TRUE(a.wasReset);
    ASSERT_TRUE(b.wasReset);
    a.wasReset = b.wasReset = false;
    expectEntries(a, 'a', 1, l);
    expectEntries(b, 'b', 1, l);
    a.next.push_back({l + 1, recordsOf('a', l + 1), static_cast<std::int64_t>(l + 1) * 10});
    b.next.push_back({l + 1, recordsOf('b', l + 1), static_cast<std::int64_t>(l + 1) * 10});
    commitAll({&a, &b});
    ASSERT_FALSE(a.wasReset);
  }
  for (; l < 20; ++l) {
    a.next.push_back({l + 1, recordsOf('a', l + 1), static_cast<std::int64_t>(l + 1) * 10});
    b.next.push_back({l + 1, recordsOf('b', l + 1), static_cast<std::int64_t>(l + 1) * 10});
    commitAll({&a, &b});
    ASSERT_FALSE(a.wasReset);
  }
  expectEntries(a, 'a', 1, 20);
  expectEntries(b, 'b', 1, 20);
  open();
  expectEntries(a, 'a', 1, 20);
  expectEntries(b, 'b', 1, 20);
}


TEST_P(SqlLogEngineTest, APruneAfterARestartKeepsEntriesThatWereFoldedBefore) {
  if (GetParam() == "memory") GTEST_SKIP() << "nothing to restart";
  TwoWriters w;
  auto batch = [&](bool withB) { twoWritersBatch(w, withB); };
  // With a window of 4: a's 1..4 is a run of the history while a3 and a4 are still in the
  // journal (b1, not folded, holds the deletion back). After the restart they must not be
  // folded into a second run, which the prune's rewrite of the first would replace.
  batch(false), batch(true), batch(false), batch(true);
  open();
  batch(false), batch(true);
  expectEntries(w.a, 'a', 1, 6);
  w.a.prune = 2;
  commitAll({&w.a});
  expectEntries(w.a, 'a', 3, 6);
  open();
  expectEntries(w.a, 'a', 3, 6);
  expectEntries(w.b, 'b', 1, w.lb);
}

TEST_P(SqlLogEngineTest, APruneAfterAFailedBatchKeepsEntriesThatWereFoldedBefore) {
  if (GetParam() != "sqlite-window4") GTEST_SKIP() << "faults are injected through the SQLite engine's VFS";
  TwoWriters w;
  auto batch = [&](bool withB) { twoWritersBatch(w, withB); };
  batch(false), batch(true), batch(false), batch(true);
  // Another object's batch fails: the journal is read again from the table.
  Writer c;
  c.id[0] = 0xc;
  c.next.push_back({1, "lost", 10});
  armStorageFaults(StorageFault::kIoError);
  commitAll({&c});
  disarmStorageFaults();
  ASSERT_TRUE(c.wasReset);
  batch(false), batch(true);
  expectEntries(w.a, 'a', 1, 6);
  w.a.prune = 2;
  commitAll({&w.a});
  expectEntries(w.a, 'a', 3, 6);
  EXPECT_TRUE(readOf(c).empty());
}

TEST_P(SqlLogEngineTest, RestartsBetweenBatchesKeepEveryPositionAndTheOldest) {
  if (GetParam() == "memory") GTEST_SKIP() << "nothing to restart";
  TwoWriters w;
  auto batch = [&](bool withB) { twoWritersBatch(w, withB); };
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 7; ++i) batch(i % 2 == 1);
    open();
  }
  for (std::uint64_t l = 1; l <= w.la; ++l) {
    EXPECT_EQ(positionOf(w.a, static_cast<std::int64_t>(l) * 10 + 5).lsn, l);
  }
  expectEntries(w.a, 'a', 1, w.la);
  for (std::uint64_t p = 1; p + 1 < w.la; p += 3) {
    w.a.prune = p;
    commitAll({&w.a});
    expectEntries(w.a, 'a', p + 1, w.la);
    EXPECT_EQ(positionOf(w.a, 1 << 30).oldestLsn, p + 1);
  }
  expectEntries(w.b, 'b', 1, w.lb);
}

TEST_P(SqlLogEngineTest, EntriesMoveOnBeforeTheJournalHoldsMoreThanItsBytes) {
  if (GetParam() != "sqlite") GTEST_SKIP() << "the default window";
  // 5,000 entries of 4,000 bytes (under kOwnRunBytes: they go through the journal): far under
  // the window's rows, over its 16 MiB.
  auto recordOf = [](std::uint64_t lsn) { return std::string(4000, static_cast<char>('a' + lsn % 26)); };
  std::uint64_t lsn = 0;
  for (int batch = 0; batch < 50; ++batch) {
    for (int i = 0; i < 100; ++i, ++lsn) writer_.next.push_back({lsn + 1, recordOf(lsn + 1), static_cast<std::int64_t>(lsn + 1)});
    commit();
  }
  EXPECT_LE(countIn("SELECT count(*) FROM sqljournal"), (16 << 20) / 4000 + 100);
  EXPECT_GT(countIn("SELECT count(*) FROM sqlhistory"), 0);
  const auto entries = read(0);
  ASSERT_EQ(entries.size(), 5000u);
  for (std::uint64_t l = 1; l <= 5000; ++l) {
    ASSERT_EQ(entries[l - 1].lsn, l);
    ASSERT_EQ(entries[l - 1].records, recordOf(l));
  }
}

TEST_P(SqlLogEngineTest, ALargeEntryIsARunOfItsOwnBetweenJournaledOnes) {
  if (GetParam() == "memory") GTEST_SKIP() << "a layout of the SQLite engine's";
  // 1 and 2 small (journaled), 3 of 1 MiB (a run of its own), 4 small: read in order, found by
  // time, pruned through 3, and the same after a restart.
  const std::string big(1 << 20, 'x');
  writer_.next.push_back({1, "one", 10});
  writer_.next.push_back({2, "two", 20});
  commit();
  const std::int64_t journaled = countIn("SELECT count(*) FROM sqljournal");
  writer_.next.push_back({3, big, 30});
  commit();
  if (GetParam() == "sqlite") EXPECT_EQ(countIn("SELECT count(*) FROM sqljournal"), journaled);
  EXPECT_EQ(countIn("SELECT count(*) FROM sqlhistory WHERE lsn = 3 AND last = 3"), 1);
  // Then small ones again: with a window of 4 they are folded, around the large one.
  for (std::uint64_t l = 4; l <= 12; ++l) {
    writer_.next.push_back({l, "small " + std::to_string(l), static_cast<std::int64_t>(l) * 10});
    commit();
  }
  auto check = [&](std::uint64_t first) {
    const auto entries = read(0);
    std::vector<std::uint64_t> expected;
    for (std::uint64_t l = first; l <= 12; ++l) expected.push_back(l);
    ASSERT_EQ(lsns(entries), expected);
    for (const auto& e : entries) {
      EXPECT_EQ(e.records, e.lsn == 3 ? big : e.lsn == 2 ? "two" : e.lsn == 1 ? "one" : "small " + std::to_string(e.lsn));
    }
    // From each place: a read that begins after the large entry finds what follows it.
    for (std::uint64_t after = first; after <= 12; ++after) {
      EXPECT_EQ(read(after).size(), 12 - after) << "after " << after;
    }
  };
  check(1);
  EXPECT_EQ(position(35).lsn, 3u);
  EXPECT_EQ(position(25).lsn, 2u);
  EXPECT_EQ(position(45).lsn, 4u);
  EXPECT_EQ(position(1000).lsn, 12u);
  if (GetParam() == "sqlite-window4") {
    EXPECT_EQ(countIn("SELECT count(*) FROM sqlhistory a JOIN sqlhistory b ON a.lsn < b.lsn AND b.lsn <= a.last"), 0)
        << "runs overlap";
  }
  open();
  writer_.committedSeq = 0;  // a new partition counts its batches from 1 again
  check(1);
  writer_.prune = 3;
  commit();
  check(4);
  EXPECT_EQ(position(1000).oldestLsn, 4u);
  EXPECT_EQ(position(1000).lsn, 12u);
}

TEST_P(SqlLogEngineTest, ObjectsWhoseEntriesAreOnlyInTheJournalOrOnlyInTheHistoryAreListed) {
  TwoWriters w;
  // a's entries reach the history (window 4), b's stay in the journal.
  for (std::uint64_t l = 1; l <= 8; ++l) {
    w.a.next.push_back({l, recordsOf('a', l), static_cast<std::int64_t>(l) * 10});
    commitAll({&w.a});
  }
  w.b.next.push_back({1, recordsOf('b', 1), 10});
  commitAll({&w.b});
  EXPECT_EQ(answer(partition_->countObjects(kNs)), 2u);
  const auto listed = answer(partition_->listObjects(kNs, std::nullopt, 10));
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].id, w.a.id);
  EXPECT_EQ(listed[1].id, w.b.id);
  const auto after = answer(partition_->listObjects(kNs, w.a.id, 10));
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].id, w.b.id);
}

TEST_P(SqlLogEngineTest, EntriesOfTheOneRowPerEntryLayoutAreReadPositionedAndPruned) {
  if (GetParam() == "memory") GTEST_SKIP() << "a layout of the SQLite engine's";
  partition_.reset();
  {
    // A partition as builds before 2026-12-07 wrote it: entries 1..3 in sqllog.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ / "p0.sqlite").c_str(), &db), SQLITE_OK);
    for (std::uint64_t lsn = 1; lsn <= 3; ++lsn) {
      sqlite3_stmt* s = nullptr;
      ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO sqllog(ns, obj, lsn, records, at) VALUES(?1, ?2, ?3, ?4, ?5)", -1,
                                   &s, nullptr),
                SQLITE_OK);
      sqlite3_bind_int64(s, 1, kNs);
      sqlite3_bind_blob(s, 2, writer_.id.data(), static_cast<int>(writer_.id.size()), SQLITE_TRANSIENT);
      sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(lsn));
      const std::string records = recordsOf('w', lsn);
      sqlite3_bind_blob(s, 4, records.data(), static_cast<int>(records.size()), SQLITE_TRANSIENT);
      sqlite3_bind_int64(s, 5, static_cast<sqlite3_int64>(lsn) * 10);
      ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
      sqlite3_finalize(s);
    }
    sqlite3_close(db);
  }
  open();
  for (std::uint64_t lsn = 4; lsn <= 12; ++lsn) {
    writer_.next.push_back({lsn, recordsOf('w', lsn), static_cast<std::int64_t>(lsn) * 10});
    commit();
  }
  expectEntries(writer_, 'w', 1, 12);
  EXPECT_EQ(position(25).lsn, 2u);
  EXPECT_EQ(position(95).lsn, 9u);
  EXPECT_EQ(position(1000).oldestLsn, 1u);
  writer_.prune = 5;
  commit();
  expectEntries(writer_, 'w', 6, 12);
  EXPECT_EQ(position(1000).oldestLsn, 6u);
  EXPECT_EQ(position(25).lsn, 0u);
}

INSTANTIATE_TEST_SUITE_P(Engines, SqlLogEngineTest,
                         ::testing::Values("sqlite", "sqlite-window4", "sqlite-window4-fold1", "memory"));

}  // namespace
