// Issue 15 design probe (docs/sql-design.md): what a turn's changes cost to capture, logically
// (session changesets) and physically (WAL frames), for three shapes of turn; and whether a
// replica built from the changesets answers the same. bench/sql-probe/run.sh builds and runs it.
#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <sqlite3.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>
namespace fs = std::filesystem;
static void ex(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) { fprintf(stderr, "%s: %s\n", sql, err); exit(1); }
}
static long long one(sqlite3* db, const char* sql) {
  sqlite3_stmt* s; sqlite3_prepare_v2(db, sql, -1, &s, nullptr);
  long long v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1; sqlite3_finalize(s); return v;
}
struct Turn { const char* name; const char* schema; std::string (*sql)(int); };
int main(int argc, char** argv) {
  int pageSize = argc > 1 ? atoi(argv[1]) : 4096;
  const std::string dir = argc > 2 ? argv[2] : "/tmp/durable-sql-probe";
  std::vector<Turn> turns = {
    {"counter UPDATE (INTEGER PRIMARY KEY)", "CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO c VALUES(1, 0);",
     [](int) { return std::string("UPDATE c SET n = n + 1 WHERE id = 1"); }},
    {"note INSERT + FTS5", "CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT, createdAt INTEGER); CREATE VIRTUAL TABLE notes_fts USING fts5(text, content='notes', content_rowid='id');",
     [](int i) { return "INSERT INTO notes(id, text, createdAt) VALUES(" + std::to_string(i + 1) + ", 'note number " + std::to_string(i) + " about durable objects and sqlite', 1700000000000); INSERT INTO notes_fts(rowid, text) VALUES(" + std::to_string(i + 1) + ", 'note number " + std::to_string(i) + " about durable objects and sqlite')"; }},
    {"rowid table without a PRIMARY KEY", "CREATE TABLE t(a, b);",
     [](int i) { return "INSERT INTO t VALUES(" + std::to_string(i) + ", 'x')"; }},
  };
  for (auto& t : turns) {
    fs::remove_all(dir); fs::create_directories(dir);
    sqlite3* db; sqlite3_open((dir + "/a.sqlite").c_str(), &db);
    ex(db, ("PRAGMA page_size=" + std::to_string(pageSize)).c_str());
    ex(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA wal_autocheckpoint=0;");
    ex(db, t.schema);
    sqlite3* replica; sqlite3_open((dir + "/b.sqlite").c_str(), &replica);
    ex(replica, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"); ex(replica, t.schema);
    const int N = 2000;
    size_t changesetBytes = 0; long long walBefore = fs::file_size(dir + "/a.sqlite-wal");
    double captureUs = 0, applyUs = 0;
    for (int i = 0; i < N; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      sqlite3_session* s; sqlite3session_create(db, "main", &s); sqlite3session_attach(s, nullptr);
      ex(db, "BEGIN"); ex(db, t.sql(i).c_str()); ex(db, "COMMIT");
      int n = 0; void* p = nullptr; sqlite3session_changeset(s, &n, &p);
      sqlite3session_delete(s);
      auto t1 = std::chrono::steady_clock::now();
      changesetBytes += n;
      if (n) {
        auto conflict = [](void*, int, sqlite3_changeset_iter*) { return SQLITE_CHANGESET_ABORT; };
        int rc = sqlite3changeset_apply(replica, n, p, nullptr, conflict, nullptr);
        if (rc != SQLITE_OK) { fprintf(stderr, "apply: %d %s\n", rc, sqlite3_errmsg(replica)); }
      }
      auto t2 = std::chrono::steady_clock::now();
      captureUs += std::chrono::duration<double, std::micro>(t1 - t0).count();
      applyUs += std::chrono::duration<double, std::micro>(t2 - t1).count();
      sqlite3_free(p);
    }
    long long walAfter = fs::file_size(dir + "/a.sqlite-wal");
    printf("%-40s page %5d: changeset %6.1f B/turn, WAL %7.1f B/turn, capture+commit %6.1f us, apply %6.1f us\n", t.name, pageSize,
           double(changesetBytes) / N, double(walAfter - walBefore) / N, captureUs / N, applyUs / N);
    if (std::string(t.name).find("FTS5") != std::string::npos) {
      printf("   FTS5 'number 1234' matches: origin %lld, replica %lld; notes rows: origin %lld, replica %lld\n",
             one(db, "SELECT count(*) FROM notes_fts WHERE notes_fts MATCH 'number AND 1234'"),
             one(replica, "SELECT count(*) FROM notes_fts WHERE notes_fts MATCH 'number AND 1234'"),
             one(db, "SELECT count(*) FROM notes"), one(replica, "SELECT count(*) FROM notes"));
    }
    if (std::string(t.name).find("rowid") != std::string::npos) {
      printf("   rows: origin %lld, replica %lld\n", one(db, "SELECT count(*) FROM t"), one(replica, "SELECT count(*) FROM t"));
    }
    sqlite3_close(db); sqlite3_close(replica);
  }
}
