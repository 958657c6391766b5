// The PostgreSQL that cluster mode and SQL storage are tested against (tests/support/
// postgres_server.h) is a real server that behaves as one under the failures those tests
// inflict: a committed row survives a kill -9 of every server process, an uncommitted one
// does not, and a SIGSTOPped server stops answering until SIGCONT, with fsync on throughout.
#include "support/postgres_server.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <string>

namespace {

using durable_test::PostgresServer;

struct Conn {
  explicit Conn(const std::string& info) : c(PQconnectdb(info.c_str())) {}
  ~Conn() { PQfinish(c); }
  bool ok() const { return PQstatus(c) == CONNECTION_OK; }
  std::string error() const { return PQerrorMessage(c); }
  // The first column of the first row, or "ERROR: ..." when the statement failed.
  std::string one(const std::string& sql) {
    PGresult* r = PQexec(c, sql.c_str());
    std::string out;
    const auto st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      out = "ERROR: " + std::string(PQresultErrorMessage(r));
    } else if (st == PGRES_TUPLES_OK && PQntuples(r) > 0) {
      out = PQgetvalue(r, 0, 0);
    }
    PQclear(r);
    return out;
  }
  PGconn* c;
};

TEST(PostgresHarness, ServesPostgres15WithFsyncOnLoopback) {
  PostgresServer pg;
  Conn conn(pg.connectionString());
  ASSERT_TRUE(conn.ok()) << conn.error();
  EXPECT_EQ(conn.one("SHOW server_version_num").substr(0, 2), "15");
  EXPECT_EQ(conn.one("SHOW fsync"), "on");
  EXPECT_EQ(conn.one("SHOW synchronous_commit"), "on");
  EXPECT_EQ(conn.one("SHOW listen_addresses"), "127.0.0.1");
  EXPECT_EQ(conn.one("SELECT current_user"), "durable");
}

TEST(PostgresHarness, CommittedRowsSurviveKillNineAndUncommittedOnesDoNot) {
  PostgresServer pg;
  {
    Conn conn(pg.connectionString());
    ASSERT_TRUE(conn.ok()) << conn.error();
    ASSERT_EQ(conn.one("CREATE TABLE t (k int PRIMARY KEY, v text)"), "");
    for (int i = 0; i < 100; ++i) {
      ASSERT_EQ(conn.one("INSERT INTO t VALUES (" + std::to_string(i) + ", 'v" + std::to_string(i) + "')"), "");
    }
    Conn open(pg.connectionString());
    ASSERT_TRUE(open.ok());
    ASSERT_EQ(open.one("BEGIN"), "");
    ASSERT_EQ(open.one("INSERT INTO t VALUES (1000, 'never committed')"), "");
    pg.kill();  // while the second transaction is open
  }
  EXPECT_FALSE(pg.running());
  pg.start();  // crash recovery
  Conn conn(pg.connectionString());
  ASSERT_TRUE(conn.ok()) << conn.error();
  EXPECT_EQ(conn.one("SELECT count(*) FROM t"), "100");
  EXPECT_EQ(conn.one("SELECT v FROM t WHERE k = 99"), "v99");
  EXPECT_EQ(conn.one("SELECT count(*) FROM t WHERE k = 1000"), "0");
  EXPECT_NE(pg.logText().find("database system was interrupted"), std::string::npos) << pg.logText();
}

TEST(PostgresHarness, APausedServerDoesNotAnswerUntilResumed) {
  PostgresServer pg;
  Conn before(pg.connectionString());
  ASSERT_TRUE(before.ok());
  pg.pause();
  const auto t0 = std::chrono::steady_clock::now();
  Conn during(pg.connectionString() + " connect_timeout=1");
  EXPECT_FALSE(during.ok());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900));
  pg.resume();
  EXPECT_EQ(before.one("SELECT 1"), "1");
  Conn after(pg.connectionString());
  EXPECT_TRUE(after.ok()) << after.error();
}

TEST(PostgresHarness, AStoppedServerStartsAgainWithItsData) {
  PostgresServer pg;
  {
    Conn conn(pg.connectionString());
    ASSERT_EQ(conn.one("CREATE TABLE kept (x int)"), "");
    ASSERT_EQ(conn.one("INSERT INTO kept VALUES (7)"), "");
  }
  pg.stop();
  EXPECT_FALSE(pg.running());
  EXPECT_FALSE(Conn(pg.connectionString() + " connect_timeout=1").ok());
  pg.start();
  Conn conn(pg.connectionString());
  EXPECT_EQ(conn.one("SELECT x FROM kept"), "7");
}

}  // namespace
