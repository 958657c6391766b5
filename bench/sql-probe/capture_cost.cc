// Issue 15 design probe (docs/sql-design.md): the CPU cost per turn of committing one row on an
// object's own database, and of capturing the change (preupdate hook, session). Run by run.sh.
#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <sqlite3.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
namespace fs = std::filesystem;
static void ex(sqlite3* db, const char* sql) { char* e = nullptr; if (sqlite3_exec(db, sql, 0, 0, &e)) { fprintf(stderr, "%s\n", e); exit(1); } }
struct Step { sqlite3_stmt* s; void run() { sqlite3_step(s); sqlite3_reset(s); } };
int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp/durable-sql-probe-cost";
  fs::remove_all(dir); fs::create_directories(dir);
  sqlite3* db; sqlite3_open((dir + "/a.sqlite").c_str(), &db);
  ex(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO c VALUES(1,0);");
  sqlite3_stmt *b, *u, *c, *sp, *rel;
  sqlite3_prepare_v3(db, "BEGIN", -1, SQLITE_PREPARE_PERSISTENT, &b, 0);
  sqlite3_prepare_v3(db, "UPDATE c SET n = n + 1 WHERE id = 1 RETURNING n", -1, SQLITE_PREPARE_PERSISTENT, &u, 0);
  sqlite3_prepare_v3(db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &c, 0);
  sqlite3_prepare_v3(db, "SAVEPOINT turn", -1, SQLITE_PREPARE_PERSISTENT, &sp, 0);
  sqlite3_prepare_v3(db, "RELEASE turn", -1, SQLITE_PREPARE_PERSISTENT, &rel, 0);
  const int N = 20000;
  auto time = [&](const char* what, auto fn) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < N; ++i) fn(i);
    printf("%-60s %6.2f us/turn\n", what, std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / N);
  };
  time("UPDATE..RETURNING alone, autocommit (a commit per turn)", [&](int) { Step{u}.run(); });
  time("BEGIN; UPDATE; COMMIT (prepared)", [&](int) { Step{b}.run(); Step{u}.run(); Step{c}.run(); });
  ex(db, "BEGIN");
  time("SAVEPOINT; UPDATE; RELEASE inside one long transaction", [&](int) { Step{sp}.run(); Step{u}.run(); Step{rel}.run(); });
  ex(db, "COMMIT");
  // preupdate hook: record table, op, rowid and new values into a buffer
  static std::string log; static size_t bytes = 0;
  sqlite3_preupdate_hook(db, [](void*, sqlite3* d, int op, const char*, const char* table, sqlite3_int64, sqlite3_int64 newRowid) {
    log.clear(); log += table; log += char(op); log.append((const char*)&newRowid, 8);
    int n = sqlite3_preupdate_count(d);
    for (int i = 0; i < n; ++i) {
      sqlite3_value* v = nullptr;
      if (op != SQLITE_DELETE) sqlite3_preupdate_new(d, i, &v);
      if (v) { int t = sqlite3_value_type(v); log += char(t); if (t == SQLITE_INTEGER) { auto x = sqlite3_value_int64(v); log.append((const char*)&x, 8); } else if (t == SQLITE_TEXT || t == SQLITE_BLOB) log.append((const char*)sqlite3_value_blob(v), sqlite3_value_bytes(v)); }
    }
    bytes += log.size();
  }, nullptr);
  time("BEGIN; UPDATE; COMMIT with a preupdate hook recording the row", [&](int) { Step{b}.run(); Step{u}.run(); Step{c}.run(); });
  printf("   preupdate record: %.1f B/turn\n", double(bytes) / N);
  sqlite3_preupdate_hook(db, nullptr, nullptr);
  time("BEGIN; UPDATE; COMMIT with a session per turn + changeset", [&](int) {
    sqlite3_session* s; sqlite3session_create(db, "main", &s); sqlite3session_attach(s, "c");
    Step{b}.run(); Step{u}.run(); Step{c}.run();
    int n; void* p; sqlite3session_changeset(s, &n, &p); sqlite3_free(p); sqlite3session_delete(s); });
}
