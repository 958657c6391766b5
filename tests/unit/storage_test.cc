// Storage through the real runtime: every behaviour is checked once through the object's
// cache (in the event that wrote it, or the next one) and once after env.restart(), when the
// object is evicted and every read comes from the partition's engine. StorageTest and
// StorageListTest run on every engine (storage/engine.h): the SQLite files `durable serve`
// keeps, the in-memory engine, whose commits complete on a later turn of the event loop, and
// PostgreSQL (cluster mode, a real server started by the test process).
//
// g++ 12: no braced temporaries of classes with std::string members (ListOptions, pairs,
// initializer lists of strings) inside a co_await expression. Options and key lists are built
// in named variables first.
#include <durable/error.h>
#include <durable/namespace.h>
#include <durable/object.h>
#include <durable/storage.h>
#include <durable/testing.h>
#include <durable/value.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "support/postgres_server.h"
#include "unit/test_support.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace {

using durable::Bytes;
using durable::Entries;
using durable::Error;
using durable::ErrorCode;
using durable::ListOptions;
using durable::State;
using durable::Storage;
using durable::Task;
using durable::Value;
namespace dt = durable::testing;

// An object with no behaviour of its own: the tests reach its storage directly.
class Box : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
};

using Body = std::function<Task<void>(Storage&)>;
using KV = std::vector<std::pair<std::string, Value>>;

std::vector<std::string> keysOf(const Entries& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.first);
  return out;
}

using durable::test_support::errorCodeOf;

// "sqlite", "memory" or "postgres"; with "-sql", the class is SQLite-backed: its keys live in its own SQL
// database (_cf_KV), and every test here holds for them too.
dt::EnvOptions onEngine(const std::string& engine) {
  dt::EnvOptions options;
  options.sqliteBacked = engine.ends_with("-sql");
  options.storageEngine = options.sqliteBacked ? engine.substr(0, engine.size() - 4) : engine;
  if (options.storageEngine == "postgres") options.postgresUrl = durable_test::PostgresServer::shared().createDatabase();
  return options;
}

class StorageTest : public ::testing::TestWithParam<std::string> {
 protected:
  StorageTest() : env_(onEngine(GetParam())) { ns_ = &env_.exportClass<Box>("BOX"); }

  // Runs `body` as one event of the object `name`, with its storage.
  void in(const Body& body, const std::string& name = "box") {
    env_.runInDurableObject<Box>(ns_->getByName(name),
                                 [&body](Box&, State& state) -> Task<void> { return body(state.storage()); });
  }

  // The whole storage of `name`, as a list() in a fresh event.
  Entries all(const std::string& name = "box") {
    Entries out;
    in([&](Storage& s) -> Task<void> { out = co_await s.list(); }, name);
    return out;
  }

  dt::Env env_;
  const durable::Namespace* ns_;
};

// ---------------------------------------------------------------- one key

TEST_P(StorageTest, GetPutRemoveOneKey) {
  in([](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.get("k"), std::nullopt);
    co_await s.put("k", "v1");
    EXPECT_EQ(co_await s.get<std::string>("k"), "v1");
    co_await s.put("k", "v2");  // overwrite
    EXPECT_EQ(co_await s.get<std::string>("k"), "v2");
    co_await s.put("gone", 1);
    EXPECT_TRUE(co_await s.remove("gone"));
    EXPECT_FALSE(co_await s.remove("gone"));
    EXPECT_FALSE(co_await s.remove("never"));
    EXPECT_EQ(co_await s.get("gone"), std::nullopt);
    co_await s.put("later", 7);
  });
  // The next event: served from the cache.
  in([](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.get<std::string>("k"), "v2");
    EXPECT_EQ(co_await s.get<std::int64_t>("later"), 7);
    EXPECT_EQ(co_await s.get("gone"), std::nullopt);
  });
  env_.restart();
  in([](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.get<std::string>("k"), "v2");
    EXPECT_EQ(co_await s.get<std::int64_t>("later"), 7);
    EXPECT_EQ(co_await s.get("gone"), std::nullopt);
    // remove() reports existence for a key only the database knows.
    EXPECT_TRUE(co_await s.remove("later"));
    EXPECT_FALSE(co_await s.remove("later"));
  });
  env_.restart();
  in([](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.get("later"), std::nullopt);
    EXPECT_FALSE(co_await s.remove("later"));
  });
}

namespace {
// Rewrites the stored value of `key` (for every object) straight in the partition file, with a
// separate connection: what only a read that goes to SQLite would see.
void overwriteOnDisk(const dt::Env& env, const std::string& key, const durable::Value& value) {
  sqlite3* db = nullptr;
  const auto file = env.dir() / "partitions" / "p0.sqlite";
  ASSERT_EQ(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "UPDATE kv SET value = ?1 WHERE key = ?2", -1, &s, nullptr), SQLITE_OK);
  const std::string encoded = value.encode();
  sqlite3_bind_blob(s, 1, encoded.data(), static_cast<int>(encoded.size()), SQLITE_TRANSIENT);
  sqlite3_bind_blob(s, 2, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
  EXPECT_EQ(sqlite3_step(s), SQLITE_DONE) << sqlite3_errmsg(db);
  EXPECT_EQ(sqlite3_changes(db), 1);
  sqlite3_finalize(s);
  sqlite3_close(db);
}
}  // namespace

TEST_P(StorageTest, RepeatedReadsComeFromTheObjectsCache) {
  if (GetParam() != "sqlite") GTEST_SKIP() << "changes the partition's SQLite file behind the object's back";
  in([](Storage& s) -> Task<void> { co_await s.put("k", "written"); });
  // Read once from SQLite after a restart, so the cache holds what the database held.
  env_.restart();
  in([](Storage& s) -> Task<void> { EXPECT_EQ(co_await s.get<std::string>("k"), "written"); });
  overwriteOnDisk(env_, "k", durable::Value("behind its back"));
  // The live object answers from memory: the change on disk is invisible to it...
  in([](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.get<std::string>("k"), "written");
    EXPECT_EQ(co_await s.get<std::string>("k"), "written");
  });
  // ...until it is evicted and reloads.
  env_.restart();
  in([](Storage& s) -> Task<void> { EXPECT_EQ(co_await s.get<std::string>("k"), "behind its back"); });
}

// ---------------------------------------------------------------- many keys

TEST_P(StorageTest, GetManyReturnsFoundKeysInOrderOnce) {
  in([](Storage& s) -> Task<void> {
    KV kv = {{"c", 3}, {"a", 1}, {"b", 2}};
    co_await s.put(kv);
  });
  auto check = [&] {
    in([](Storage& s) -> Task<void> {
      std::vector<std::string> keys = {"c", "missing", "a", "c", "b", "a", "zz"};
      auto r = co_await s.get(keys);
      EXPECT_EQ(keysOf(r), (std::vector<std::string>{"a", "b", "c"}));
      if (r.size() == 3) {
        EXPECT_EQ(r[0].second, Value(1));
        EXPECT_EQ(r[1].second, Value(2));
        EXPECT_EQ(r[2].second, Value(3));
      }
      std::vector<std::string> none = {"x", "y"};
      EXPECT_TRUE((co_await s.get(none)).empty());
      std::vector<std::string> empty;
      EXPECT_TRUE((co_await s.get(empty)).empty());
      // Exactly 128 keys is allowed.
      std::vector<std::string> many;
      for (int i = 0; i < 128; ++i) many.push_back(i % 2 ? "a" : "k" + std::to_string(i));
      {
        auto got = keysOf(co_await s.get(many));
        EXPECT_EQ(got, std::vector<std::string>({"a"}));
      }
    });
  };
  check();
  env_.restart();
  check();
}

TEST_P(StorageTest, PutManyIsAtomic) {
  if (GetParam().ends_with("-sql")) {
    GTEST_SKIP() << "128 KiB values are a key-value class's limit (SqliteBackedClassesTakeKeyAndValueUpTo2MiBTogether)";
  }
  in([](Storage& s) -> Task<void> {
    co_await s.put("keep", "old");
    KV bad = {{"keep", "new"}, {"a", 1}, {std::string(durable::kMaxKeyBytes + 1, 'x'), 2}, {"b", 3}};
    auto code = errorCodeOf([&] { s.put(bad); });
    EXPECT_EQ(code, ErrorCode::kInvalidArgument);
    KV tooBig = {{"keep", "new"}, {"c", 1}, {"big", std::string(durable::kDefaultMaxValueBytes + 1, 'v')}};
    EXPECT_EQ(errorCodeOf([&] { s.put(tooBig); }), ErrorCode::kInvalidArgument);
    // Nothing of either call was written.
    EXPECT_EQ(co_await s.get<std::string>("keep"), "old");
    EXPECT_EQ(co_await s.get("a"), std::nullopt);
    EXPECT_EQ(co_await s.get("b"), std::nullopt);
    EXPECT_EQ(co_await s.get("c"), std::nullopt);
    EXPECT_EQ(co_await s.get("big"), std::nullopt);
    KV good = {{"keep", "new"}, {"a", 1}, {"b", 2}};
    co_await s.put(good);
  });
  auto expected = std::vector<std::string>{"a", "b", "keep"};
  EXPECT_EQ(keysOf(all()), expected);
  env_.restart();
  auto entries = all();
  EXPECT_EQ(keysOf(entries), expected);
  in([](Storage& s) -> Task<void> { EXPECT_EQ(co_await s.get<std::string>("keep"), "new"); });
}

TEST_P(StorageTest, RemoveManyReturnsCount) {
  in([](Storage& s) -> Task<void> {
    KV kv = {{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}};
    co_await s.put(kv);
    std::vector<std::string> keys = {"a", "missing", "b", "a"};
    EXPECT_EQ(co_await s.remove(keys), 2u);
    {
      auto got = keysOf(co_await s.list());
      EXPECT_EQ(got, std::vector<std::string>({"c", "d"}));
    }
  });
  EXPECT_EQ(keysOf(all()), (std::vector<std::string>{"c", "d"}));
  env_.restart();
  EXPECT_EQ(keysOf(all()), (std::vector<std::string>{"c", "d"}));
  in([](Storage& s) -> Task<void> {
    // Existence known only to the database.
    std::vector<std::string> keys = {"c", "a", "d", "zz"};
    EXPECT_EQ(co_await s.remove(keys), 2u);
    std::vector<std::string> none;
    EXPECT_EQ(co_await s.remove(none), 0u);
  });
  env_.restart();
  EXPECT_TRUE(all().empty());
}

// ---------------------------------------------------------------- list

// Keys chosen for byte order: upper case before lower case, a prefix before its extensions,
// an embedded NUL, and a high byte last.
const std::vector<std::string>& orderedKeys() {
  static const std::vector<std::string> keys = {"", "B", "a", std::string("a\0b", 3), "aa", "ab", "b", "\xf4\x8f\xbf\xbf"};
  return keys;
}

TEST_P(StorageTest, ListWithoutOptionsIsInByteOrder) {
  in([](Storage& s) -> Task<void> {
    // Written out of order.
    std::vector<std::string> shuffled = {"b", "\xf4\x8f\xbf\xbf", "aa", "", std::string("a\0b", 3), "B", "ab", "a"};
    for (std::size_t i = 0; i < shuffled.size(); ++i) co_await s.put(shuffled[i], static_cast<std::int64_t>(i));
    auto r = co_await s.list();
    EXPECT_EQ(keysOf(r), orderedKeys());
  });
  EXPECT_EQ(keysOf(all()), orderedKeys());
  env_.restart();
  auto r = all();
  EXPECT_EQ(keysOf(r), orderedKeys());
  // Values travel with their keys: "a\0b" was the 5th written.
  for (const auto& [k, v] : r) {
    if (k == std::string("a\0b", 3)) EXPECT_EQ(v, Value(4));
    if (k.empty()) EXPECT_EQ(v, Value(3));
  }
  in([](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.get<std::int64_t>(std::string("a\0b", 3)), 4);
    EXPECT_EQ(co_await s.get<std::int64_t>(""), 3);
    EXPECT_EQ(co_await s.get<std::int64_t>("a"), 7);
  });
}

// Every list() option, checked against the cache and then against the database.
class StorageListTest : public StorageTest {
 protected:
  void SetUp() override {
    in([](Storage& s) -> Task<void> {
      for (const auto& k : orderedKeys()) co_await s.put(k, k);
      co_return;
    });
  }

  std::vector<std::string> keys(const ListOptions& o) {
    std::vector<std::string> out;
    in([&](Storage& s) -> Task<void> {
      auto r = co_await s.list(o);
      for (const auto& [k, v] : r) {
        EXPECT_EQ(v, Value(k));
        out.push_back(k);
      }
    });
    return out;
  }

  void checkAll() {
    const std::string nul("a\0b", 3);
    using V = std::vector<std::string>;
    ListOptions o;

    o = {};
    o.start = "a";
    EXPECT_EQ(keys(o), (V{"a", nul, "aa", "ab", "b", "\xf4\x8f\xbf\xbf"}));
    o.start = "aa0";  // between keys
    EXPECT_EQ(keys(o), (V{"ab", "b", "\xf4\x8f\xbf\xbf"}));

    o = {};
    o.startAfter = "a";
    EXPECT_EQ(keys(o), (V{nul, "aa", "ab", "b", "\xf4\x8f\xbf\xbf"}));
    o.startAfter = "";
    EXPECT_EQ(keys(o), (V{"B", "a", nul, "aa", "ab", "b", "\xf4\x8f\xbf\xbf"}));

    o = {};
    o.end = "aa";
    EXPECT_EQ(keys(o), (V{"", "B", "a", nul}));
    o.end = "";
    EXPECT_EQ(keys(o), V{});

    o = {};
    o.start = "a";
    o.end = "b";
    EXPECT_EQ(keys(o), (V{"a", nul, "aa", "ab"}));
    o.end = "a";  // empty range
    EXPECT_EQ(keys(o), V{});
    o.end = "0";  // inverted range
    EXPECT_EQ(keys(o), V{});

    o = {};
    o.prefix = "a";
    EXPECT_EQ(keys(o), (V{"a", nul, "aa", "ab"}));
    o.prefix = "";  // matches everything
    EXPECT_EQ(keys(o), orderedKeys());
    o.prefix = "\xf4\x8f";  // a prefix of U+10FFFF
    EXPECT_EQ(keys(o), (V{"\xf4\x8f\xbf\xbf"}));
    o.prefix = "z";
    EXPECT_EQ(keys(o), V{});
    o.prefix = nul;
    EXPECT_EQ(keys(o), (V{nul}));

    o = {};
    o.reverse = true;
    V rev(orderedKeys().rbegin(), orderedKeys().rend());
    EXPECT_EQ(keys(o), rev);

    o = {};
    o.limit = 3;
    EXPECT_EQ(keys(o), (V{"", "B", "a"}));
    o.limit = 0;
    EXPECT_EQ(keys(o), V{});
    o.limit = 100;
    EXPECT_EQ(keys(o), orderedKeys());

    // reverse + limit: the LAST n keys, descending.
    o = {};
    o.reverse = true;
    o.limit = 3;
    EXPECT_EQ(keys(o), (V{"\xf4\x8f\xbf\xbf", "b", "ab"}));

    // prefix + start: start inside the prefix range narrows it; before it, it does nothing.
    o = {};
    o.prefix = "a";
    o.start = "aa";
    EXPECT_EQ(keys(o), (V{"aa", "ab"}));
    o.start = "0";
    EXPECT_EQ(keys(o), (V{"a", nul, "aa", "ab"}));
    o.start = "b";  // after the prefix range
    EXPECT_EQ(keys(o), V{});

    // prefix + startAfter + end + reverse + limit.
    o = {};
    o.prefix = "a";
    o.startAfter = "a";
    o.end = "ab";
    EXPECT_EQ(keys(o), (V{nul, "aa"}));
    o.reverse = true;
    EXPECT_EQ(keys(o), (V{"aa", nul}));
    o.limit = 1;
    EXPECT_EQ(keys(o), (V{"aa"}));

    // startAfter the prefix itself excludes exactly the prefix key.
    o = {};
    o.prefix = "a";
    o.startAfter = "a";
    EXPECT_EQ(keys(o), (V{nul, "aa", "ab"}));

    // start + end + reverse + limit.
    o = {};
    o.start = "B";
    o.end = "b";
    o.reverse = true;
    o.limit = 2;
    EXPECT_EQ(keys(o), (V{"ab", "aa"}));

    // start and startAfter together are rejected.
    o = {};
    o.start = "a";
    o.startAfter = "a";
    std::optional<ErrorCode> code;
    in([&](Storage& s) -> Task<void> {
      code = errorCodeOf([&] { (void)s.list(o); });
      co_return;
    });
    EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  }
};

TEST_P(StorageListTest, Options) {
  checkAll();
  env_.restart();
  checkAll();
}

// Committed rows merged with writes of the same event that are not yet committed.
TEST_P(StorageTest, ListMergesPendingWritesWithCommittedRows) {
  in([](Storage& s) -> Task<void> {
    KV kv = {{"a", 1}, {"c", 3}, {"e", 5}, {"g", 7}, {"i", 9}};
    co_await s.put(kv);
  });
  env_.restart();  // the cache is empty: a, c, e, g, i exist only in the database
  using V = std::vector<std::string>;
  V fwd, fwd3, rev, rev3, ranged, revRanged, afterDelete;
  Entries values;
  in([&](Storage& s) -> Task<void> {
    co_await s.put("b", 20);              // new, between rows
    co_await s.put("c", 30);              // overwrites a row
    EXPECT_TRUE(co_await s.remove("e"));  // deletes a row
    co_await s.put("j", 100);             // after the last row
    co_await s.put("0", 0);               // before the first row
    co_await s.put("x", 1);
    EXPECT_TRUE(co_await s.remove("x"));  // written and deleted: never in the database
    std::vector<std::string> gone = {"g"};
    EXPECT_EQ(co_await s.remove(gone), 1u);
    ListOptions o;
    values = co_await s.list(o);
    fwd = keysOf(values);
    o.limit = 3;
    fwd3 = keysOf(co_await s.list(o));
    ListOptions r;
    r.reverse = true;
    rev = keysOf(co_await s.list(r));
    r.limit = 3;
    rev3 = keysOf(co_await s.list(r));
    ListOptions range;
    range.start = "b";
    range.end = "i";
    ranged = keysOf(co_await s.list(range));
    range.reverse = true;
    range.limit = 2;
    revRanged = keysOf(co_await s.list(range));
    // A deleted database row at the limit's edge must not count toward the limit.
    co_await s.remove("a");
    ListOptions two;
    two.limit = 2;
    afterDelete = keysOf(co_await s.list(two));
  });
  EXPECT_EQ(fwd, (V{"0", "a", "b", "c", "i", "j"}));
  EXPECT_EQ(fwd3, (V{"0", "a", "b"}));
  EXPECT_EQ(rev, (V{"j", "i", "c", "b", "a", "0"}));
  EXPECT_EQ(rev3, (V{"j", "i", "c"}));
  EXPECT_EQ(ranged, (V{"b", "c"}));
  EXPECT_EQ(revRanged, (V{"c", "b"}));
  EXPECT_EQ(afterDelete, (V{"0", "b"}));
  ASSERT_EQ(values.size(), 6u);
  EXPECT_EQ(values[1].second, Value(1));   // a: from the database
  EXPECT_EQ(values[2].second, Value(20));  // b: pending
  EXPECT_EQ(values[3].second, Value(30));  // c: pending over the database's 3
  EXPECT_EQ(values[4].second, Value(9));   // i: from the database
  env_.restart();
  auto after = all();
  EXPECT_EQ(keysOf(after), (V{"0", "b", "c", "i", "j"}));
  ASSERT_EQ(after.size(), 5u);
  EXPECT_EQ(after[2].second, Value(30));
}

// ---------------------------------------------------------------- deleteAll

TEST_P(StorageTest, DeleteAll) {
  in([](Storage& s) -> Task<void> {
    KV kv = {{"a", 1}, {"b", 2}, {"c", 3}};
    co_await s.put(kv);
  });
  env_.restart();  // rows only in the database
  in([](Storage& s) -> Task<void> {
    co_await s.put("d", 4);  // pending when deleteAll comes
    co_await s.deleteAll();
    EXPECT_TRUE((co_await s.list()).empty());
    EXPECT_EQ(co_await s.get("a"), std::nullopt);
    EXPECT_EQ(co_await s.get("d"), std::nullopt);
    EXPECT_FALSE(co_await s.remove("b"));
    ListOptions r;
    r.reverse = true;
    EXPECT_TRUE((co_await s.list(r)).empty());
    co_await s.put("z", 26);  // written after deleteAll in the same event
    {
      auto got = keysOf(co_await s.list());
      EXPECT_EQ(got, std::vector<std::string>({"z"}));
    }
  });
  EXPECT_EQ(keysOf(all()), (std::vector<std::string>{"z"}));
  env_.restart();
  EXPECT_EQ(keysOf(all()), (std::vector<std::string>{"z"}));
  in([](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.get("a"), std::nullopt);
    EXPECT_EQ(co_await s.get<std::int64_t>("z"), 26);
    co_await s.deleteAll();
  });
  env_.restart();
  EXPECT_TRUE(all().empty());
}

// ---------------------------------------------------------------- transactions

TEST_P(StorageTest, TransactionCommitAppliesAllWrites) {
  in([](Storage& s) -> Task<void> {
    KV kv = {{"old1", 1}, {"old2", 2}};
    co_await s.put(kv);
  });
  env_.restart();
  in([](Storage& s) -> Task<void> {
    std::function<Task<void>(Storage&)> body = [](Storage& txn) -> Task<void> {
      co_await txn.put("new", "n");
      EXPECT_TRUE(co_await txn.remove("old1"));
      co_await txn.put("old2", 22);
      // Reads inside see the transaction's own writes and deletes.
      EXPECT_EQ(co_await txn.get<std::string>("new"), "n");
      EXPECT_EQ(co_await txn.get("old1"), std::nullopt);
      EXPECT_EQ(co_await txn.get<std::int64_t>("old2"), 22);
      {
        auto got = keysOf(co_await txn.list());
        EXPECT_EQ(got, std::vector<std::string>({"new", "old2"}));
      }
      ListOptions r;
      r.reverse = true;
      {
        auto got = keysOf(co_await txn.list(r));
        EXPECT_EQ(got, std::vector<std::string>({"old2", "new"}));
      }
      std::vector<std::string> keys = {"old1", "old2", "new"};
      {
        auto got = keysOf(co_await txn.get(keys));
        EXPECT_EQ(got, std::vector<std::string>({"new", "old2"}));
      }
    };
    co_await s.transaction(body);
    // Applied once it returns.
    EXPECT_EQ(co_await s.get<std::string>("new"), "n");
    EXPECT_EQ(co_await s.get("old1"), std::nullopt);
  });
  EXPECT_EQ(keysOf(all()), (std::vector<std::string>{"new", "old2"}));
  env_.restart();
  auto r = all();
  EXPECT_EQ(keysOf(r), (std::vector<std::string>{"new", "old2"}));
  if (r.size() == 2) EXPECT_EQ(r[1].second, Value(22));
}

TEST_P(StorageTest, TransactionThatThrowsAppliesNothing) {
  in([](Storage& s) -> Task<void> {
    KV kv = {{"a", 1}, {"b", 2}};
    co_await s.put(kv);
  });
  env_.restart();
  bool threw = false;
  in([&](Storage& s) -> Task<void> {
    std::function<Task<void>(Storage&)> body = [](Storage& txn) -> Task<void> {
      co_await txn.put("a", 100);
      co_await txn.remove("b");
      co_await txn.put("c", 3);
      co_await txn.setAlarm(12345);
      EXPECT_EQ(co_await txn.get<std::int64_t>("a"), 100);
      throw std::runtime_error("abort");
    };
    try {
      co_await s.transaction(body);
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()) == "abort";
    }
    EXPECT_EQ(co_await s.get<std::int64_t>("a"), 1);
    EXPECT_EQ(co_await s.get<std::int64_t>("b"), 2);
    EXPECT_EQ(co_await s.get("c"), std::nullopt);
    EXPECT_EQ(co_await s.getAlarm(), std::nullopt);
  });
  EXPECT_TRUE(threw);
  env_.restart();
  auto r = all();
  EXPECT_EQ(keysOf(r), (std::vector<std::string>{"a", "b"}));
  if (r.size() == 2) EXPECT_EQ(r[0].second, Value(1));
  in([](Storage& s) -> Task<void> { EXPECT_EQ(co_await s.getAlarm(), std::nullopt); });
}

TEST_P(StorageTest, TransactionDeleteAllThenPut) {
  in([](Storage& s) -> Task<void> {
    KV kv = {{"a", 1}, {"b", 2}, {"c", 3}};
    co_await s.put(kv);
  });
  env_.restart();
  in([](Storage& s) -> Task<void> {
    std::function<Task<void>(Storage&)> body = [](Storage& txn) -> Task<void> {
      co_await txn.deleteAll();
      EXPECT_EQ(co_await txn.get("a"), std::nullopt);
      EXPECT_TRUE((co_await txn.list()).empty());
      co_await txn.put("b", 20);
      co_await txn.put("z", 26);
      EXPECT_EQ(co_await txn.get<std::int64_t>("b"), 20);
      EXPECT_EQ(co_await txn.get("c"), std::nullopt);
      {
        auto got = keysOf(co_await txn.list());
        EXPECT_EQ(got, std::vector<std::string>({"b", "z"}));
      }
    };
    co_await s.transaction(body);
    {
      auto got = keysOf(co_await s.list());
      EXPECT_EQ(got, std::vector<std::string>({"b", "z"}));
    }
  });
  EXPECT_EQ(keysOf(all()), (std::vector<std::string>{"b", "z"}));
  env_.restart();
  auto r = all();
  EXPECT_EQ(keysOf(r), (std::vector<std::string>{"b", "z"}));
  if (r.size() == 2) EXPECT_EQ(r[0].second, Value(20));
}

TEST_P(StorageTest, NestedTransactionThrows) {
  std::optional<ErrorCode> code;
  bool outerThrew = false;
  in([&](Storage& s) -> Task<void> {
    std::function<Task<void>(Storage&)> inner = [](Storage& t) -> Task<void> { co_await t.put("inner", 1); };
    std::function<Task<void>(Storage&)> outer = [&](Storage& txn) -> Task<void> {
      co_await txn.put("outer", 1);
      try {
        co_await txn.transaction(inner);
      } catch (const Error& e) {
        code = e.code();
        throw;
      }
    };
    try {
      co_await s.transaction(outer);
    } catch (const Error&) {
      outerThrew = true;
    }
    EXPECT_EQ(co_await s.get("outer"), std::nullopt);
    EXPECT_EQ(co_await s.get("inner"), std::nullopt);
  });
  EXPECT_TRUE(outerThrew);
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  env_.restart();
  EXPECT_TRUE(all().empty());
}

// ---------------------------------------------------------------- limits

TEST_P(StorageTest, KeySizeLimit) {
  const std::string ok(durable::kMaxKeyBytes, 'k');
  const std::string tooLong(durable::kMaxKeyBytes + 1, 'k');
  ASSERT_EQ(ok.size(), 2048u);
  in([&](Storage& s) -> Task<void> {
    co_await s.put(ok, "fits");
    EXPECT_EQ(co_await s.get<std::string>(ok), "fits");
    EXPECT_EQ(errorCodeOf([&] { s.put(tooLong, "no"); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(errorCodeOf([&] { (void)s.get(tooLong); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(errorCodeOf([&] { (void)s.remove(tooLong); }), ErrorCode::kInvalidArgument);
    std::vector<std::string> keys = {"a", tooLong};
    EXPECT_EQ(errorCodeOf([&] { (void)s.get(keys); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(errorCodeOf([&] { (void)s.remove(keys); }), ErrorCode::kInvalidArgument);
  });
  env_.restart();
  in([&](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.get<std::string>(ok), "fits");
    {
      auto got = keysOf(co_await s.list());
      EXPECT_EQ(got, std::vector<std::string>({ok}));
    }
  });
}

TEST_P(StorageTest, ValueSizeLimit) {
  if (GetParam().ends_with("-sql")) {
    GTEST_SKIP() << "128 KiB values are a key-value class's limit (SqliteBackedClassesTakeKeyAndValueUpTo2MiBTogether)";
  }
  const std::size_t max = 128 * 1024;
  ASSERT_EQ(durable::kDefaultMaxValueBytes, max);
  in([&](Storage& s) -> Task<void> {
    const Bytes zeros{std::string(max, '\0')};
    co_await s.put("bytes", zeros);
    co_await s.put("text", std::string(max, 't'));
    EXPECT_EQ(errorCodeOf([&] { s.put("bytes+1", Bytes{std::string(max + 1, '\0')}); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(errorCodeOf([&] { s.put("text+1", std::string(max + 1, 't')); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(co_await s.get("bytes+1"), std::nullopt);
    EXPECT_EQ(co_await s.get("text+1"), std::nullopt);
    auto b = co_await s.get<Bytes>("bytes");
    EXPECT_EQ(b ? b->data.size() : 0u, max);
  });
  env_.restart();
  in([&](Storage& s) -> Task<void> {
    auto b = co_await s.get<Bytes>("bytes");
    auto t = co_await s.get<std::string>("text");
    EXPECT_TRUE(b && *b == Bytes{std::string(max, '\0')});
    EXPECT_TRUE(t && *t == std::string(max, 't'));
    {
      auto got = keysOf(co_await s.list());
      EXPECT_EQ(got, std::vector<std::string>({"bytes", "text"}));
    }
  });
}

TEST(StorageLimitTest, LargerMaxValueBytes) {
  dt::EnvOptions options;
  options.maxValueBytes = 2 * 1024 * 1024;
  dt::Env env(options);
  auto& ns = env.exportClass<Box>("BOX");
  auto stub = ns.getByName("big");
  const std::string mib(1024 * 1024, 'm');
  env.runInDurableObject<Box>(stub, [&](Box&, State& state) -> Task<void> {
    auto& s = state.storage();
    co_await s.put("one-mib", mib);
    const Bytes twoMib{std::string(2 * 1024 * 1024, 'x')};
    co_await s.put("two-mib", twoMib);
    EXPECT_EQ(errorCodeOf([&] { s.put("over", Bytes{std::string(2 * 1024 * 1024 + 1, 'x')}); }),
              ErrorCode::kInvalidArgument);
  });
  env.restart();
  env.runInDurableObject<Box>(stub, [&](Box&, State& state) -> Task<void> {
    auto v = co_await state.storage().get<std::string>("one-mib");
    EXPECT_TRUE(v && *v == mib);
    auto b = co_await state.storage().get<Bytes>("two-mib");
    EXPECT_EQ(b ? b->data.size() : 0u, 2u * 1024 * 1024);
    EXPECT_EQ(co_await state.storage().get("over"), std::nullopt);
  });
}

TEST(StorageLimitTest, SqliteBackedClassesTakeKeyAndValueUpTo2MiBTogether) {
  dt::EnvOptions options;
  options.sqliteBacked = true;  // max_value_bytes does not apply to them
  dt::Env env(options);
  auto& ns = env.exportClass<Box>("BOX");
  auto stub = ns.getByName("sqlite");
  const std::size_t limit = durable::kMaxSqliteKeyValueBytes;
  const std::string key(1000, 'k');
  env.runInDurableObject<Box>(stub, [&](Box&, State& state) -> Task<void> {
    auto& s = state.storage();
    const Bytes fits{std::string(limit - key.size(), 'v')};
    co_await s.put(key, fits);
    const Bytes over{std::string(limit - key.size() + 1, 'v')};
    EXPECT_EQ(errorCodeOf([&] { s.put(key + "2", over); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(errorCodeOf([&] { s.put(std::string(durable::kMaxKeyBytes + 1, 'k'), 1); }), ErrorCode::kInvalidArgument);
  });
  env.restart();
  env.runInDurableObject<Box>(stub, [&](Box&, State& state) -> Task<void> {
    auto b = co_await state.storage().get<Bytes>(key);
    EXPECT_EQ(b ? b->data.size() : 0u, limit - key.size());
    EXPECT_EQ(co_await state.storage().get(key + "2"), std::nullopt);
  });
}

TEST_P(StorageTest, AtMost128KeysPerCall) {
  std::vector<std::string> keys129, keys128;
  KV entries129, entries128;
  for (int i = 0; i < 129; ++i) {
    keys129.push_back("k" + std::to_string(i));
    entries129.emplace_back(keys129.back(), i);
  }
  keys128.assign(keys129.begin(), keys129.begin() + 128);
  entries128.assign(entries129.begin(), entries129.begin() + 128);
  in([&](Storage& s) -> Task<void> {
    EXPECT_EQ(errorCodeOf([&] { s.put(entries129); }), ErrorCode::kInvalidArgument);
    EXPECT_TRUE((co_await s.list()).empty());  // nothing written
    co_await s.put(entries128);
    EXPECT_EQ(errorCodeOf([&] { (void)s.get(keys129); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ((co_await s.get(keys128)).size(), 128u);
    EXPECT_EQ(errorCodeOf([&] { (void)s.remove(keys129); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ((co_await s.list()).size(), 128u);  // nothing removed
  });
  env_.restart();
  in([&](Storage& s) -> Task<void> {
    EXPECT_EQ((co_await s.list()).size(), 128u);
    EXPECT_EQ(errorCodeOf([&] { (void)s.remove(keys129); }), ErrorCode::kInvalidArgument);
    EXPECT_EQ(co_await s.remove(keys128), 128u);
  });
  env_.restart();
  EXPECT_TRUE(all().empty());
}

// ---------------------------------------------------------------- values

TEST_P(StorageTest, EveryValueTypeRoundTrips) {
  const std::int64_t lo = std::numeric_limits<std::int64_t>::min();
  const std::int64_t hi = std::numeric_limits<std::int64_t>::max();
  const std::string unicode = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xf0\x9f\x98\x80";
  const Bytes bytes{std::string("\0\x01\xff\0z", 5)};
  const Bytes noBytes;
  const boost::json::array array{1, "two", nullptr, true, 2.5, boost::json::array{}};
  const boost::json::object object{{"a", 1}, {"nested", boost::json::object{{"b", "c"}}}, {"list", array}};
  const std::vector<std::int64_t> vec{1, -2, 3, hi};

  auto check = [&](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.get("null"), Value(nullptr));
    EXPECT_EQ((co_await s.get("null"))->type(), Value::Type::kNull);
    EXPECT_EQ(co_await s.get<bool>("true"), true);
    EXPECT_EQ(co_await s.get<bool>("false"), false);
    EXPECT_EQ(co_await s.get<std::int64_t>("min"), lo);
    EXPECT_EQ(co_await s.get<std::int64_t>("max"), hi);
    EXPECT_EQ((co_await s.get("max"))->type(), Value::Type::kInt);
    auto negZero = co_await s.get<double>("-0");
    EXPECT_TRUE(negZero && *negZero == 0.0 && std::signbit(*negZero));
    EXPECT_EQ((co_await s.get("-0"))->type(), Value::Type::kDouble);
    EXPECT_EQ(co_await s.get<double>("1e300"), 1e300);
    EXPECT_EQ(co_await s.get<double>("pi"), 3.141592653589793);
    EXPECT_EQ(co_await s.get<std::string>("empty"), std::string());
    EXPECT_EQ((co_await s.get("empty"))->type(), Value::Type::kString);
    EXPECT_EQ(co_await s.get<std::string>("unicode"), unicode);
    EXPECT_EQ(co_await s.get<Bytes>("bytes"), bytes);
    EXPECT_EQ((co_await s.get("bytes"))->type(), Value::Type::kBytes);
    EXPECT_EQ(co_await s.get<Bytes>("no-bytes"), noBytes);
    EXPECT_EQ(co_await s.get<durable::Json>("array"), durable::Json(array));
    EXPECT_EQ((co_await s.get("array"))->type(), Value::Type::kJson);
    EXPECT_EQ(co_await s.get<durable::Json>("object"), durable::Json(object));
    EXPECT_EQ(co_await s.get<std::vector<std::int64_t>>("vector"), vec);
  };

  in([&](Storage& s) -> Task<void> {
    co_await s.put("null", nullptr);
    co_await s.put("true", true);
    co_await s.put("false", false);
    co_await s.put("min", lo);
    co_await s.put("max", hi);
    co_await s.put("-0", -0.0);
    co_await s.put("1e300", 1e300);
    co_await s.put("pi", 3.141592653589793);
    co_await s.put("empty", std::string());
    co_await s.put("unicode", unicode);
    co_await s.put("bytes", bytes);
    co_await s.put("no-bytes", noBytes);
    co_await s.put("array", array);
    co_await s.put("object", object);
    co_await s.put("vector", vec);
    co_await check(s);  // the cache
  });
  in([&](Storage& s) -> Task<void> { co_await check(s); });
  env_.restart();
  in([&](Storage& s) -> Task<void> { co_await check(s); });  // the database
  // And list() decodes them the same way.
  auto r = all();
  EXPECT_EQ(r.size(), 15u);
  for (const auto& [k, v] : r) {
    if (k == "bytes") EXPECT_EQ(v, Value(bytes));
    if (k == "unicode") EXPECT_EQ(v, Value(unicode));
    if (k == "min") EXPECT_EQ(v, Value(lo));
  }
}

// ---------------------------------------------------------------- sync

TEST_P(StorageTest, SyncCompletes) {
  bool synced = false;
  in([&](Storage& s) -> Task<void> {
    co_await s.sync();  // nothing written: ready at once
    co_await s.put("a", 1);
    co_await s.sync();  // waits for the commit
    co_await s.put("b", 2);
    co_await s.put("c", 3);
    co_await s.sync();
    synced = true;
  });
  EXPECT_TRUE(synced);
  env_.restart();
  EXPECT_EQ(keysOf(all()), (std::vector<std::string>{"a", "b", "c"}));
}

// ---------------------------------------------------------------- alarms (storage only)

TEST_P(StorageTest, AlarmTimePersists) {
  const std::int64_t t1 = 4'102'444'800'000;  // 2100-01-01
  const std::int64_t t2 = t1 + 60'000;
  in([&](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.getAlarm(), std::nullopt);
    co_await s.setAlarm(t1);
    EXPECT_EQ(co_await s.getAlarm(), t1);
  });
  in([&](Storage& s) -> Task<void> { EXPECT_EQ(co_await s.getAlarm(), t1); });
  env_.restart();
  in([&](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.getAlarm(), t1);
    co_await s.setAlarm(std::chrono::system_clock::time_point(std::chrono::milliseconds(t2)));
    EXPECT_EQ(co_await s.getAlarm(), t2);
  });
  env_.restart();
  in([&](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.getAlarm(), t2);
    co_await s.deleteAlarm();
    EXPECT_EQ(co_await s.getAlarm(), std::nullopt);
  });
  env_.restart();
  in([&](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.getAlarm(), std::nullopt);
    co_await s.setAlarm(t1);
    // A transaction's alarm applies with it.
    std::function<Task<void>(Storage&)> body = [&](Storage& txn) -> Task<void> {
      co_await txn.setAlarm(t2);
      EXPECT_EQ(co_await txn.getAlarm(), t2);
    };
    co_await s.transaction(body);
    EXPECT_EQ(co_await s.getAlarm(), t2);
  });
  env_.restart();
  in([&](Storage& s) -> Task<void> { EXPECT_EQ(co_await s.getAlarm(), t2); });
}

TEST_P(StorageTest, DeleteAllClearsAlarm) {
  const std::int64_t t = 4'102'444'800'000;
  in([&](Storage& s) -> Task<void> {
    co_await s.setAlarm(t);
    co_await s.put("k", 1);
  });
  env_.restart();
  in([&](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.getAlarm(), t);
    co_await s.deleteAll();
    EXPECT_EQ(co_await s.getAlarm(), std::nullopt);
  });
  env_.restart();
  in([&](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.getAlarm(), std::nullopt);
    EXPECT_EQ(co_await s.get("k"), std::nullopt);
    // Inside a transaction: deleteAll clears the alarm, a later setAlarm in it sets it again.
    co_await s.setAlarm(t);
    std::function<Task<void>(Storage&)> clear = [](Storage& txn) -> Task<void> {
      co_await txn.deleteAll();
      EXPECT_EQ(co_await txn.getAlarm(), std::nullopt);
    };
    co_await s.transaction(clear);
    EXPECT_EQ(co_await s.getAlarm(), std::nullopt);
    std::function<Task<void>(Storage&)> clearThenSet = [&](Storage& txn) -> Task<void> {
      co_await txn.deleteAll();
      co_await txn.setAlarm(t + 1);
      EXPECT_EQ(co_await txn.getAlarm(), t + 1);
    };
    co_await s.transaction(clearThenSet);
    EXPECT_EQ(co_await s.getAlarm(), t + 1);
  });
  env_.restart();
  in([&](Storage& s) -> Task<void> { EXPECT_EQ(co_await s.getAlarm(), t + 1); });
}

}  // namespace

namespace {
class KeyProbe : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
};
}  // namespace

// Keys are text, as in JavaScript: bytes that are not UTF-8 are refused and change nothing.
TEST(StorageKeys, InvalidUtf8IsRefused) {
  durable::testing::Env env;
  const auto& ns = env.exportClass<KeyProbe>("KEYS");
  std::vector<std::string> refused;
  // Stray byte, truncated sequence, UTF-16 surrogate, overlong '/'.
  const std::vector<std::string> bad{"\xff", "a\xc3", "\xed\xa0\x80", "\xc0\xaf"};
  env.runInDurableObject<KeyProbe>(ns.getByName("k"), [&](KeyProbe&, durable::State& state) -> durable::Task<void> {
    for (const auto& key : bad) {
      try {
        co_await state.storage().put(key, 1);
      } catch (const durable::Error& e) {
        if (e.code() == durable::ErrorCode::kInvalidArgument) refused.push_back(key);
      }
    }
    co_await state.storage().put("\xc3\xbf", 1);  // ÿ, valid
    const auto all = co_await state.storage().list();
    EXPECT_EQ(all.size(), 1u);
  });
  EXPECT_EQ(refused.size(), 4u);
}

namespace {
// The parameter names become test names: '-' is not allowed there.
INSTANTIATE_TEST_SUITE_P(Engines, StorageTest, ::testing::Values("sqlite", "memory", "sqlite-sql", "memory-sql", "postgres",
                                           "postgres-sql"),
                         [](const auto& info) { std::string n = info.param; std::replace(n.begin(), n.end(), '-', '_'); return n; });
INSTANTIATE_TEST_SUITE_P(Engines, StorageListTest, ::testing::Values("sqlite", "memory", "sqlite-sql", "memory-sql", "postgres",
                                           "postgres-sql"),
                         [](const auto& info) { std::string n = info.param; std::replace(n.begin(), n.end(), '-', '_'); return n; });
}  // namespace

namespace {
// The seam is real: on the in-memory engine no SQLite file is written, and what was committed
// still comes back after a restart, read through the engine.
TEST(StorageEngines, TheMemoryEngineWritesNoFileAndKeepsRowsAcrossARestart) {
  dt::Env env(onEngine("memory"));
  const auto& ns = env.exportClass<Box>("BOX");
  env.runInDurableObject<Box>(ns.getByName("m"), [](Box&, State& state) -> Task<void> {
    co_await state.storage().put("k", "v");
    co_await state.storage().setAlarm(4'102'444'800'000);
  });
  EXPECT_GE(env.commits(), 1u);
  env.restart();
  EXPECT_EQ(env.liveObjects(), 0u);
  env.runInDurableObject<Box>(ns.getByName("m"), [](Box&, State& state) -> Task<void> {
    EXPECT_EQ(co_await state.storage().get<std::string>("k"), "v");
    EXPECT_EQ(co_await state.storage().getAlarm(), 4'102'444'800'000);
  });
  EXPECT_EQ(env.listDurableObjectIds(ns).size(), 1u);
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(env.dir() / "partitions")) {
    ADD_FAILURE() << entry.path() << " written by the memory engine";
    ++files;
  }
  EXPECT_EQ(files, 0u);
}

TEST(StorageEngines, AnUnknownEngineIsRefusedWithTheNamesAccepted) {
  try {
    dt::Env env(onEngine("rocksdb"));
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("\"sqlite\", \"memory\" or \"postgres\""), std::string::npos) << e.what();
  }
}
}  // namespace
