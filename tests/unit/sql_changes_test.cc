// SqlChangeRecorder and replaySqlChanges over real SQLite files: whatever statements run on
// one database, replaying their records onto a fresh one gives the same schema and the same
// rows (rowids included), for the shapes of SQL that objects will run: tables with and without
// a declared key, WITHOUT ROWID, generated columns, FTS5 kept by triggers, foreign-key
// cascades, rowid changes, REPLACE, ALTER, CREATE TABLE AS SELECT, failed statements; and for
// thousands of random statements replayed turn by turn.
#include "storage/sql_changes.h"

#include <durable/error.h>

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using durable::detail::replaySqlChanges;
using durable::detail::SqlChangeRecorder;

struct Db {
  sqlite3* db = nullptr;
  explicit Db(const fs::path& file) {
    if (sqlite3_open(file.c_str(), &db) != SQLITE_OK) throw std::runtime_error("open");
    exec("PRAGMA journal_mode=WAL");
  }
  ~Db() { sqlite3_close(db); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string why = err ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error(why + " in: " + sql);
    }
  }
  // Every row of every table (rowids included where there are any) and the schema, as text.
  std::string dump() {
    std::string out;
    std::vector<std::pair<std::string, std::string>> objects;
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name", -1, &s,
                       nullptr);
    while (sqlite3_step(s) == SQLITE_ROW) {
      const std::string type = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      const std::string name = reinterpret_cast<const char*>(sqlite3_column_text(s, 1));
      const auto* sql = sqlite3_column_text(s, 2);
      out += type + " " + name + ": " + (sql ? reinterpret_cast<const char*>(sql) : "") + "\n";
      if (type == "table" && (!sql || std::string(reinterpret_cast<const char*>(sql)).find("VIRTUAL") == std::string::npos)) {
        objects.emplace_back(name, type);
      }
    }
    sqlite3_finalize(s);
    for (const auto& [name, _] : objects) {
      sqlite3_stmt* probe = nullptr;
      const bool rowid =
          sqlite3_prepare_v2(db, ("SELECT rowid FROM \"" + name + "\" LIMIT 0").c_str(), -1, &probe, nullptr) == SQLITE_OK;
      sqlite3_finalize(probe);
      const std::string sql = std::string("SELECT ") + (rowid ? "rowid, " : "") + "* FROM \"" + name + "\" ORDER BY 1, 2";
      out += "-- " + name + "\n";
      sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
      while (sqlite3_step(s) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(s); ++c) {
          const int type = sqlite3_column_type(s, c);
          out += type == SQLITE_NULL ? std::string("NULL")
                 : type == SQLITE_BLOB
                     ? "x" + std::to_string(sqlite3_column_bytes(s, c)) + ":" +
                           std::string(static_cast<const char*>(sqlite3_column_blob(s, c)), sqlite3_column_bytes(s, c))
                     : std::to_string(type) + ":" + reinterpret_cast<const char*>(sqlite3_column_text(s, c));
          out += "|";
        }
        out += "\n";
      }
      sqlite3_finalize(s);
    }
    return out;
  }
  long long count(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db));
    long long n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return n;
  }
};

class SqlChangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("durable-sql-changes-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    origin_ = std::make_unique<Db>(dir_ / "origin.sqlite");
    replica_ = std::make_unique<Db>(dir_ / "replica.sqlite");
    origin_->exec("PRAGMA foreign_keys=ON");
    recorder_ = std::make_unique<SqlChangeRecorder>(origin_->db);
  }
  void TearDown() override {
    recorder_.reset();
    origin_.reset();
    replica_.reset();
    fs::remove_all(dir_);
  }

  // Runs every statement of `sql` on the origin through the recorder; the SQLite result code
  // of the last (or of the first that failed).
  int run(const std::string& sql) {
    const char* tail = sql.c_str();
    int rc = SQLITE_DONE;
    while (tail && *tail) {
      sqlite3_stmt* s = nullptr;
      if (sqlite3_prepare_v2(origin_->db, tail, -1, &s, &tail) != SQLITE_OK) return sqlite3_errcode(origin_->db);
      if (!s) break;
      rc = recorder_->run(s);
      sqlite3_finalize(s);
      if (rc != SQLITE_DONE) return rc;
    }
    return rc;
  }
  // One turn: its records, replayed onto the replica in a transaction of its own.
  std::size_t replayTurn() {
    const std::string records = recorder_->take();
    replica_->exec("BEGIN");
    replaySqlChanges(replica_->db, records);
    replica_->exec("COMMIT");
    return records.size();
  }

  fs::path dir_;
  std::unique_ptr<Db> origin_, replica_;
  std::unique_ptr<SqlChangeRecorder> recorder_;
};

TEST_F(SqlChangesTest, EveryShapeOfTableReplaysToTheSameRows) {
  ASSERT_EQ(run(R"(
    CREATE TABLE plain(a, b);
    CREATE TABLE counters(id INTEGER PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE pairs(x TEXT, y INTEGER, v BLOB, PRIMARY KEY(x, y)) WITHOUT ROWID;
    CREATE TABLE shapes(w REAL, h REAL, area REAL GENERATED ALWAYS AS (w * h) VIRTUAL,
                        perimeter REAL GENERATED ALWAYS AS (2 * (w + h)) STORED);
    CREATE TABLE authors(id INTEGER PRIMARY KEY, name TEXT UNIQUE);
    CREATE TABLE books(id INTEGER PRIMARY KEY, author INTEGER REFERENCES authors(id) ON DELETE CASCADE, title TEXT);
    CREATE TABLE audit(at INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT);
    CREATE TRIGGER books_audit AFTER INSERT ON books BEGIN INSERT INTO audit(what) VALUES ('book ' || new.title); END;
    CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT);
    CREATE VIRTUAL TABLE notes_fts USING fts5(text, content='notes', content_rowid='id');
    CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN INSERT INTO notes_fts(rowid, text) VALUES (new.id, new.text); END;
    CREATE TRIGGER notes_ad AFTER DELETE ON notes BEGIN
      INSERT INTO notes_fts(notes_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
  )"),
            SQLITE_DONE);
  replayTurn();

  ASSERT_EQ(run(R"(
    INSERT INTO plain VALUES (1, 'one'), (2.5, x'00ff10'), (NULL, 'ünïcödé ✓');
    INSERT INTO counters(id) VALUES (1), (2), (3);
    UPDATE counters SET n = n + 1 WHERE id = 1;
    UPDATE counters SET id = 30 WHERE id = 3;
    INSERT INTO pairs VALUES ('a', 1, x'01'), ('a', 2, x'02'), ('b', 1, NULL);
    UPDATE pairs SET y = 3 WHERE x = 'a' AND y = 2;
    DELETE FROM pairs WHERE x = 'b';
    INSERT INTO shapes(w, h) VALUES (2, 3), (1.5, 4);
    UPDATE shapes SET w = 10 WHERE h = 3;
    INSERT INTO authors(name) VALUES ('ann'), ('bob');
    INSERT INTO books(author, title) VALUES (1, 'first'), (1, 'second'), (2, 'third');
    INSERT OR REPLACE INTO authors(id, name) VALUES (7, 'bob');
    DELETE FROM authors WHERE name = 'ann';
    INSERT INTO notes(text) VALUES ('durable objects in c++'), ('sqlite and fts5'), ('objects everywhere');
    DELETE FROM notes WHERE text LIKE 'sqlite%';
  )"),
            SQLITE_DONE);
  replayTurn();

  // A statement that fails changes nothing, and records nothing.
  EXPECT_EQ(run("INSERT INTO pairs VALUES ('z', 9, NULL), ('a', 1, x'ff')"), SQLITE_CONSTRAINT);
  EXPECT_EQ(origin_->count("SELECT count(*) FROM pairs WHERE x = 'z'"), 0);

  ASSERT_EQ(run(R"(
    ALTER TABLE counters ADD COLUMN label TEXT DEFAULT 'none';
    UPDATE counters SET label = 'hot' WHERE id = 1;
    CREATE INDEX counters_by_label ON counters(label);
    CREATE TABLE big_counters AS SELECT id, n FROM counters WHERE id > 1;
    DROP TABLE plain;
    INSERT INTO notes(text) VALUES ('late note about objects');
  )"),
            SQLITE_DONE);
  replayTurn();

  EXPECT_EQ(replica_->dump(), origin_->dump());
  // The search index came along with the rows: the same documents match.
  for (const char* q : {"objects", "sqlite", "c++", "late"}) {
    const std::string sql = std::string("SELECT count(*) FROM notes_fts WHERE notes_fts MATCH '\"") + q + "\"'";
    EXPECT_EQ(replica_->count(sql), origin_->count(sql)) << q;
  }
  EXPECT_EQ(origin_->count("SELECT count(*) FROM notes_fts WHERE notes_fts MATCH 'objects'"), 3);
  // The cascade and the trigger ran once on the replica, not twice.
  EXPECT_LT(origin_->count("SELECT count(*) FROM books"), 3);
  EXPECT_EQ(replica_->count("SELECT count(*) FROM books"), origin_->count("SELECT count(*) FROM books"));
  EXPECT_EQ(replica_->count("SELECT count(*) FROM audit"), 3);
}

TEST_F(SqlChangesTest, ACounterTurnIsAFewDozenBytes) {
  ASSERT_EQ(run("CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO c VALUES (1, 0)"), SQLITE_DONE);
  replayTurn();
  std::size_t total = 0;
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(run("UPDATE c SET n = n + 1 WHERE id = 1 RETURNING n"), SQLITE_DONE);
    total += replayTurn();
  }
  EXPECT_LE(total / 100, 64u);
  EXPECT_EQ(replica_->count("SELECT n FROM c"), 100);
}

TEST_F(SqlChangesTest, ThousandsOfRandomStatementsReplayTurnByTurn) {
  ASSERT_EQ(run(R"(
    CREATE TABLE r(a INTEGER, b TEXT);
    CREATE TABLE k(id INTEGER PRIMARY KEY, v REAL, t TEXT);
    CREATE TABLE w(p TEXT, q INTEGER, z, PRIMARY KEY (p, q)) WITHOUT ROWID;
  )"),
            SQLITE_DONE);
  replayTurn();
  std::mt19937 rng(20261206);
  auto pick = [&rng](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto text = [&] { return "'t" + std::to_string(pick(50)) + "'"; };
  for (int turn = 0; turn < 300; ++turn) {
    const int statements = 1 + pick(12);
    for (int i = 0; i < statements; ++i) {
      std::string sql;
      switch (pick(9)) {
        case 0: sql = "INSERT INTO r VALUES (" + std::to_string(pick(100)) + ", " + text() + ")"; break;
        case 1: sql = "UPDATE r SET b = " + text() + " WHERE a % 7 = " + std::to_string(pick(7)); break;
        case 2: sql = "DELETE FROM r WHERE a = " + std::to_string(pick(100)); break;
        case 3: sql = "INSERT OR REPLACE INTO k VALUES (" + std::to_string(pick(60)) + ", " + std::to_string(pick(1000)) + ".25, " + text() + ")"; break;
        case 4: sql = "UPDATE OR REPLACE k SET id = id + 100 WHERE id = " + std::to_string(pick(60)); break;
        case 5: sql = "DELETE FROM k WHERE v < " + std::to_string(pick(300)); break;
        case 6: sql = "INSERT OR IGNORE INTO w VALUES (" + text() + ", " + std::to_string(pick(10)) + ", randomblob(4))"; break;
        case 7: sql = "UPDATE w SET q = q + 10, z = NULL WHERE p = " + text(); break;
        default: sql = "DELETE FROM w WHERE q > " + std::to_string(pick(20)); break;
      }
      ASSERT_EQ(run(sql), SQLITE_DONE) << sql;
    }
    replayTurn();
  }
  EXPECT_EQ(replica_->dump(), origin_->dump());
  EXPECT_GT(origin_->count("SELECT count(*) FROM r") + origin_->count("SELECT count(*) FROM k"), 10);
}

TEST_F(SqlChangesTest, DamagedRecordsAreRefusedWithAnError) {
  ASSERT_EQ(run("CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO c VALUES (1, 0)"), SQLITE_DONE);
  const std::string records = recorder_->take();
  ASSERT_FALSE(records.empty());
  // Inside the first record's tag, inside its text, inside the last record.
  for (std::size_t cut : {std::size_t{1}, std::size_t{5}, records.size() - 1}) {
    replica_->exec("BEGIN");
    EXPECT_THROW(replaySqlChanges(replica_->db, std::string_view(records).substr(0, cut)), durable::Error) << cut;
    replica_->exec("ROLLBACK");
  }
  replica_->exec("BEGIN");
  EXPECT_THROW(replaySqlChanges(replica_->db, "Q"), durable::Error);
  replica_->exec("ROLLBACK");
}

}  // namespace
