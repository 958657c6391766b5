// Storage through the public API (durable::testing::Env: the real runtime, real SQLite files in
// a temporary directory) against raw SQLite running the partition's own schema, pragmas and
// statements (src/storage/partition.cc) on a database of its own in the same directory tree.
//
// The "ours" loops run inside one object event (Env::runInObject), on the shard thread, so
// each iteration is one storage call as an object makes it; the timer runs on that thread,
// and every benchmark uses real (wall-clock) time. Values are int64 (9 encoded bytes), as a
// counter stores.
//
//   get_hit        get<int64>() of a key in the object's cache       | prepared SELECT by key
//   get_cold       get<int64>() of 100,000 keys, each read once, in a | the same SELECTs, in the
//                  shuffled order, right after Env::restart() (object  | same order, on a freshly
//                  evicted, new SQLite connections): every read is a   | opened read connection
//                  cache miss that goes to SQLite                      |
//   put_nowait     put() of one key, never awaited: the API cost. The  | INSERT OR REPLACE of one
//                  loop is one turn, so all its puts coalesce into one | key inside one open
//                  commit after the timed loop                         | transaction, committed
//                                                                      | after the timed loop
//   put100_sync    100 put()s of distinct keys, then co_await sync():  | BEGIN IMMEDIATE, 100
//                  one commit (one fsync under full) per 100 puts;     | INSERT OR REPLACE, COMMIT
//                  the rate is puts/s                                  | (rows/s)
//   put1_sync      put() of one key, then co_await sync(): one commit  | BEGIN IMMEDIATE, one
//                  per put (bound by fsync under full)                 | INSERT OR REPLACE, COMMIT
//   list100        list() of an object's 100 keys (always read from    | range SELECT of the same
//                  SQLite; the cache holds only undurable writes)      | 100 rows (lists/s)
//
// The sync variants run with durability full (synchronous=FULL, an fsync per commit) and
// relaxed (synchronous=NORMAL); the raw side uses the same synchronous setting.
#include "micro.h"

#include <durable/durable.h>
#include <durable/testing.h>

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

namespace micro {
namespace {

constexpr int kColdKeys = 100'000;
constexpr int kBatch = 100;
constexpr int kListKeys = 100;

class BenchObject : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
};

std::string numbered(const char* prefix, int i, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%0*d", prefix, width, i);
  return buf;
}

const std::vector<std::string>& coldKeys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (int i = 0; i < kColdKeys; ++i) k.push_back(numbered("c", i, 6));
    return k;
  }();
  return keys;
}

// The order the cold benchmark reads the keys in, the same for both sides.
const std::vector<int>& coldOrder() {
  static const std::vector<int> order = [] {
    std::vector<int> o(kColdKeys);
    std::iota(o.begin(), o.end(), 0);
    std::shuffle(o.begin(), o.end(), std::mt19937(42));
    return o;
  }();
  return order;
}

const std::vector<std::string>& batchKeys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (int i = 0; i < kBatch; ++i) k.push_back(numbered("b", i, 3));
    return k;
  }();
  return keys;
}

const std::vector<std::string>& listKeys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (int i = 0; i < kListKeys; ++i) k.push_back(numbered("k", i, 3));
    return k;
  }();
  return keys;
}

// ---------------------------------------------------------------- ours

struct Ours {
  std::unique_ptr<durable::testing::Env> env;
  const durable::Namespace* ns = nullptr;

  Ours(const char* durability, bool withColdKeys) {
    durable::testing::EnvOptions o;
    o.durability = durability;
    o.shards = 1;
    env = std::make_unique<durable::testing::Env>(o);
    ns = &env->exportClass<BenchObject>("BENCH");
    // The data the read benchmarks need, committed before any of them runs.
    run("hit", [](durable::State& s) -> durable::Task<void> {
      durable::Value v(std::int64_t{42});
      co_await s.storage().put("key", std::move(v));
    });
    run("list", [](durable::State& s) -> durable::Task<void> {
      for (const auto& k : listKeys()) {
        durable::Value v(std::int64_t{7});
        co_await s.storage().put(k, std::move(v));
      }
    });
    if (withColdKeys) {
      run("cold", [](durable::State& s) -> durable::Task<void> {
        std::int64_t i = 0;
        for (const auto& k : coldKeys()) {
          durable::Value v(i++);
          co_await s.storage().put(k, std::move(v));
        }
      });
    }
  }

  // Runs fn inside the object named `name` as one of its events and waits for it (and for
  // the durability of its writes, which runInObject waits for after the timed loop).
  void run(std::string_view name, std::function<durable::Task<void>(durable::State&)> fn) {
    env->runInObject(ns->getByName(name),
                     [&fn](durable::DurableObject&, durable::State& s) -> durable::Task<void> { return fn(s); });
  }
};

std::unique_ptr<Ours> g_ours[2];  // [0] full, [1] relaxed

Ours& ours(bool full) {
  auto& slot = g_ours[full ? 0 : 1];
  if (!slot) slot = std::make_unique<Ours>(full ? "full" : "relaxed", full);
  return *slot;
}

void oursGetHit(benchmark::State& st) {
  ours(true).run("hit", [&st](durable::State& s) -> durable::Task<void> {
    auto warm = co_await s.storage().get<std::int64_t>("key");  // into the cache (a restart empties it)
    if (warm != 42) throw std::runtime_error("get_hit: wrong value");
    for (auto _ : st) {
      auto v = co_await s.storage().get<std::int64_t>("key");
      benchmark::DoNotOptimize(v);
    }
  });
  st.SetItemsProcessed(st.iterations());
}

void oursGetCold(benchmark::State& st) {
  auto& o = ours(true);
  o.env->restart();  // every object evicted, the partition's connections reopened
  o.run("cold", [&st](durable::State& s) -> durable::Task<void> {
    const auto& keys = coldKeys();
    const auto& order = coldOrder();
    std::size_t i = 0;
    for (auto _ : st) {
      auto v = co_await s.storage().get<std::int64_t>(keys[order[i++]]);
      benchmark::DoNotOptimize(v);
    }
    if (i == keys.size()) {
      auto last = co_await s.storage().get<std::int64_t>(keys[order.back()]);
      if (last != order.back()) throw std::runtime_error("get_cold: wrong value");
    }
  });
  st.SetItemsProcessed(st.iterations());
}

void oursPutNoWait(benchmark::State& st) {
  ours(true).run("put", [&st](durable::State& s) -> durable::Task<void> {
    std::int64_t i = 0;
    for (auto _ : st) {
      durable::Value v(i++);
      co_await s.storage().put("k", std::move(v));
    }
  });
  st.SetItemsProcessed(st.iterations());
}

void oursPut100Sync(benchmark::State& st, bool full) {
  ours(full).run("put", [&st](durable::State& s) -> durable::Task<void> {
    const auto& keys = batchKeys();
    std::int64_t i = 0;
    for (auto _ : st) {
      for (const auto& k : keys) {
        durable::Value v(i++);
        co_await s.storage().put(k, std::move(v));
      }
      auto durable = s.storage().sync();
      co_await durable;
    }
  });
  st.SetItemsProcessed(st.iterations() * kBatch);
}

void oursPut1Sync(benchmark::State& st, bool full) {
  ours(full).run("put", [&st](durable::State& s) -> durable::Task<void> {
    std::int64_t i = 0;
    for (auto _ : st) {
      durable::Value v(i++);
      co_await s.storage().put("k", std::move(v));
      auto durable = s.storage().sync();
      co_await durable;
    }
  });
  st.SetItemsProcessed(st.iterations());
}

void oursList100(benchmark::State& st) {
  ours(true).run("list", [&st](durable::State& s) -> durable::Task<void> {
    durable::ListOptions all;
    auto first = co_await s.storage().list(all);
    if (first.size() != kListKeys) throw std::runtime_error("list100: wrong count");
    for (auto _ : st) {
      auto entries = co_await s.storage().list(all);
      benchmark::DoNotOptimize(entries);
    }
  });
  st.SetItemsProcessed(st.iterations());
}

// ---------------------------------------------------------------- raw SQLite

void check(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    throw std::runtime_error(std::string(what) + ": " + (db ? sqlite3_errmsg(db) : "?"));
  }
}

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    throw std::runtime_error(std::string(sql) + ": " + msg);
  }
}

// Opened as partition.cc's openDatabase does.
sqlite3* open(const std::filesystem::path& path, bool full, bool readOnly) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_NOMUTEX | (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  check(db, sqlite3_open_v2(path.c_str(), &db, flags, nullptr), "open");
  sqlite3_busy_timeout(db, 5000);
  if (!readOnly) {
    exec(db, "PRAGMA journal_mode=WAL");
    exec(db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  }
  exec(db, "PRAGMA cache_size=-16384");
  return db;
}

sqlite3_stmt* prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* s = nullptr;
  check(db, sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr), "prepare");
  return s;
}

// A 32-byte object ID per name (the runtime's IDs are 32 bytes too).
std::string objBlob(std::string_view name) {
  std::string b(32, '\0');
  std::uint64_t h = 1469598103934665603ULL;
  for (std::size_t i = 0; i < b.size(); ++i) {
    h = (h ^ static_cast<unsigned char>(name[i % name.size()])) * 1099511628211ULL;
    b[i] = static_cast<char>(h >> 24);
  }
  return b;
}

// Value::encode() of an int64: tag 0x03 and 8 little-endian bytes.
std::string encodedInt(std::int64_t v) {
  std::string e(1, '\x03');
  for (int i = 0; i < 8; ++i) e.push_back(static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff));
  return e;
}

struct Raw {
  std::filesystem::path dir;
  bool full;
  sqlite3* writer = nullptr;
  sqlite3* reader = nullptr;
  sqlite3_stmt *upsert = nullptr, *begin = nullptr, *commit = nullptr;
  sqlite3_stmt *select = nullptr, *range = nullptr;
  const std::int64_t ns = 1;
  const std::string hitObj = objBlob("hit"), listObj = objBlob("list"), coldObj = objBlob("cold"),
                    putObj = objBlob("put");

  explicit Raw(bool full_) : full(full_) {
    dir = std::filesystem::temp_directory_path() /
          ("durable-micro-raw-" + std::to_string(::getpid()) + (full ? "-full" : "-relaxed"));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    writer = open(dir / "raw.sqlite", full, false);
    exec(writer,
         "CREATE TABLE IF NOT EXISTS kv(ns INTEGER NOT NULL, obj BLOB NOT NULL, key BLOB NOT NULL, "
         "value BLOB NOT NULL, PRIMARY KEY(ns, obj, key)) WITHOUT ROWID;"
         "CREATE TABLE IF NOT EXISTS alarms(ns INTEGER NOT NULL, obj BLOB NOT NULL, time INTEGER NOT NULL, "
         "PRIMARY KEY(ns, obj)) WITHOUT ROWID;"
         "CREATE INDEX IF NOT EXISTS alarms_by_time ON alarms(time);");
    upsert = prepare(writer, "INSERT OR REPLACE INTO kv(ns, obj, key, value) VALUES(?1, ?2, ?3, ?4)");
    begin = prepare(writer, "BEGIN IMMEDIATE");
    commit = prepare(writer, "COMMIT");
    // The same rows as Ours.
    step(begin);
    put(hitObj, "key", encodedInt(42));
    for (const auto& k : listKeys()) put(listObj, k, encodedInt(7));
    if (full) {
      std::int64_t i = 0;
      for (const auto& k : coldKeys()) put(coldObj, k, encodedInt(i++));
    }
    step(commit);
    openReader();
  }

  ~Raw() {
    closeReader();
    for (auto* s : {upsert, begin, commit}) sqlite3_finalize(s);
    sqlite3_close(writer);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  void step(sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) check(writer, rc, "step");
  }

  void bindObject(sqlite3_stmt* s, const std::string& obj) {
    sqlite3_bind_int64(s, 1, ns);
    sqlite3_bind_blob(s, 2, obj.data(), static_cast<int>(obj.size()), SQLITE_STATIC);
  }

  // One row through the upsert statement, as Partition::commit writes it.
  void put(const std::string& obj, std::string_view key, const std::string& value) {
    bindObject(upsert, obj);
    sqlite3_bind_blob(upsert, 3, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_blob(upsert, 4, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
    step(upsert);
  }

  // A read connection with an empty page cache, and the partition's read statements.
  void openReader() {
    closeReader();
    reader = open(dir / "raw.sqlite", full, true);
    select = prepare(reader, "SELECT value FROM kv WHERE ns = ?1 AND obj = ?2 AND key = ?3");
    // list() with no bounds: lower "" inclusive, no upper, ascending (Partition::listStatement).
    range = prepare(reader, "SELECT key, value FROM kv WHERE ns = ?1 AND obj = ?2 AND key >= ?3 ORDER BY key ASC");
  }

  void closeReader() {
    if (!reader) return;
    sqlite3_finalize(select);
    sqlite3_finalize(range);
    sqlite3_close(reader);
    reader = nullptr;
  }

  // Partition::read: bind, step, copy nothing (the ceiling only touches the column), reset.
  std::string_view get(const std::string& obj, std::string_view key) {
    bindObject(select, obj);
    sqlite3_bind_blob(select, 3, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    std::string_view out;
    int rc = sqlite3_step(select);
    if (rc == SQLITE_ROW) {
      out = {static_cast<const char*>(sqlite3_column_blob(select, 0)),
             static_cast<std::size_t>(sqlite3_column_bytes(select, 0))};
    } else {
      check(reader, rc, "get");
    }
    sqlite3_reset(select);
    sqlite3_clear_bindings(select);
    return out;
  }
};

std::unique_ptr<Raw> g_raw[2];

Raw& raw(bool full) {
  auto& slot = g_raw[full ? 0 : 1];
  if (!slot) slot = std::make_unique<Raw>(full);
  return *slot;
}

void rawGetHit(benchmark::State& st) {
  auto& r = raw(true);
  if (r.get(r.hitObj, "key").size() != 9) throw std::runtime_error("raw get_hit: missing row");
  for (auto _ : st) {
    auto v = r.get(r.hitObj, "key");
    benchmark::DoNotOptimize(v);
  }
  st.SetItemsProcessed(st.iterations());
}

void rawGetCold(benchmark::State& st) {
  auto& r = raw(true);
  r.openReader();
  const auto& keys = coldKeys();
  const auto& order = coldOrder();
  std::size_t i = 0;
  for (auto _ : st) {
    auto v = r.get(r.coldObj, keys[order[i++]]);
    benchmark::DoNotOptimize(v);
  }
  st.SetItemsProcessed(st.iterations());
}

void rawPutNoWait(benchmark::State& st) {
  auto& r = raw(true);
  r.step(r.begin);
  const std::string value = encodedInt(1234);
  for (auto _ : st) r.put(r.putObj, "k", value);
  r.step(r.commit);
  st.SetItemsProcessed(st.iterations());
}

void rawPut100Sync(benchmark::State& st, bool full) {
  auto& r = raw(full);
  const std::string value = encodedInt(1234);
  const auto& keys = batchKeys();
  for (auto _ : st) {
    r.step(r.begin);
    for (const auto& k : keys) r.put(r.putObj, k, value);
    r.step(r.commit);
  }
  st.SetItemsProcessed(st.iterations() * kBatch);
}

void rawPut1Sync(benchmark::State& st, bool full) {
  auto& r = raw(full);
  const std::string value = encodedInt(1234);
  for (auto _ : st) {
    r.step(r.begin);
    r.put(r.putObj, "k", value);
    r.step(r.commit);
  }
  st.SetItemsProcessed(st.iterations());
}

void rawList100(benchmark::State& st) {
  auto& r = raw(true);
  sqlite3_stmt* s = r.range;
  for (auto _ : st) {
    r.bindObject(s, r.listObj);
    sqlite3_bind_blob(s, 3, "", 0, SQLITE_STATIC);
    int rows = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const void* k = sqlite3_column_blob(s, 0);
      const void* v = sqlite3_column_blob(s, 1);
      benchmark::DoNotOptimize(k);
      benchmark::DoNotOptimize(v);
      ++rows;
    }
    check(r.reader, rc, "list");
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rows != kListKeys) throw std::runtime_error("raw list100: wrong count");
  }
  st.SetItemsProcessed(st.iterations());
}

}  // namespace

void registerStorage() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("storage/get_hit/ours", oursGetHit)->UseRealTime();
  RegisterBenchmark("storage/get_hit/sqlite", rawGetHit)->UseRealTime();
  RegisterBenchmark("storage/get_cold/ours", oursGetCold)->UseRealTime()->Iterations(kColdKeys);
  RegisterBenchmark("storage/get_cold/sqlite", rawGetCold)->UseRealTime()->Iterations(kColdKeys);
  RegisterBenchmark("storage/put_nowait/ours", oursPutNoWait)->UseRealTime();
  RegisterBenchmark("storage/put_nowait/sqlite", rawPutNoWait)->UseRealTime();
  for (bool full : {true, false}) {
    std::string d = full ? "full" : "relaxed";
    RegisterBenchmark(("storage/put100_sync_" + d + "/ours").c_str(), oursPut100Sync, full)->UseRealTime();
    RegisterBenchmark(("storage/put100_sync_" + d + "/sqlite").c_str(), rawPut100Sync, full)->UseRealTime();
    RegisterBenchmark(("storage/put1_sync_" + d + "/ours").c_str(), oursPut1Sync, full)->UseRealTime();
    RegisterBenchmark(("storage/put1_sync_" + d + "/sqlite").c_str(), rawPut1Sync, full)->UseRealTime();
  }
  RegisterBenchmark("storage/list100/ours", oursList100)->UseRealTime();
  RegisterBenchmark("storage/list100/sqlite", rawList100)->UseRealTime();
}

void shutdownStorage() {
  for (auto& o : g_ours) o.reset();
  for (auto& r : g_raw) r.reset();
}

}  // namespace micro
