// The SQL log of SQLite-backed objects in the partition's file: a journal in batch order,
// folded into per-object runs of history (sqlite_engine.h says why; docs/sql-design.md, "The
// log's layout", how).
#include "storage/sqlite_engine.h"

#include "storage/sqlite_engine_internal.h"

#include <durable/error.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace durable::detail {

using namespace sqlite_engine_internal;

namespace {

// A run of one object's log entries as one row of sqlhistory: each entry its LSN and time
// (8 bytes each, little-endian), the length of its records (4 bytes) and the records.
void putLittleEndian(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t getLittleEndian(const unsigned char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

void appendChunkEntry(std::string& out, std::uint64_t lsn, std::int64_t at, std::string_view records) {
  putLittleEndian(out, lsn, 8);
  putLittleEndian(out, static_cast<std::uint64_t>(at), 8);
  putLittleEndian(out, records.size(), 4);
  out.append(records);
}

template <class OnEntry>
void forEachChunkEntry(std::string_view chunk, OnEntry&& onEntry) {
  const auto* p = reinterpret_cast<const unsigned char*>(chunk.data());
  std::size_t left = chunk.size();
  while (left > 0) {
    if (left < 20) throw Error(ErrorCode::kInternal, "storage: a run of the SQL log is cut short");
    const std::uint64_t lsn = getLittleEndian(p, 8);
    const auto at = static_cast<std::int64_t>(getLittleEndian(p + 8, 8));
    const std::uint64_t size = getLittleEndian(p + 16, 4);
    if (left - 20 < size) throw Error(ErrorCode::kInternal, "storage: a run of the SQL log is cut short");
    onEntry(lsn, at, std::string_view(reinterpret_cast<const char*>(p + 20), size));
    p += 20 + size;
    left -= 20 + size;
  }
}

}  // namespace

std::vector<SqliteEngine::JournalRow> SqliteEngine::journalRowsOf(std::int64_t ns, const ObjectId::Raw& id,
                                                                  std::uint64_t afterLsn, std::uint64_t throughLsn,
                                                                  std::uint64_t* lastSeq) {
  std::lock_guard lock(journalMu_);
  *lastSeq = journal_.lastSeq;
  auto it = journal_.objects.find(JournalKey{ns, id});
  if (it == journal_.objects.end()) return {};
  const JournalObject& o = it->second;
  // An object's rows are in LSN order (seq order, and LSNs grow).
  auto byLsn = [](const JournalRow& row, std::uint64_t lsn) { return row.lsn < lsn; };
  const auto from = std::lower_bound(o.rows.begin() + static_cast<std::ptrdiff_t>(o.dropped), o.rows.end(),
                                     afterLsn + 1, byLsn);
  const auto to = throughLsn == UINT64_MAX ? o.rows.end() : std::lower_bound(from, o.rows.end(), throughLsn + 1, byLsn);
  return {from, to};
}

Deferred<std::vector<SqlLogEntry>> SqliteEngine::readSqlLog(std::int64_t ns, const ObjectId::Raw& id,
                                                            std::uint64_t afterLsn, std::uint64_t throughLsn) {
  // The rows are copied before the snapshot begins: each is then in the journal in that
  // snapshot or was folded into the log before it was deleted (journal_'s comment).
  std::uint64_t lastSeq = 0;
  const std::vector<JournalRow> journalRows = journalRowsOf(ns, id, afterLsn, throughLsn, &lastSeq);
  std::vector<SqlLogEntry> out;
  auto take = [&](sqlite3_stmt* s) {
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      const auto lsn = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
      if (lsn <= afterLsn || lsn > throughLsn) continue;
      out.push_back({lsn, std::string(columnBlob(s, 1)), sqlite3_column_int64(s, 2)});
    }
    check(reader_, rc, "read SQL log");
  };
  {
    const ReadSnapshot snapshot(reader_, "read SQL log");
    {
      sqlite3_stmt* s = readSqlLogStmt_.get();
      ResetGuard guard{s};
      bindObject(s, ns, id);
      sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(afterLsn));
      sqlite3_bind_int64(s, 4, static_cast<sqlite3_int64>(std::min<std::uint64_t>(throughLsn, INT64_MAX)));
      take(s);
    }
    {
      sqlite3_stmt* s = readChunksStmt_.get();
      ResetGuard guard{s};
      bindObject(s, ns, id);
      sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(afterLsn));
      sqlite3_bind_int64(s, 4, static_cast<sqlite3_int64>(std::min<std::uint64_t>(throughLsn, INT64_MAX)));
      int rc;
      while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        forEachChunkEntry(columnBlob(s, 0), [&](std::uint64_t lsn, std::int64_t at, std::string_view records) {
          if (lsn > afterLsn && lsn <= throughLsn) out.push_back({lsn, std::string(records), at});
        });
      }
      check(reader_, rc, "read SQL log");
    }
    for (const JournalRow& row : journalRows) {
      if (row.lsn <= afterLsn || row.lsn > throughLsn) continue;
      sqlite3_stmt* s = readJournalRowStmt_.get();
      ResetGuard guard{s};
      sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(row.seq));
      sqlite3_bind_int64(s, 2, ns);
      bindBlob(s, 3, id.data(), id.size());
      sqlite3_bind_int64(s, 4, static_cast<sqlite3_int64>(row.lsn));
      take(s);
    }
    {
      // Rows committed after the copy: a batch of this object's that was in flight.
      sqlite3_stmt* s = readJournalTailStmt_.get();
      ResetGuard guard{s};
      sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(lastSeq));
      sqlite3_bind_int64(s, 2, ns);
      bindBlob(s, 3, id.data(), id.size());
      take(s);
    }
  }
  {
    // A row both folded and still in the journal comes twice: the journal's is the later one.
    std::stable_sort(out.begin(), out.end(), [](const SqlLogEntry& a, const SqlLogEntry& b) { return a.lsn < b.lsn; });
    std::vector<SqlLogEntry> unique;
    unique.reserve(out.size());
    for (auto& e : out) {
      if (!unique.empty() && unique.back().lsn == e.lsn) unique.back() = std::move(e);
      else unique.push_back(std::move(e));
    }
    out = std::move(unique);
  }
  return out;
}

Deferred<SqlLogPosition> SqliteEngine::sqlLogPosition(std::int64_t ns, const ObjectId::Raw& id, std::int64_t time) {
  // One snapshot for the three reads: a prune committed between them could leave the entry
  // found older than the oldest one kept.
  const ReadSnapshot snapshot(reader_, "read SQL log");
  SqlLogPosition position;
  {
    sqlite3_stmt* s = sqlLogAtStmt_.get();
    ResetGuard guard{s};
    bindObject(s, ns, id);
    sqlite3_bind_int64(s, 3, time);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      position.lsn = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
      position.at = sqlite3_column_int64(s, 1);
    } else {
      check(reader_, rc, "read SQL log");
    }
  }
  {
    sqlite3_stmt* s = chunkAtStmt_.get();
    ResetGuard guard{s};
    bindObject(s, ns, id);
    sqlite3_bind_int64(s, 3, time);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      forEachChunkEntry(columnBlob(s, 0), [&](std::uint64_t lsn, std::int64_t at, std::string_view) {
        if (at <= time && lsn > position.lsn) {
          position.lsn = lsn;
          position.at = at;
        }
      });
    } else {
      check(reader_, rc, "read SQL log");
    }
  }
  sqlite3_stmt* s = sqlLogOldestStmt_.get();
  ResetGuard guard{s};
  bindObject(s, ns, id);
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    if (sqlite3_column_type(s, 0) != SQLITE_NULL) position.oldestLsn = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
  } else {
    check(reader_, rc, "read SQL log");
  }
  return position;
}

std::size_t SqliteEngine::appendSqlLog(const ObjectBatch& ob) {
  std::size_t journaled = 0;
  for (const SqlLogEntry& entry : ob.sqlLog) {
    if (entry.records.size() >= kOwnRunBytes) {
      // Pages of its own wherever it goes: written once, as a run of one entry, rather than
      // into the journal and again when folded. A SQLite-backed ChatRoom's 138 KB history per
      // message: bench/compare's chat fan-out had p99 105 ms with it journaled.
      chunk_.clear();
      appendChunkEntry(chunk_, entry.lsn, entry.at, entry.records);
      insertChunk(ob.ns, ob.id, entry.lsn, entry.lsn, entry.at, chunk_);
      continue;
    }
    sqlite3_stmt* s = appendSqlLogStmt_.get();
    ResetGuard guard{s};
    bindObject(s, ob.ns, ob.id);
    sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(entry.lsn));
    bindBlob(s, 4, entry.records.data(), entry.records.size());
    sqlite3_bind_int64(s, 5, entry.at);
    const std::uint64_t seq = nextSeq_++;
    sqlite3_bind_int64(s, 6, static_cast<sqlite3_int64>(seq));
    if (sqlite3_step(s) != SQLITE_DONE) fail(writer_, "commit");
    journalAppended(JournalKey{ob.ns, ob.id}, JournalRow{seq, entry.lsn, entry.at}, entry.records);
    ++journaled;
  }
  return journaled;
}

void SqliteEngine::journalAppended(const JournalKey& key, const JournalRow& row, std::string_view records) {
  std::lock_guard lock(journalMu_);
  JournalObject& o = journal_.objects[key];
  if (o.folded == o.rows.size()) journal_.byFirstUnfolded.emplace(row.seq, key);
  o.rows.push_back(row);
  o.records.emplace_back(records);
  unfoldedBytes_ += records.size();
  journal_.bySeq.emplace_back(row.seq, key);
  journal_.lastSeq = row.seq;
}

void SqliteEngine::journalPruned(const JournalKey& key, std::uint64_t throughLsn) {
  std::lock_guard lock(journalMu_);
  auto it = journal_.objects.find(key);
  if (it == journal_.objects.end()) return;
  JournalObject& o = it->second;
  if (o.folded == o.rows.size() || o.rows[o.folded].lsn > throughLsn) return;
  // The pruned rows are gone from the table: nothing to fold. They leave journal_ with the
  // truncation that passes them.
  journal_.byFirstUnfolded.erase(o.rows[o.folded].seq);
  while (o.folded < o.rows.size() && o.rows[o.folded].lsn <= throughLsn) {
    unfoldedBytes_ -= o.records[o.folded].size();
    std::string().swap(o.records[o.folded++]);
  }
  if (o.folded < o.rows.size()) journal_.byFirstUnfolded.emplace(o.rows[o.folded].seq, key);
}

void SqliteEngine::foldJournal(std::size_t entriesThisBatch) {
  // Four times what came in: a journal past its window shrinks back while batches go on.
  std::size_t budget = foldBudget_ ? foldBudget_ : std::max<std::size_t>(64, 4 * entriesThisBatch);
  while (budget > 0 && !journal_.byFirstUnfolded.empty()) {
    const auto [first, key] = *journal_.byFirstUnfolded.begin();
    if (journal_.lastSeq + 1 - first <= journalWindow_ && unfoldedBytes_ <= kJournalBytes) break;
    JournalObject& o = journal_.objects.at(key);
    const std::size_t n = std::min(budget, o.rows.size() - o.folded);
    // One row of the history for the run: one page written for many entries. A run holds
    // consecutive LSNs only: where one is missing, a large entry is a run of its own
    // (appendSqlLog), and runs must not overlap (readChunksStmt_ seeks by that).
    chunk_.clear();
    std::uint64_t firstLsn = 0, lastLsn = 0;
    std::int64_t firstAt = 0;
    for (std::size_t i = o.folded; i < o.folded + n; ++i) {
      const JournalRow& row = o.rows[i];
      if (!chunk_.empty() && row.lsn != lastLsn + 1) {
        insertChunk(key.ns, key.id, firstLsn, lastLsn, firstAt, chunk_);
        chunk_.clear();
      }
      if (chunk_.empty()) {
        firstLsn = row.lsn;
        firstAt = row.at;
      }
      lastLsn = row.lsn;
      appendChunkEntry(chunk_, row.lsn, row.at, o.records[i]);
    }
    if (!chunk_.empty()) insertChunk(key.ns, key.id, firstLsn, lastLsn, firstAt, chunk_);
    budget -= n;
    // Freed now: a rolled-back fold reloads the journal (commit()).
    for (std::size_t i = o.folded; i < o.folded + n; ++i) {
      unfoldedBytes_ -= o.records[i].size();
      std::string().swap(o.records[i]);
    }
    std::lock_guard lock(journalMu_);
    journal_.byFirstUnfolded.erase(journal_.byFirstUnfolded.begin());
    o.folded += n;
    if (o.folded < o.rows.size()) journal_.byFirstUnfolded.emplace(o.rows[o.folded].seq, key);
  }
  if (journal_.bySeq.empty()) return;
  const std::uint64_t head =
      journal_.byFirstUnfolded.empty() ? journal_.lastSeq + 1 : journal_.byFirstUnfolded.begin()->first;
  if (head <= journal_.bySeq.front().first) return;
  sqlite3_stmt* s = truncateJournalStmt_.get();
  sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(head));
  const int rc = sqlite3_step(s);
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) fail(writer_, "truncate the SQL journal");
  truncatedBefore_ = head;
}

void SqliteEngine::insertChunk(std::int64_t ns, const ObjectId::Raw& id, std::uint64_t firstLsn,
                               std::uint64_t lastLsn, std::int64_t firstAt, std::string_view entries) {
  sqlite3_stmt* s = insertChunkStmt_.get();
  ResetGuard guard{s};
  bindObject(s, ns, id);
  sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(firstLsn));
  sqlite3_bind_int64(s, 4, static_cast<sqlite3_int64>(lastLsn));
  sqlite3_bind_int64(s, 5, firstAt);
  bindBlob(s, 6, entries.data(), entries.size());
  if (sqlite3_step(s) != SQLITE_DONE) fail(writer_, "fold the SQL journal");
}

void SqliteEngine::pruneStraddlingChunks(std::int64_t ns, const ObjectId::Raw& id, std::uint64_t throughLsn) {
  // The runs that end past the prune point but begin before it: kept from it on.
  struct Kept {
    std::uint64_t oldFirst, first = 0, last = 0;
    std::int64_t at = 0;
    std::string entries;
  };
  std::vector<Kept> kept;
  {
    sqlite3_stmt* s = straddlingChunksStmt_.get();
    ResetGuard guard{s};
    bindObject(s, ns, id);
    sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(throughLsn));
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      Kept k{static_cast<std::uint64_t>(sqlite3_column_int64(s, 0))};
      forEachChunkEntry(columnBlob(s, 1), [&](std::uint64_t lsn, std::int64_t at, std::string_view records) {
        if (lsn <= throughLsn) return;
        if (k.entries.empty()) {
          k.first = lsn;
          k.at = at;
        }
        k.last = lsn;
        appendChunkEntry(k.entries, lsn, at, records);
      });
      kept.push_back(std::move(k));
    }
    check(writer_, rc, "prune the SQL log");
  }
  for (const Kept& k : kept) {
    sqlite3_stmt* s = deleteChunkStmt_.get();
    ResetGuard guard{s};
    bindObject(s, ns, id);
    sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(k.oldFirst));
    if (sqlite3_step(s) != SQLITE_DONE) fail(writer_, "prune the SQL log");
    if (!k.entries.empty()) insertChunk(ns, id, k.first, k.last, k.at, k.entries);
  }
}

void SqliteEngine::journalTruncated(std::uint64_t before) {
  std::lock_guard lock(journalMu_);
  while (!journal_.bySeq.empty() && journal_.bySeq.front().first < before) {
    const JournalKey key = journal_.bySeq.front().second;
    journal_.bySeq.pop_front();
    auto it = journal_.objects.find(key);
    if (it == journal_.objects.end()) continue;
    JournalObject& o = it->second;
    ++o.dropped;
    if (o.dropped >= o.rows.size()) {
      journal_.objects.erase(it);
    } else if (o.dropped >= 32 && 2 * o.dropped >= o.rows.size()) {
      o.rows.erase(o.rows.begin(), o.rows.begin() + static_cast<std::ptrdiff_t>(o.dropped));
      o.records.erase(o.records.begin(), o.records.begin() + static_cast<std::ptrdiff_t>(o.dropped));
      o.folded -= o.dropped;
      o.dropped = 0;
    }
  }
}

void SqliteEngine::loadJournal() {
  Journal loaded;
  Statement all(writer_, "SELECT seq, ns, obj, lsn, at, records FROM sqljournal ORDER BY seq");
  int rc;
  while ((rc = sqlite3_step(all.get())) == SQLITE_ROW) {
    const auto blob = columnBlob(all.get(), 2);
    JournalKey key{sqlite3_column_int64(all.get(), 1), {}};
    if (blob.size() != key.id.size()) continue;
    std::memcpy(key.id.data(), blob.data(), key.id.size());
    const JournalRow row{static_cast<std::uint64_t>(sqlite3_column_int64(all.get(), 0)),
                         static_cast<std::uint64_t>(sqlite3_column_int64(all.get(), 3)), sqlite3_column_int64(all.get(), 4)};
    JournalObject& o = loaded.objects[key];
    // What was folded before is not known: folded again, which changes nothing.
    if (o.rows.empty()) loaded.byFirstUnfolded.emplace(row.seq, key);
    o.rows.push_back(row);
    o.records.emplace_back(columnBlob(all.get(), 5));
    loaded.bySeq.emplace_back(row.seq, key);
    loaded.lastSeq = row.seq;
  }
  if (rc != SQLITE_DONE) fail(writer_, "read the SQL journal");
  // Rows a run of the history already holds (folded, not yet deleted) stay folded: folded
  // again they would make a second run over the same entries, which a prune's rewrite of the
  // first could then replace.
  Statement runs(writer_, "SELECT lsn, last FROM sqlhistory WHERE ns = ?1 AND obj = ?2 AND last >= ?3 ORDER BY lsn");
  std::uint64_t bytes = 0;
  for (auto& [key, o] : loaded.objects) {
    sqlite3_reset(runs.get());
    bindObject(runs.get(), key.ns, key.id);
    sqlite3_bind_int64(runs.get(), 3, static_cast<sqlite3_int64>(o.rows.front().lsn));
    while ((rc = sqlite3_step(runs.get())) == SQLITE_ROW) {
      const auto first = static_cast<std::uint64_t>(sqlite3_column_int64(runs.get(), 0));
      const auto last = static_cast<std::uint64_t>(sqlite3_column_int64(runs.get(), 1));
      while (o.folded < o.rows.size() && o.rows[o.folded].lsn >= first && o.rows[o.folded].lsn <= last) {
        std::string().swap(o.records[o.folded++]);
      }
    }
    if (rc != SQLITE_DONE) fail(writer_, "read the SQL history");
    if (o.folded > 0) {
      loaded.byFirstUnfolded.erase(o.rows.front().seq);
      if (o.folded < o.rows.size()) loaded.byFirstUnfolded.emplace(o.rows[o.folded].seq, key);
    }
    for (std::size_t i = o.folded; i < o.records.size(); ++i) bytes += o.records[i].size();
  }
  unfoldedBytes_ = bytes;
  nextSeq_ = std::max(nextSeq_, loaded.lastSeq + 1);
  std::lock_guard lock(journalMu_);
  journal_ = std::move(loaded);
}

}  // namespace durable::detail
