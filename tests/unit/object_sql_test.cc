// ObjectSqlDb over real files: the object's database is never ahead of its log. Entries leave
// with emit(); the file commits only once they are durable; a lost batch rolls back and the log
// replays; transactionSync's savepoint undoes its writes and records; and a writer killed with
// SIGKILL at random moments, ten times over, leaves a file that the log completes exactly.
#include "storage/object_sql.h"

#include <durable/error.h>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using durable::detail::ObjectSqlDb;
using Entry = ObjectSqlDb::Entry;

int exec(ObjectSqlDb& db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db.db(), sql.c_str(), -1, &s, nullptr) != SQLITE_OK) return sqlite3_errcode(db.db());
  const int rc = db.run(s, [] {});
  sqlite3_finalize(s);
  return rc;
}

long long value(ObjectSqlDb& db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db.db(), sql.c_str(), -1, &s, nullptr) != SQLITE_OK) return -1;
  long long v = -1;
  db.run(s, [&] { v = sqlite3_column_int64(s, 0); });
  sqlite3_finalize(s);
  return v;
}

// The file commits as soon as its entries are durable, as these tests expect.
const ObjectSqlDb::History kEveryEntry{.commitEvery = 1};

// The entry made since the last emit (a test never cuts more than one), or nullopt.
std::optional<Entry> emitOne(ObjectSqlDb& db) {
  auto entries = db.emit();
  EXPECT_LE(entries.size(), 1u);
  if (entries.empty()) return std::nullopt;
  return std::move(entries.front());
}

class ObjectSqlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("durable-object-sql-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path file() const { return dir_ / "objects" / "o.sqlite"; }
  fs::path dir_;
};

TEST_F(ObjectSqlTest, TheFileCommitsOnlyWhatTheLogHasMadeDurable) {
  std::vector<Entry> log;
  {
    ObjectSqlDb db(file(), ObjectSqlDb::Limits{}, kEveryEntry);
    EXPECT_EQ(db.appliedLsn(), 0u);
    ASSERT_EQ(exec(db, "CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER)"), SQLITE_DONE);
    ASSERT_EQ(exec(db, "INSERT INTO c VALUES (1, 0)"), SQLITE_DONE);
    auto first = emitOne(db);
    ASSERT_TRUE(first);
    EXPECT_EQ(first->lsn, 1u);
    log.push_back(*first);
    db.durable(1);
    EXPECT_EQ(db.committedLsn(), 1u);

    ASSERT_EQ(exec(db, "UPDATE c SET n = n + 1"), SQLITE_DONE);
    auto second = emitOne(db);
    ASSERT_TRUE(second);
    log.push_back(*second);
    ASSERT_EQ(exec(db, "UPDATE c SET n = n + 1"), SQLITE_DONE);
    auto third = emitOne(db);
    ASSERT_TRUE(third);
    log.push_back(*third);
    EXPECT_EQ(value(db, "SELECT n FROM c"), 2) << "the connection reads its own writes";
    db.durable(2);
    EXPECT_EQ(db.committedLsn(), 1u) << "entry 3 is in flight: nothing newer than the log may commit";
    ASSERT_EQ(exec(db, "UPDATE c SET n = n + 1"), SQLITE_DONE);
    db.durable(3);
    EXPECT_EQ(db.committedLsn(), 1u) << "a change not yet emitted holds the commit too";
    EXPECT_FALSE(emitOne(db) == std::nullopt);
    // Closed here (as by a crash) with entries 2-4 uncommitted: entry 4 never reached the log.
  }
  ObjectSqlDb again(file());
  EXPECT_EQ(again.appliedLsn(), 1u);
  EXPECT_EQ(value(again, "SELECT n FROM c"), 0);
  again.replay(log[1]);
  again.replay(log[2]);
  EXPECT_EQ(value(again, "SELECT n FROM c"), 2) << "the log's two increments, not the lost third";
  EXPECT_THROW(again.replay(log[2]), durable::Error) << "entries apply in order, once";
}

TEST_F(ObjectSqlTest, ALostBatchRollsBackAndTheLogReplays) {
  ObjectSqlDb db(file(), ObjectSqlDb::Limits{}, kEveryEntry);
  ASSERT_EQ(exec(db, "CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER); "), SQLITE_DONE);
  ASSERT_EQ(exec(db, "INSERT INTO c VALUES (1, 10)"), SQLITE_DONE);
  auto one = emitOne(db);
  db.durable(one->lsn);
  ASSERT_EQ(exec(db, "UPDATE c SET n = 11"), SQLITE_DONE);
  auto two = emitOne(db);  // durable, but the file waits for three
  ASSERT_EQ(exec(db, "UPDATE c SET n = 12"), SQLITE_DONE);
  auto three = emitOne(db);
  db.durable(two->lsn);
  db.lost();  // three's batch failed
  EXPECT_EQ(db.appliedLsn(), 1u);
  EXPECT_EQ(value(db, "SELECT n FROM c"), 10);
  db.replay(*two);
  EXPECT_EQ(value(db, "SELECT n FROM c"), 11);
  EXPECT_EQ(db.committedLsn(), 2u);
  // The next entry follows the log's last.
  ASSERT_EQ(exec(db, "UPDATE c SET n = 13"), SQLITE_DONE);
  EXPECT_EQ(emitOne(db)->lsn, 3u);
}

TEST_F(ObjectSqlTest, ASavepointUndoneTakesItsRecordsWithIt) {
  ObjectSqlDb db(file(), ObjectSqlDb::Limits{}, kEveryEntry);
  ASSERT_EQ(exec(db, "CREATE TABLE t(a)"), SQLITE_DONE);
  db.beginSavepoint();
  ASSERT_EQ(exec(db, "INSERT INTO t VALUES (1)"), SQLITE_DONE);
  db.endSavepoint(false);
  db.beginSavepoint();
  ASSERT_EQ(exec(db, "INSERT INTO t VALUES (2)"), SQLITE_DONE);
  db.beginSavepoint();
  ASSERT_EQ(exec(db, "INSERT INTO t VALUES (3)"), SQLITE_DONE);
  db.endSavepoint(false);
  db.endSavepoint(true);
  auto entry = emitOne(db);
  ASSERT_TRUE(entry);
  EXPECT_EQ(value(db, "SELECT group_concat(a) FROM t"), 2);

  ObjectSqlDb replica(dir_ / "replica.sqlite");
  replica.replay(*entry);
  EXPECT_EQ(value(replica, "SELECT count(*) FROM t"), 1);
  EXPECT_EQ(value(replica, "SELECT a FROM t"), 2);
}

// The key-value API's writes are recorded as writes: a value rewritten is in its entry once (the
// value it replaced is not), and a replica built from the entries holds the same keys.
TEST_F(ObjectSqlTest, KeyValueWritesAreRecordedOnceAndReplay) {
  ObjectSqlDb db(file(), ObjectSqlDb::Limits{}, kEveryEntry);
  const std::string big(100'000, 'a');
  db.kvPut("history", big);
  db.kvPut("gone", "x");
  auto first = emitOne(db);
  ASSERT_TRUE(first);
  db.durable(first->lsn);
  const std::string bigger = big + std::string(1'000, 'b');
  db.kvPut("history", bigger);
  db.kvDelete("gone");
  auto second = emitOne(db);
  ASSERT_TRUE(second);
  EXPECT_LT(second->records.size(), bigger.size() + 200) << "the old value is not recorded";

  ObjectSqlDb replica(dir_ / "replica.sqlite");
  replica.replay(*first);
  EXPECT_EQ(replica.kvGet("gone"), "x");
  replica.replay(*second);
  EXPECT_EQ(replica.kvGet("history"), bigger);
  EXPECT_FALSE(replica.kvGet("gone"));
  db.durable(second->lsn);
  EXPECT_EQ(db.kvGet("history"), bigger);
}

// FTS5 buffers index changes in memory and writes them to its shadow tables when the
// transaction commits: those writes must be in the log too, or a replica's index (and the file
// after a crash) would differ. Here the file commits only now and then, as under load; the log
// replayed onto an empty file answers every MATCH as the original does and passes FTS5's
// integrity check.
TEST_F(ObjectSqlTest, FullTextIndexChangesReachTheLogBeforeTheFileCommits) {
  std::vector<Entry> log;
  ObjectSqlDb db(file(), ObjectSqlDb::Limits{}, kEveryEntry);
  ASSERT_EQ(exec(db, "CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT NOT NULL)"), SQLITE_DONE);
  ASSERT_EQ(exec(db, "CREATE VIRTUAL TABLE notes_fts USING fts5(text, content='notes', content_rowid='id')"),
            SQLITE_DONE);
  ASSERT_EQ(exec(db, "CREATE TRIGGER notes_added AFTER INSERT ON notes BEGIN "
                     "INSERT INTO notes_fts(rowid, text) VALUES (new.id, new.text); END"),
            SQLITE_DONE);
  ASSERT_EQ(exec(db, "CREATE TRIGGER notes_deleted AFTER DELETE ON notes BEGIN "
                     "INSERT INTO notes_fts(notes_fts, rowid, text) VALUES ('delete', old.id, old.text); END"),
            SQLITE_DONE);
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(exec(db, "INSERT INTO notes(text) VALUES ('note number " + std::to_string(i) + " word" +
                           std::to_string(i % 7) + "')"),
              SQLITE_DONE);
    if (i % 11 == 5) ASSERT_EQ(exec(db, "DELETE FROM notes WHERE id = " + std::to_string(i - 3)), SQLITE_DONE);
    if (auto entry = emitOne(db)) {
      log.push_back(*entry);
      // Durable only every fifth entry: the file's transaction stays open across the others.
      if (log.size() % 5 == 0) db.durable(entry->lsn);
    }
  }
  ObjectSqlDb replica(dir_ / "replica.sqlite");
  for (const auto& e : log) replica.replay(e);
  for (const char* q : {"word3", "note", "number", "word0 OR word6", "nothing"}) {
    const std::string count = std::string("SELECT count(*) FROM notes_fts WHERE notes_fts MATCH '") + q + "'";
    EXPECT_EQ(value(replica, count), value(db, count)) << q;
  }
  EXPECT_GT(value(db, "SELECT count(*) FROM notes_fts WHERE notes_fts MATCH 'word3'"), 0);
  // Replay turned triggers off while it ran, and on again after: the replica's own writes
  // reach its index.
  ASSERT_EQ(exec(replica, "INSERT INTO notes(text) VALUES ('written after the replay')"), SQLITE_DONE);
  EXPECT_EQ(value(replica, "SELECT count(*) FROM notes_fts WHERE notes_fts MATCH 'replay'"), 1);
  EXPECT_EQ(exec(db, "INSERT INTO notes_fts(notes_fts) VALUES ('integrity-check')"), SQLITE_DONE)
      << sqlite3_errmsg(db.db());
  EXPECT_EQ(exec(replica, "INSERT INTO notes_fts(notes_fts) VALUES ('integrity-check')"), SQLITE_DONE)
      << sqlite3_errmsg(replica.db());
}

// The child: increments through the object's database, appending each entry to a log file and
// syncing it before telling the database it is durable, until it is killed.
[[noreturn]] void writer(const fs::path& file, const fs::path& logFile, unsigned seed) {
  try {
    ObjectSqlDb db(file, ObjectSqlDb::Limits{}, kEveryEntry);
    if (db.appliedLsn() == 0) {
      exec(db, "CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER)");
      exec(db, "INSERT INTO c VALUES (1, 0)");
    }
    const int fd = ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    std::mt19937 rng(seed);
    std::vector<std::uint64_t> inFlight;
    for (;;) {
      const int increments = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < increments; ++i) exec(db, "UPDATE c SET n = n + 1 WHERE id = 1");
      auto entry = emitOne(db);
      if (!entry) continue;
      std::string frame(12, '\0');
      std::memcpy(frame.data(), &entry->lsn, 8);
      const auto size = static_cast<std::uint32_t>(entry->records.size());
      std::memcpy(frame.data() + 8, &size, 4);
      frame += entry->records;
      if (::write(fd, frame.data(), frame.size()) != static_cast<ssize_t>(frame.size())) ::_exit(3);
      // Sometimes the sync trails by an entry or two, as group commit does.
      inFlight.push_back(entry->lsn);
      if (rng() % 3 == 0) continue;
      if (::fdatasync(fd) != 0) ::_exit(4);
      db.durable(inFlight.back());
      inFlight.clear();
    }
  } catch (...) {
    ::_exit(5);
  }
}

// The log's complete entries, in order (a torn last one is not there: it was never synced).
std::vector<Entry> readLog(const fs::path& logFile) {
  std::ifstream in(logFile, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<Entry> out;
  std::size_t pos = 0;
  while (all.size() - pos >= 12) {
    Entry e;
    std::uint32_t size;
    std::memcpy(&e.lsn, all.data() + pos, 8);
    std::memcpy(&size, all.data() + pos + 8, 4);
    if (all.size() - pos - 12 < size) break;
    e.records = all.substr(pos + 12, size);
    pos += 12 + size;
    out.push_back(std::move(e));
  }
  return out;
}

TEST_F(ObjectSqlTest, AWriterKilledAtRandomLeavesAFileTheLogCompletesExactly) {
  const fs::path logFile = dir_ / "log";
  fs::create_directories(dir_);
  std::mt19937 rng(4242);
  std::uint64_t previousLsn = 0;
  for (int round = 0; round < 10; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) writer(file(), logFile, static_cast<unsigned>(round));
    // Killed at a random moment after it has written something this round (a loaded machine,
    // or a sanitizer, can take longer than any fixed delay to get it going).
    std::error_code ec;
    const auto sizeBefore = fs::exists(logFile) ? fs::file_size(logFile, ec) : 0;
    for (int i = 0; i < 2000 && (fs::exists(logFile) ? fs::file_size(logFile, ec) : 0) == sizeBefore; ++i) {
      ::usleep(5'000);
    }
    ::usleep(static_cast<useconds_t>(rng() % 150'000));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped by itself: " << status;

    // What the log holds is the truth; the file may lag it, never lead it.
    auto log = readLog(logFile);
    ASSERT_FALSE(log.empty());
    // A torn tail is cut off, as a log's recovery would, so the next writer appends after it.
    {
      std::string keep;
      for (const auto& e : log) {
        std::string frame(12, '\0');
        std::memcpy(frame.data(), &e.lsn, 8);
        const auto size = static_cast<std::uint32_t>(e.records.size());
        std::memcpy(frame.data() + 8, &size, 4);
        keep += frame + e.records;
      }
      std::ofstream(logFile, std::ios::binary | std::ios::trunc) << keep;
    }
    ObjectSqlDb db(file(), ObjectSqlDb::Limits{}, kEveryEntry);
    ASSERT_LE(db.appliedLsn(), log.back().lsn) << "round " << round << ": the file is ahead of the log";
    for (const auto& e : log) {
      if (e.lsn > db.appliedLsn()) db.replay(e);
    }
    EXPECT_EQ(db.appliedLsn(), log.back().lsn);
    EXPECT_GT(log.back().lsn, previousLsn) << "round " << round << " wrote nothing";
    previousLsn = log.back().lsn;
    // Every increment in the log is in the file once: n counts the UPDATE records.
    ObjectSqlDb fresh(dir_ / ("replica-" + std::to_string(round) + ".sqlite"));
    for (const auto& e : log) fresh.replay(e);
    EXPECT_EQ(value(db, "SELECT n FROM c"), value(fresh, "SELECT n FROM c")) << "round " << round;
    EXPECT_GT(value(db, "SELECT n FROM c"), 0);
  }
}

}  // namespace
