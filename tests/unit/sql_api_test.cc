// storage().sql() and transactionSync() through the real runtime, over both engines: the cursor
// API, every refusal and limit (each changes nothing), a turn mixing SQL, KV and an alarm that
// commits whole or not at all, the output gate over SQL writes, and the database surviving
// restarts, eviction and a hot object's long run.
#include <durable/durable.h>
#include <durable/testing.h>

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <sys/resource.h>

#include <string>
#include <vector>

namespace {

using durable::Bytes;
using durable::Error;
using durable::ErrorCode;
using durable::SqlCursor;
using durable::SqlRow;
using durable::State;
using durable::Task;
using durable::Value;

class Db : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  Task<durable::Response> fetch(durable::Request request) override {
    const auto path = request.url().pathname();
    auto& sql = storage().sql();
    sql.exec("CREATE TABLE IF NOT EXISTS c(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)");
    if (path == "/increment") {
      const auto n = sql.exec("INSERT INTO c VALUES (1, 1) ON CONFLICT(id) DO UPDATE SET n = n + 1 RETURNING n")
                         .one()
                         .get<std::int64_t>("n");
      co_return durable::Response(std::to_string(n));
    }
    const auto rows = sql.exec("SELECT n FROM c WHERE id = 1");
    co_return durable::Response(rows.empty() ? "0" : std::to_string(rows.one().get<std::int64_t>("n")));
  }
};

durable::testing::EnvOptions sqlOn(const std::string& engine) {
  durable::testing::EnvOptions o;
  o.sqliteBacked = true;
  o.storageEngine = engine;
  return o;
}

class SqlApiTest : public ::testing::TestWithParam<std::string> {
 protected:
  explicit SqlApiTest(durable::testing::EnvOptions options) : env_(std::move(options)) {
    ns_ = &env_.exportClass<Db>("DB");
  }
  SqlApiTest() : SqlApiTest(sqlOn(GetParam())) {}

  durable::Stub stub(const std::string& name = "a") { return ns_->get(ns_->idFromName(name)); }
  void in(const std::function<Task<void>(State&)>& fn, const std::string& name = "a") {
    env_.runInDurableObject<Db>(stub(name), [fn](Db&, State& state) -> Task<void> { co_await fn(state); });
  }
  // What a statement's failure says; "" when it did not fail.
  static std::string refusal(State& state, const std::string& query) {
    try {
      state.storage().sql().exec(query);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << query << ": " << e.what();
      return e.what();
    }
    return "";
  }
  static std::int64_t count(State& state, const std::string& table) {
    return state.storage().sql().exec("SELECT count(*) AS n FROM " + table).one().get<std::int64_t>("n");
  }

  durable::testing::Env env_;
  const durable::Namespace* ns_ = nullptr;
};

TEST_P(SqlApiTest, TheCursorGivesRowsByNameAndPositionColumnNamesAndCounts) {
  in([](State& state) -> Task<void> {
    auto& sql = state.storage().sql();
    auto created = sql.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, z)");
    EXPECT_TRUE(created.columnNames().empty());
    EXPECT_EQ(created.rowsWritten(), 0u);
    auto inserted = sql.exec("INSERT INTO t(i, r, s, b, z) VALUES (?, ?, ?, ?, ?), (?5, ?4, ?3, ?2, ?1)",
                             std::int64_t{1} << 40, 2.5, "text ' \" ; --", Bytes(std::string("\0\xff", 2)), nullptr);
    EXPECT_EQ(inserted.rowsWritten(), 2u);
    EXPECT_TRUE(inserted.empty());

    const auto cursor = sql.exec("SELECT id, i, r, s, b, z FROM t ORDER BY id");
    EXPECT_EQ(cursor.columnNames(), (std::vector<std::string>{"id", "i", "r", "s", "b", "z"}));
    EXPECT_EQ(cursor.size(), 2u);
    if (cursor.size() != 2u) co_return;
    const SqlRow& first = cursor.toArray()[0];
    EXPECT_EQ(first["i"], Value(std::int64_t{1} << 40));
    EXPECT_EQ(first["i"].type(), Value::Type::kInt);
    EXPECT_EQ(first.get<double>("r"), 2.5);
    EXPECT_EQ(first.get<std::string>("s"), "text ' \" ; --");
    EXPECT_EQ(first.get<Bytes>("b").data, std::string("\0\xff", 2));
    EXPECT_TRUE(first["z"].isNull());
    EXPECT_EQ(first[0], Value(1));
    EXPECT_THROW(first["nope"], Error);
    // The second row bound the same values in reverse: numbered parameters reuse bindings.
    const auto raw = cursor.raw();
    EXPECT_EQ(raw.size(), 2u);
    if (raw.size() != 2u) co_return;
    EXPECT_TRUE(raw[1][1].isNull());
    EXPECT_EQ(raw[1][5], Value(std::int64_t{1} << 40));
    EXPECT_GE(cursor.rowsRead(), 2u);
    EXPECT_EQ(cursor.rowsWritten(), 0u);

    std::int64_t sum = 0;
    for (const SqlRow& row : sql.exec("SELECT id FROM t")) sum += row.get<std::int64_t>("id");
    EXPECT_EQ(sum, 3);

    // Several statements: all run, the cursor is the last one's; a repeated column name gives
    // the last value by name and both in raw().
    const auto last = sql.exec("UPDATE t SET i = 7; SELECT 1 AS x, 2 AS x;");
    EXPECT_EQ(last.one().get<std::int64_t>("x"), 2);
    EXPECT_EQ(last.raw()[0].size(), 2u);
    EXPECT_EQ(sql.exec("SELECT sum(i) AS s FROM t").one().get<std::int64_t>("s"), 14);

    // A bool binds as 1 or 0.
    EXPECT_EQ(sql.exec("SELECT ? + ? AS v", true, false).one().get<std::int64_t>("v"), 1);
    EXPECT_GT(sql.databaseSize(), 0u);
    co_return;
  });
}

TEST_P(SqlApiTest, OneAndBindingCountsAndEmptyQueriesSayWhatIsWrong) {
  in([](State& state) -> Task<void> {
    auto& sql = state.storage().sql();
    sql.exec("CREATE TABLE t(v)");
    try {
      (void)sql.exec("SELECT v FROM t").one();
      ADD_FAILURE() << "one() of no rows";
    } catch (const Error& e) {
      EXPECT_STREQ(e.what(), "Expected exactly one result from SQL query, but got no results.");
    }
    sql.exec("INSERT INTO t VALUES (1), (2)");
    try {
      (void)sql.exec("SELECT v FROM t").one();
      ADD_FAILURE() << "one() of two rows";
    } catch (const Error& e) {
      EXPECT_STREQ(e.what(), "Expected exactly one result from SQL query, but got multiple results.");
    }
    EXPECT_THROW(sql.exec("SELECT ?"), Error);
    EXPECT_THROW(sql.exec("SELECT ?", 1, 2), Error);
    EXPECT_THROW(sql.exec("INSERT INTO t VALUES (?); SELECT 1", 1), Error);
    EXPECT_THROW(sql.exec("  -- nothing\n ; "), Error);
    EXPECT_THROW(sql.exec("SELECT ?", Value(durable::Json(boost::json::array{1, 2}))), Error);
    try {
      sql.exec("SELECT * FROM missing");
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("no such table: missing"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("SQLITE_ERROR"), std::string::npos) << e.what();
    }
    EXPECT_EQ(count(state, "t"), 2);
    co_return;
  });
}

TEST_P(SqlApiTest, RefusedStatementsSayWhyAndChangeNothing) {
  in([](State& state) -> Task<void> {
    auto& sql = state.storage().sql();
    sql.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v UNIQUE)");
    sql.exec("INSERT INTO t VALUES (1, 'a')");
    for (const char* q : {"BEGIN", "BEGIN TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT s", "RELEASE s"}) {
      EXPECT_NE(refusal(state, q).find("transactionSync()"), std::string::npos) << q;
    }
    EXPECT_NE(refusal(state, "ATTACH DATABASE '/tmp/x.db' AS x").find("ATTACH"), std::string::npos);
    EXPECT_NE(refusal(state, "SELECT * FROM _cf_meta").find("_cf_meta"), std::string::npos);
    EXPECT_NE(refusal(state, "UPDATE _cf_meta SET lsn = 0").find("_cf_"), std::string::npos);
    EXPECT_NE(refusal(state, "CREATE TABLE _CF_mine(x)").find("_cf_"), std::string::npos);
    EXPECT_NE(refusal(state, "CREATE INDEX _cf_i ON t(v)").find("_cf_"), std::string::npos);
    EXPECT_NE(refusal(state, "CREATE TEMP TABLE tmp(x)").find("temporary"), std::string::npos);
    EXPECT_NE(refusal(state, "PRAGMA journal_mode=DELETE").find("PRAGMA"), std::string::npos);
    EXPECT_NE(refusal(state, "PRAGMA synchronous=OFF").find("PRAGMA"), std::string::npos);
    EXPECT_NE(refusal(state, "PRAGMA writable_schema=ON").find("PRAGMA"), std::string::npos);
    EXPECT_NE(refusal(state, "PRAGMA page_size=1024").find("PRAGMA"), std::string::npos);
    EXPECT_NE(refusal(state, "PRAGMA table_info(_cf_meta)").find("PRAGMA"), std::string::npos);
    EXPECT_NE(refusal(state, "SELECT load_extension('x')").find("load_extension"), std::string::npos);
    EXPECT_NE(refusal(state, "INSERT OR ROLLBACK INTO t VALUES (1, 'b')").find("ROLLBACK"), std::string::npos);
    EXPECT_NE(refusal(state, "INSERT OR FAIL INTO t VALUES (2, 'a'), (3, 'c')").find("FAIL"), std::string::npos);
    EXPECT_NE(refusal(state, "CREATE TRIGGER tr BEFORE INSERT ON t BEGIN SELECT RAISE(ROLLBACK, 'no'); END")
                  .find("ROLLBACK"),
              std::string::npos);
    // The words are fine inside strings and quoted names.
    EXPECT_EQ(refusal(state, "INSERT INTO t VALUES (5, 'rollback or fail')"), "");
    // Allowed PRAGMAs read.
    EXPECT_EQ(sql.exec("PRAGMA table_info(t)").size(), 2u);
    EXPECT_EQ(refusal(state, "PRAGMA foreign_keys = ON"), "");
    EXPECT_EQ(refusal(state, "PRAGMA quick_check"), "");
    // A failing statement is atomic: the second row's conflict undoes the first's insert.
    EXPECT_NE(refusal(state, "INSERT INTO t VALUES (6, 'x'), (7, 'a')").find("SQLITE_CONSTRAINT"), std::string::npos);
    EXPECT_EQ(count(state, "t"), 2);
    // The object's transaction survived all of it: writes still commit.
    sql.exec("INSERT INTO t VALUES (8, 'z')");
    co_return;
  });
  env_.restart();
  in([](State& state) -> Task<void> {
    EXPECT_EQ(count(state, "t"), 3);
    co_return;
  });
}

TEST_P(SqlApiTest, LimitsAreEnforcedWithAClearError) {
  in([](State& state) -> Task<void> {
    auto& sql = state.storage().sql();
    sql.exec("CREATE TABLE t(v)");
    // A statement over 100 KB.
    std::string big = "SELECT '" + std::string(100 * 1000, 'x') + "'";
    EXPECT_NE(refusal(state, big).find("too"), std::string::npos);
    // 101 bound parameters.
    std::string many = "SELECT ?";
    for (int i = 1; i < 101; ++i) many += ", ?";
    EXPECT_NE(refusal(state, many).find("SQLITE_ERROR"), std::string::npos);
    // 101 columns.
    std::string wide = "CREATE TABLE w(c0";
    for (int i = 1; i < 101; ++i) wide += ", c" + std::to_string(i);
    EXPECT_NE(refusal(state, wide + ")").find("too many columns"), std::string::npos);
    // A blob over 2 MB, bound, and one made in SQL.
    try {
      sql.exec("INSERT INTO t VALUES (?)", Bytes(std::string(2 * 1024 * 1024 + 1, 'b')));
      ADD_FAILURE() << "a 2 MB + 1 blob was stored";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("too big"), std::string::npos) << e.what();
    }
    EXPECT_NE(refusal(state, "INSERT INTO t VALUES (zeroblob(3 * 1024 * 1024))").find("too big"), std::string::npos);
    EXPECT_EQ(count(state, "t"), 0);
    co_return;
  });
}

TEST_P(SqlApiTest, FullTextSearchAndJsonFunctionsWork) {
  in([](State& state) -> Task<void> {
    auto& sql = state.storage().sql();
    sql.exec("CREATE VIRTUAL TABLE docs USING fts5(body)");
    sql.exec("INSERT INTO docs(body) VALUES (?), (?)", "the quick brown fox", "lazy dogs sleep");
    const auto hits = sql.exec("SELECT body FROM docs WHERE docs MATCH ? ORDER BY rank", "quick");
    EXPECT_EQ(hits.size(), 1u);
    if (hits.size() != 1u) co_return;
    EXPECT_EQ(hits.one().get<std::string>("body"), "the quick brown fox");
    EXPECT_EQ(sql.exec("SELECT json_extract(?, '$.a[1]') AS v", R"({"a":[1,2]})").one().get<std::int64_t>("v"), 2);
    EXPECT_NE(refusal(state, "CREATE VIRTUAL TABLE v USING dbstat").find("not available"), std::string::npos);
    co_return;
  });
  env_.restart();
  in([](State& state) -> Task<void> {
    EXPECT_EQ(state.storage().sql().exec("SELECT body FROM docs WHERE docs MATCH 'dogs'").size(), 1u);
    co_return;
  });
}

TEST_P(SqlApiTest, TransactionSyncUndoesSqlKeyValueAndAlarmWritesOnAThrow) {
  in([](State& state) -> Task<void> {
    auto& storage = state.storage();
    auto& sql = storage.sql();
    sql.exec("CREATE TABLE t(v)");
    const int result = storage.transactionSync([&] {
      sql.exec("INSERT INTO t VALUES (1)");
      storage.put("k", 1);
      return 42;
    });
    EXPECT_EQ(result, 42);
    EXPECT_THROW(storage.transactionSync([&] {
      sql.exec("INSERT INTO t VALUES (2)");
      storage.put("k", 2);
      storage.put("other", 3);
      storage.setAlarm(durable::now() + 3'600'000);
      EXPECT_EQ(count(state, "t"), 2) << "the transaction reads its own writes";
      throw std::runtime_error("no");
    }),
                 std::runtime_error);
    EXPECT_EQ(count(state, "t"), 1);
    EXPECT_EQ(co_await storage.get<int>("k"), 1);
    EXPECT_FALSE(co_await storage.get("other"));
    EXPECT_FALSE(co_await storage.getAlarm());
    // Nested: the inner throw undoes only the inner part.
    storage.transactionSync([&] {
      sql.exec("INSERT INTO t VALUES (3)");
      storage.put("outer", 1);
      try {
        storage.transactionSync([&] {
          sql.exec("INSERT INTO t VALUES (4)");
          storage.put("inner", 1);
          throw std::runtime_error("inner");
        });
      } catch (const std::runtime_error&) {
      }
    });
    EXPECT_EQ(count(state, "t"), 2);
    EXPECT_TRUE(co_await storage.get("outer"));
    EXPECT_FALSE(co_await storage.get("inner"));
    // transaction() (the one that awaits) undoes its SQL too.
    try {
      co_await storage.transaction([&](durable::Storage& txn) -> Task<void> {
        sql.exec("INSERT INTO t VALUES (5)");
        co_await txn.put("async", 1);
        throw std::runtime_error("async");
      });
    } catch (const std::runtime_error&) {
    }
    EXPECT_EQ(count(state, "t"), 2);
    EXPECT_FALSE(co_await storage.get("async"));
  });
  env_.restart();
  in([](State& state) -> Task<void> {
    EXPECT_EQ(count(state, "t"), 2);
    EXPECT_EQ(co_await state.storage().get<int>("k"), 1);
    EXPECT_TRUE(co_await state.storage().get("outer"));
  });
}

// Key-value writes reach the object's database once per batch (ObjectStore::flushSqlKv), not at
// each put: whatever was written before a savepoint opens stays when it is rolled back, what is
// written inside goes with it, and a bookmark taken after a put names a state that has it.
TEST_P(SqlApiTest, KeyValueWritesBeforeASavepointSurviveItsRollback) {
  in([](State& state) -> Task<void> {
    auto& storage = state.storage();
    storage.put("k", 1);
    storage.put("gone", 1);
    storage.remove("gone");
    EXPECT_THROW(storage.transactionSync([&] {
      storage.put("k", 2);
      storage.put("gone", 2);
      throw std::runtime_error("no");
    }),
                 std::runtime_error);
    EXPECT_EQ(co_await storage.get<int>("k"), 1);
    EXPECT_FALSE(co_await storage.get("gone"));
    storage.put("k", 3);
    try {
      co_await storage.transaction([&](durable::Storage& txn) -> Task<void> {
        co_await txn.put("k", 4);
        throw std::runtime_error("async");
      });
    } catch (const std::runtime_error&) {
    }
    EXPECT_EQ(co_await storage.get<int>("k"), 3);
    // The same key put many times in one batch, then a sibling in the same batch.
    for (int i = 0; i < 50; ++i) storage.put("hot", i);
    storage.put(std::vector<std::pair<std::string, durable::Value>>{{"a", 1}, {"b", 2}});
    EXPECT_GT(storage.sql().databaseSize(), 0u);
    const auto listed = co_await storage.list();
    EXPECT_EQ(listed.size(), 4u);  // a, b, hot, k
  });
  env_.restart();
  in([](State& state) -> Task<void> {
    auto& storage = state.storage();
    EXPECT_EQ(co_await storage.get<int>("k"), 3);
    EXPECT_EQ(co_await storage.get<int>("hot"), 49);
    EXPECT_EQ(co_await storage.get<int>("b"), 2);
    EXPECT_FALSE(co_await storage.get("gone"));
  });
}

// Writes made through the outer storage while transaction() holds its savepoint go into it, so
// its rollback undoes them: the cache must not keep them either, nor a deleteAll's emptiness.
TEST_P(SqlApiTest, ARolledBackTransactionUndoesWritesMadeBesideItToo) {
  in([](State& state) -> Task<void> {
    auto& storage = state.storage();
    storage.put("k", 1);
    storage.put("other", 1);
    try {
      co_await storage.transaction([&](durable::Storage&) -> Task<void> {
        co_await storage.put("k", 2);
        co_await storage.deleteAll();
        co_await storage.put("new", 1);
        throw std::runtime_error("undo");
      });
    } catch (const std::runtime_error&) {
    }
    EXPECT_EQ(co_await storage.get<int>("k"), 1);
    EXPECT_EQ(co_await storage.get<int>("other"), 1);
    EXPECT_FALSE(co_await storage.get("new"));
    EXPECT_EQ((co_await storage.list()).size(), 2u);
    // transactionSync: a deleteAll and the puts after it commit together.
    storage.transactionSync([&] {
      storage.deleteAll();
      storage.put("only", 1);
    });
    EXPECT_EQ((co_await storage.list()).size(), 1u);
  });
  env_.restart();
  in([](State& state) -> Task<void> {
    const auto all = co_await state.storage().list();
    EXPECT_EQ(all.size(), 1u);
    if (!all.empty()) EXPECT_EQ(all.begin()->first, "only");
  });
}

TEST_P(SqlApiTest, DeleteAllDropsTheTablesToo) {
  in([](State& state) -> Task<void> {
    auto& sql = state.storage().sql();
    sql.exec("CREATE TABLE parent(id INTEGER PRIMARY KEY)");
    sql.exec("CREATE TABLE child(p REFERENCES parent(id))");
    sql.exec("CREATE VIEW v AS SELECT * FROM child");
    sql.exec("CREATE VIRTUAL TABLE f USING fts5(x)");
    sql.exec("INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1);");
    co_await state.storage().put("k", 1);
    co_await state.storage().deleteAll();
    EXPECT_EQ(sql.exec("SELECT name FROM sqlite_schema WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\'").size(), 0u);
    EXPECT_FALSE(co_await state.storage().get("k"));
  });
  env_.restart();
  in([](State& state) -> Task<void> {
    EXPECT_EQ(state.storage().sql().exec("SELECT name FROM sqlite_schema WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\'").size(), 0u);
    co_return;
  });
}

TEST_P(SqlApiTest, AHotObjectsCountSurvivesRestartsAndEviction) {
  const auto s = stub();
  for (int i = 1; i <= 300; ++i) ASSERT_EQ(env_.fetch(s, "http://do/increment").text(), std::to_string(i));
  env_.restart();
  EXPECT_EQ(env_.fetch(s, "http://do/read").text(), "300");
  for (int i = 301; i <= 310; ++i) ASSERT_EQ(env_.fetch(s, "http://do/increment").text(), std::to_string(i));
  env_.restart();
  EXPECT_EQ(env_.fetch(s, "http://do/read").text(), "310");
  EXPECT_EQ(env_.fetch(stub("b"), "http://do/read").text(), "0") << "each object has its own database";
}

TEST_P(SqlApiTest, AKeyValueBackedClassHasNoSql) {
  durable::testing::EnvOptions o;
  o.storageEngine = GetParam();
  durable::testing::Env env(o);
  const auto& ns = env.exportClass<Db>("KV");
  env.runInDurableObject<Db>(ns.get(ns.idFromName("a")), [](Db&, State& state) -> Task<void> {
    try {
      state.storage().sql();
      ADD_FAILURE() << "sql() of a key-value class";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("new_sqlite_classes"), std::string::npos) << e.what();
    }
    EXPECT_THROW(state.storage().transactionSync([] {}), Error);
    co_return;
  });
}

INSTANTIATE_TEST_SUITE_P(Engines, SqlApiTest, ::testing::Values("sqlite", "memory"),
                         [](const auto& info) { return info.param; });

// The output gate: a reply after a SQL write waits until that write is durable.
TEST(SqlGateTest, AReplyWaitsForItsSqlWriteToBeDurable) {
  durable::testing::Env env(sqlOn("memory"));
  const auto& ns = env.exportClass<Db>("DB");
  const auto s = ns.get(ns.idFromName("gate"));
  EXPECT_EQ(env.fetch(s, "http://do/increment").text(), "1");
  env.holdCommits();
  auto reply = std::async(std::launch::async, [&] { return env.fetch(s, "http://do/increment").text(); });
  EXPECT_EQ(reply.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "the reply left before its write was durable";
  env.releaseCommits();
  EXPECT_EQ(reply.get(), "2");
}

// A commit that fails applies none of the turn: not its SQL, not its KV writes, not its alarm.
TEST(SqlFaultTest, AFailedCommitAppliesNoneOfATurnsSqlKeyValueAndAlarm) {
  auto options = sqlOn("sqlite");
  options.faultInjection = true;
  durable::testing::Env env(options);
  const auto& ns = env.exportClass<Db>("DB");
  const auto s = ns.get(ns.idFromName("f"));
  env.runInDurableObject<Db>(s, [](Db&, State& state) -> Task<void> {
    state.storage().sql().exec("CREATE TABLE t(v); INSERT INTO t VALUES (1)");
    co_await state.storage().put("k", 1);
  });
  env.failStorageWrites();
  EXPECT_THROW(env.runInDurableObject<Db>(s,
                                          [](Db&, State& state) -> Task<void> {
                                            state.storage().sql().exec("INSERT INTO t VALUES (2)");
                                            co_await state.storage().put("k", 2);
                                            co_await state.storage().setAlarm(durable::now() + 3'600'000);
                                          }),
               Error);
  env.healStorage();
  env.runInDurableObject<Db>(s, [](Db&, State& state) -> Task<void> {
    EXPECT_EQ(state.storage().sql().exec("SELECT count(*) AS n FROM t").one().get<std::int64_t>("n"), 1);
    EXPECT_EQ(co_await state.storage().get<int>("k"), 1);
    EXPECT_FALSE(co_await state.storage().getAlarm());
    state.storage().sql().exec("INSERT INTO t VALUES (3)");
  });
  env.restart();
  env.runInDurableObject<Db>(s, [](Db&, State& state) -> Task<void> {
    EXPECT_EQ(state.storage().sql().exec("SELECT sum(v) AS n FROM t").one().get<std::int64_t>("n"), 4);
    co_return;
  });
}

// The database size limit ([durable] sql_max_database_bytes).
TEST(SqlLimitTest, TheDatabaseStopsGrowingAtItsLimit) {
  auto options = sqlOn("sqlite");
  options.sqlMaxDatabaseBytes = 256 * 1024;
  durable::testing::Env env(options);
  const auto& ns = env.exportClass<Db>("DB");
  env.runInDurableObject<Db>(ns.get(ns.idFromName("full")), [](Db&, State& state) -> Task<void> {
    auto& sql = state.storage().sql();
    sql.exec("CREATE TABLE t(v)");
    std::string error;
    int stored = 0;
    for (int i = 0; i < 100 && error.empty(); ++i) {
      try {
        sql.exec("INSERT INTO t VALUES (?)", Bytes(std::string(16 * 1024, 'x')));
        ++stored;
      } catch (const Error& e) {
        error = e.what();
      }
    }
    EXPECT_NE(error.find("SQLITE_FULL"), std::string::npos) << error;
    EXPECT_GT(stored, 5);
    // SQLite ended the file's transaction; it catches up from the log once the rows before
    // the failure are durable, and refuses statements until then.
    co_await state.storage().sync();
    EXPECT_LE(sql.databaseSize(), 256u * 1024);
    EXPECT_EQ(sql.exec("SELECT count(*) AS n FROM t").one().get<std::int64_t>("n"), stored);
    co_return;
  });
}

// Key-value writes reach the database with their batch: one that does not fit under the size
// limit fails its turn's output (not its put(), which returned), and the object starts again
// from the last state that fitted.
TEST(SqlLimitTest, KeyValueWritesPastTheLimitFailTheirTurnAndKeepTheLastState) {
  auto options = sqlOn("sqlite");
  options.sqlMaxDatabaseBytes = 256 * 1024;
  durable::testing::Env env(options);
  const auto& ns = env.exportClass<Db>("DB");
  const auto stub = ns.get(ns.idFromName("full"));
  env.runInDurableObject<Db>(stub, [](Db&, State& state) -> Task<void> {
    state.storage().sql().exec("CREATE TABLE orders(n)");
    co_await state.storage().put("k", std::string(64 * 1024, 'a'));
  });
  std::string error;
  try {
    env.runInDurableObject<Db>(stub, [](Db&, State& state) -> Task<void> {
      state.storage().sql().exec("INSERT INTO orders VALUES (1)");
      state.storage().put("k", std::string(64 * 1024, 'b'));
      state.storage().put("big", std::string(300 * 1024, 'c'));
      co_await state.storage().sync();
    });
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("SQLITE_FULL"), std::string::npos) << error;
  // The batch failed whole: its SQL row went with its key-value writes.
  std::int64_t orders = -1;
  for (int attempt = 0; attempt < 100 && orders < 0; ++attempt) {
    try {
      env.runInDurableObject<Db>(stub, [&orders](Db&, State& state) -> Task<void> {
        EXPECT_EQ(co_await state.storage().get<std::string>("k"), std::string(64 * 1024, 'a'));
        EXPECT_FALSE(co_await state.storage().get("big"));
        orders = state.storage().sql().exec("SELECT count(*) AS n FROM orders").one().get<std::int64_t>("n");
        state.storage().put("k", "after");
      });
    } catch (const Error& e) {
      ASSERT_TRUE(e.retryable()) << e.what();  // the file catching up with the log
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  EXPECT_EQ(orders, 0);
  env.restart();
  env.runInDurableObject<Db>(stub, [](Db&, State& state) -> Task<void> {
    EXPECT_EQ(co_await state.storage().get<std::string>("k"), "after");
    EXPECT_FALSE(co_await state.storage().get("big"));
  });
}

}  // namespace

// Each live SQLite-backed object holds three descriptors (its file, WAL and index). Under a
// descriptor limit of 256, six hundred of them, each written once, all work: the shard evicts
// the idle ones early instead of running out (without the cap the 80th or so fails to open).
TEST(SqlDescriptorTest, ManySqlObjectsFitUnderALowDescriptorLimit) {
  rlimit before{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &before), 0);
  rlimit low = before;
  low.rlim_cur = 256;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  struct Restore {
    rlimit limit;
    ~Restore() { ::setrlimit(RLIMIT_NOFILE, &limit); }
  } restore{before};
  {
    durable::testing::Env env(sqlOn("sqlite"));
    const auto& ns = env.exportClass<Db>("DB");
    for (int i = 0; i < 600; ++i) {
      const auto s = ns.get(ns.idFromName("many-" + std::to_string(i)));
      ASSERT_EQ(env.fetch(s, "http://do/increment").text(), "1") << "object " << i;
    }
    EXPECT_LE(env.liveObjects(), 64u) << "idle SQLite-backed objects left memory early";
    for (int i : {0, 299, 599}) {
      EXPECT_EQ(env.fetch(ns.get(ns.idFromName("many-" + std::to_string(i))), "http://do/read").text(), "1");
    }
  }
}

// ---------------------------------------------------------------- point-in-time recovery

class PitrTest : public ::testing::TestWithParam<std::string> {
 protected:
  static durable::testing::EnvOptions options(const std::string& engine) {
    auto o = sqlOn(engine);
    o.manualClock = true;
    o.pitrSnapshotEvery = 4;
    o.pitrRetentionMs = 60'000;
    return o;
  }
  PitrTest() : env_(options(GetParam())) { ns_ = &env_.exportClass<Db>("DB"); }

  durable::Stub stub() { return ns_->get(ns_->idFromName("pitr")); }
  void in(const std::function<Task<void>(State&)>& fn) {
    env_.runInDurableObject<Db>(stub(), [fn](Db&, State& state) -> Task<void> { co_await fn(state); });
  }
  // One turn that inserts `v` (its own commit), then the clock moves a second.
  void insert(int v) {
    in([v](State& state) -> Task<void> {
      state.storage().sql().exec("CREATE TABLE IF NOT EXISTS t(v); INSERT INTO t VALUES (?)", v);
      co_return;
    });
    env_.advanceClock(std::chrono::seconds(1));
  }
  std::string values() {
    std::string out;
    in([&out](State& state) -> Task<void> {
      auto& sql = state.storage().sql();
      if (sql.exec("SELECT name FROM sqlite_schema WHERE name = 't'").empty()) co_return;
      for (const auto& row : sql.exec("SELECT v FROM t ORDER BY rowid")) out += std::to_string(row.get<int>("v")) + ",";
    });
    return out;
  }
  std::string bookmark(std::optional<std::int64_t> at = std::nullopt) {
    std::string out;
    in([&out, at](State& state) -> Task<void> {
      // Statements, not ?: : g++ 12 miscompiles co_await in a conditional expression.
      if (at) {
        out = co_await state.storage().getBookmarkForTime(*at);
      } else {
        out = co_await state.storage().getCurrentBookmark();
      }
    });
    return out;
  }
  // Arms the restore and ends the instance, as the Notes demo does; the undo bookmark.
  std::string restore(const std::string& to) {
    std::string undo;
    try {
      in([&undo, to](State& state) -> Task<void> {
        undo = co_await state.storage().onNextSessionRestoreBookmark(to);
        state.abort("restore");
      });
      ADD_FAILURE() << "abort() did not end the event";
    } catch (const Error& e) {
      EXPECT_TRUE(e.retryable()) << e.what();
    }
    return undo;
  }
  std::string refused(const std::string& to) {
    std::string why;
    try {
      in([to](State& state) -> Task<void> { co_await state.storage().onNextSessionRestoreBookmark(to); });
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      why = e.what();
    }
    return why;
  }

  durable::testing::Env env_;
  const durable::Namespace* ns_ = nullptr;
};

TEST_P(PitrTest, RestoreToABookmarkThenUndoItWithALaterOne) {
  const std::string empty = bookmark();
  insert(1);
  insert(2);
  const std::string two = bookmark();
  insert(3);
  const std::string three = bookmark();
  EXPECT_LT(empty, two);
  EXPECT_LT(two, three) << "bookmarks sort in time order";

  const std::string undo = restore(two);
  EXPECT_EQ(undo, three);
  EXPECT_EQ(values(), "1,2,");
  insert(4);
  EXPECT_EQ(values(), "1,2,4,");
  // The restore is history too: the bookmark from before it brings 3 back.
  restore(three);
  EXPECT_EQ(values(), "1,2,3,");
  restore(empty);
  EXPECT_EQ(values(), "");
  env_.restart();
  EXPECT_EQ(values(), "") << "a restore survives a restart";
  // Just before the last two restores: the state that had 4.
  restore(bookmark(durable::now() - 1));
  EXPECT_EQ(values(), "1,2,4,");
  restore(three);
  env_.restart();
  EXPECT_EQ(values(), "1,2,3,");
}

TEST_P(PitrTest, ABookmarkTakenAfterAPutNamesAStateThatHasIt) {
  std::string one;
  in([&one](State& state) -> Task<void> {
    state.storage().put("k", 1);
    one = co_await state.storage().getCurrentBookmark();
    state.storage().put("k", 2);
  });
  env_.advanceClock(std::chrono::seconds(1));
  restore(one);
  int k = 0;
  in([&k](State& state) -> Task<void> { k = (co_await state.storage().get<int>("k")).value_or(0); });
  EXPECT_EQ(k, 1);
}

TEST_P(PitrTest, BookmarkForTimeNamesTheStateThen) {
  const auto start = durable::now();
  insert(1);  // at start
  insert(2);  // at start + 1 s
  insert(3);  // at start + 2 s
  restore(bookmark(start + 1500));
  EXPECT_EQ(values(), "1,2,");
  restore(bookmark(start - 1));
  EXPECT_EQ(values(), "") << "before the first write: the empty database";
  insert(4);
  restore(bookmark(durable::now() + 3'600'000));
  EXPECT_EQ(values(), "4,") << "a time ahead is now";
  try {
    bookmark(durable::now() - 61'000);
    ADD_FAILURE() << "a time outside the retention";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("retention"), std::string::npos) << e.what();
  }
}

TEST_P(PitrTest, BadBookmarksAreRefusedAndChangeNothing) {
  insert(1);
  const std::string one = bookmark();
  EXPECT_NE(refused("").find("not a bookmark"), std::string::npos);
  EXPECT_NE(refused("not a bookmark at all, really!!").find("not a bookmark"), std::string::npos);
  EXPECT_NE(refused(std::string(one.size(), 'z')).find("not a bookmark"), std::string::npos);
  std::string ahead = one;
  ahead.back() = static_cast<char>(ahead.back() + 5);
  EXPECT_NE(refused(ahead).find("unknown bookmark"), std::string::npos);
  std::string wrongTime = one;
  wrongTime[15] = wrongTime[15] == '0' ? '1' : '0';
  EXPECT_NE(refused(wrongTime).find("bookmark"), std::string::npos);
  insert(2);
  env_.restart();
  EXPECT_EQ(values(), "1,2,") << "a refused restore is not armed";
}

TEST_P(PitrTest, SnapshotsBoundTheReplayAndOldHistoryIsPruned) {
  // The file commits every 16 entries and snapshots at a commit 4 or more entries after the
  // last snapshot: 40 entries make two.
  for (int i = 1; i <= 40; ++i) insert(i);
  const std::string nine = [&] {
    // The state after 9, by time: inserts ran at start + 0 .. 39 s.
    return bookmark(durable::now() - 31'500);
  }();
  if (GetParam() == "sqlite") {
    std::size_t snapshots = 0;
    for (const auto& f : std::filesystem::recursive_directory_iterator(env_.dir() / "sql")) {
      if (f.path().extension() == ".sqlite" && f.path().parent_path().extension() == ".snapshots") ++snapshots;
    }
    EXPECT_GE(snapshots, 2u) << "one every 4 entries";
  }
  restore(nine);
  EXPECT_EQ(values(), "1,2,3,4,5,6,7,8,9,");
  const std::string nineState = values();
  // Past the retention, old entries go (with the database, only a snapshot stands for them).
  env_.advanceClock(std::chrono::seconds(120));
  for (int i = 20; i < 30; ++i) insert(i);
  try {
    bookmark(durable::now() - 100'000);
    ADD_FAILURE() << "a time past the retention";
  } catch (const Error&) {
  }
  EXPECT_NE(refused(nine).find("retention"), std::string::npos);
  const std::string recent = bookmark(durable::now() - 4'500);
  restore(recent);
  EXPECT_EQ(values(), nineState + "20,21,22,23,24,25,");
}

TEST(PitrKeyValueTest, AKeyValueClassHasNoBookmarks) {
  durable::testing::Env env;
  const auto& ns = env.exportClass<Db>("KV");
  env.runInDurableObject<Db>(ns.get(ns.idFromName("a")), [](Db&, State& state) -> Task<void> {
    EXPECT_THROW(co_await state.storage().getCurrentBookmark(), Error);
  });
}

INSTANTIATE_TEST_SUITE_P(Engines, PitrTest, ::testing::Values("sqlite", "memory"),
                         [](const auto& info) { return info.param; });
