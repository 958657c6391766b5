// A real PostgreSQL server for tests and benchmarks: a fresh cluster (initdb) in a temporary
// directory, served on a free loopback port by the postmaster as a child process, with fsync
// on. Cluster mode and SQL storage are tested against it, and so are crashes: kill() is a
// kill -9 of the whole server (postmaster and backends, as when the machine dies), pause()
// a SIGSTOP of all of it (a server that stops answering but keeps its connections open).
//
// PostgreSQL refuses to run as root; under root the cluster belongs to, and the server runs
// as, the `postgres` account the Debian package creates (or `nobody` when it is missing).
// The binaries are looked up in DURABLE_POSTGRES_BIN, then /usr/lib/postgresql/15/bin.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace durable_test {

class PostgresServer {
 public:
  struct Options {
    // Extra `-c name=value` settings for the postmaster.
    std::vector<std::string> settings;
    std::chrono::seconds readyTimeout{30};
  };

  // initdb, then start(). Throws std::runtime_error with the server's log on failure.
  PostgresServer();
  explicit PostgresServer(Options options);
  ~PostgresServer();  // kills the server if running, removes the directory
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Starts the postmaster on the same data directory and port and waits until it accepts
  // connections (after a kill(), that includes crash recovery).
  void start();
  // Fast shutdown (SIGINT), waits for the postmaster to exit.
  void stop();
  // SIGKILL to every process of the server, then waits for the postmaster.
  void kill();
  // SIGSTOP / SIGCONT to every process of the server.
  void pause();
  void resume();

  bool running() const { return pid_ > 0; }
  std::uint16_t port() const { return port_; }
  // A libpq connection string for the superuser `durable`, database `postgres`, over TCP.
  std::string connectionString() const;
  // A new empty database on this server, and the connection string for it: tests that share
  // one server see nothing of each other's rows.
  std::string createDatabase();

  // One server for the whole test process, started on first use and killed at exit: starting
  // one costs about a second, a database a few milliseconds.
  static PostgresServer& shared();
  std::string logText() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  void initdb();
  void signalAll(int sig);
  void runAs(const std::vector<std::string>& argv, const std::filesystem::path& log);  // waits

  Options options_;
  std::filesystem::path bin_;
  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;  // the postmaster, leader of its own process group
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool dropPrivileges_ = false;
  int databases_ = 0;
};

}  // namespace durable_test
