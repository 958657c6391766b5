// The objects a partition's file holds, as the admin API lists, counts and describes them.
#include "storage/sqlite_engine.h"

#include "storage/sqlite_engine_internal.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace durable::detail {

using namespace sqlite_engine_internal;

// What describeObject() asks, prepared once for a whole page of objects.
struct SqliteEngine::DescribeStatements {
  Statement size, alarm, name;
  explicit DescribeStatements(sqlite3* db)
      : size(db, "SELECT count(*), coalesce(sum(length(key) + length(value)), 0) FROM kv WHERE ns = ?1 AND obj = ?2"),
        alarm(db, "SELECT time FROM alarms WHERE ns = ?1 AND obj = ?2"),
        name(db, "SELECT name FROM names WHERE ns = ?1 AND obj = ?2") {}
};

Deferred<std::vector<StoredObject>> SqliteEngine::listObjects(std::int64_t ns, const std::optional<ObjectId::Raw>& after,
                                                   std::size_t limit) {
  // One indexed seek per object and table, rather than a DISTINCT over every row: a page
  // costs its own objects' keys, whatever the namespace holds.
  Statement nextKv(reader_, "SELECT obj FROM kv WHERE ns = ?1 AND obj > ?2 ORDER BY obj LIMIT 1");
  Statement nextAlarm(reader_, "SELECT obj FROM alarms WHERE ns = ?1 AND obj > ?2 ORDER BY obj LIMIT 1");
  // A SQLite-backed object's data is in its own file; its log here says it has some.
  Statement nextSql(reader_, "SELECT obj FROM sqllog WHERE ns = ?1 AND obj > ?2 ORDER BY obj LIMIT 1");
  // The journal has no index by object: its objects are taken from journal_.
  std::vector<std::string> inJournal;
  {
    std::lock_guard lock(journalMu_);
    for (const auto& [key, o] : journal_.objects) {
      if (key.ns == ns && o.dropped < o.rows.size()) {
        inJournal.emplace_back(reinterpret_cast<const char*>(key.id.data()), key.id.size());
      }
    }
  }
  std::sort(inJournal.begin(), inJournal.end());
  Statement nextSqlHistory(reader_, "SELECT obj FROM sqlhistory WHERE ns = ?1 AND obj > ?2 ORDER BY obj LIMIT 1");
  auto next = [this, ns](Statement& q, const std::string& from) -> std::optional<std::string> {
    sqlite3_reset(q.get());
    sqlite3_bind_int64(q.get(), 1, ns);
    sqlite3_bind_blob(q.get(), 2, from.data(), static_cast<int>(from.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(q.get());
    if (rc == SQLITE_DONE || (rc == SQLITE_ROW && sqlite3_column_type(q.get(), 0) == SQLITE_NULL)) return std::nullopt;
    if (rc != SQLITE_ROW) fail(reader_, "list objects");
    return std::string(columnBlob(q.get(), 0));
  };
  std::string from = after ? std::string(reinterpret_cast<const char*>(after->data()), after->size()) : std::string();
  DescribeStatements describe(reader_);
  std::vector<StoredObject> out;
  while (out.size() < limit) {
    std::optional<std::string> first;
    for (Statement* q : {&nextKv, &nextAlarm, &nextSql, &nextSqlHistory}) {
      auto candidate = next(*q, from);
      if (candidate && (!first || *candidate < *first)) first = std::move(candidate);
    }
    if (auto it = std::upper_bound(inJournal.begin(), inJournal.end(), from);
        it != inJournal.end() && (!first || *it < *first)) {
      first = *it;
    }
    if (!first) break;
    from = std::move(*first);
    if (from.size() != ObjectId::kBytes) continue;
    ObjectId::Raw id;
    std::memcpy(id.data(), from.data(), id.size());
    out.push_back(describeWith(describe, ns, id));
  }
  return out;
}

Deferred<std::size_t> SqliteEngine::countObjects(std::int64_t ns) {
  Statement q(reader_, kCountObjectsSql);
  sqlite3_bind_int64(q.get(), 1, ns);
  if (sqlite3_step(q.get()) != SQLITE_ROW) fail(reader_, "count objects");
  return static_cast<std::size_t>(sqlite3_column_int64(q.get(), 0));
}

Deferred<StoredObject> SqliteEngine::describeObject(std::int64_t ns, const ObjectId::Raw& id) {
  DescribeStatements q(reader_);
  return describeWith(q, ns, id);
}

StoredObject SqliteEngine::describeWith(DescribeStatements& q, std::int64_t ns, const ObjectId::Raw& id) {
  StoredObject o;
  o.id = id;
  for (Statement* s : {&q.size, &q.alarm, &q.name}) {
    sqlite3_reset(s->get());
    bindObject(s->get(), ns, id);
  }
  if (sqlite3_step(q.size.get()) != SQLITE_ROW) fail(reader_, "describe object");
  o.keys = static_cast<std::size_t>(sqlite3_column_int64(q.size.get(), 0));
  o.bytes = static_cast<std::uint64_t>(sqlite3_column_int64(q.size.get(), 1));
  int rc = sqlite3_step(q.alarm.get());
  if (rc == SQLITE_ROW) o.alarm = sqlite3_column_int64(q.alarm.get(), 0);
  else if (rc != SQLITE_DONE) fail(reader_, "describe object");
  rc = sqlite3_step(q.name.get());
  if (rc == SQLITE_ROW) o.name = std::string(columnBlob(q.name.get(), 0));
  else if (rc != SQLITE_DONE) fail(reader_, "describe object");
  return o;
}

}  // namespace durable::detail
