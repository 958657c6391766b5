// One libpq connection driven by a shard's event loop: exchanges (statements ended by a
// pipeline sync, which PostgreSQL runs as one implicit transaction) are pipelined without a
// thread per query and without a blocking call (libpq's pipeline mode, "Pipeline Mode" in the
// libpq docs). Used by the PostgreSQL engine (storage/postgres_engine.h).
//
// Why the implicit transaction of a sync and not BEGIN/COMMIT: when a statement fails, the
// server skips the rest up to the sync and rolls back what ran, so a fenced commit whose fence
// fails writes nothing and leaves the session clean for the next exchange, with no round trip.
//
// A lost connection fails every exchange in flight with kUnavailable: for a commit its outcome
// is unknown, which the engine's caller treats as a failed commit (the objects are reset and
// reload what PostgreSQL has). The next exchange connects again, without blocking the loop
// (PQconnectStartParams/PQconnectPoll): exchanges made meanwhile wait for the connection and
// fail together if it cannot be made within kConnectTimeout. A shard thread stuck in a
// connect would stall every object of the shard, those that need no storage too.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace durable::detail {

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// The SQLSTATE a fenced commit fails with when a slot it writes to is no longer this node's
// at the epoch it holds (docs/cluster.md).
inline constexpr std::string_view kFenceSqlState = "DU001";

// A statement's parameters. Binary ones are sent as bytes in PostgreSQL's binary format
// (bytea as is, bigint as 8 big-endian bytes); text ones in its text format (arrays).
class PgParams {
 public:
  PgParams& bytes(std::string_view b);
  PgParams& int8(std::int64_t v);
  PgParams& text(std::string_view t);
  int size() const { return static_cast<int>(values_.size()); }

 private:
  friend class PgConnection;
  friend class PgBlocking;
  std::vector<std::string> values_;
  std::vector<int> formats_;
};

// A statement prepared once per connection, by name, when an exchange first uses it.
struct PgStatement {
  std::string name;
  std::string sql;
};

struct PgQuery {
  const PgStatement* statement;
  PgParams params;
};

// What an exchange answers: one result per query, in order (binary format), or the first
// error. `sqlState` is the error's SQLSTATE ("" when the connection failed), `detail` its
// DETAIL field.
struct PgOutcome {
  std::vector<PgResult> results;
  std::exception_ptr error;
  std::string sqlState;
  std::string detail;
  // Whether the exchange reached libpq's connection (it may have run on the server); false when
  // it failed before: no connection could be made, or sending failed at once.
  bool sent = false;
};

class PgConnection {
 public:
  // How long a connection attempt may take before the exchanges waiting for it fail.
  static constexpr std::chrono::milliseconds kConnectTimeout{2000};
  enum class Connect { kNow, kOnFirstUse };

  // kNow connects at once (blocking: start-up) and throws Error(kUnavailable) with libpq's
  // message; kOnFirstUse connects, without blocking, when the first exchange is made.
  // `sessionOptions`: libpq's `options` keyword ("-c name=value ..."), for every connection.
  PgConnection(std::string conninfo, boost::asio::io_context& loop, std::string sessionOptions = {},
               Connect when = Connect::kNow);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Sends `queries` followed by a sync; `done` runs on the loop once the sync's answer is in
  // (the transaction is committed: with synchronous_commit on, durable), never inside this call.
  void exchange(std::vector<PgQuery> queries, std::function<void(PgOutcome)> done);
  // Exchanges made and not yet answered (sent, or waiting for the connection).
  std::size_t inFlight() const { return pending_.size() + waiting_.size(); }

  // Closes the connection and fails what is in flight; used on shutdown.
  void close();
  // The server process of the last connection made (0: none yet), which outlives a connection
  // that failed on this side: a transaction it was running may still be finishing there.
  int lastBackendPid() const { return backendPid_; }

 private:
  struct Pending {
    std::size_t prepares = 0;  // results to drop before the queries'
    std::size_t queries = 0;
    std::size_t seen = 0;      // prepares and queries whose results ended
    bool inResult = false;     // a result of the current query was taken, its end not yet
    int strayNulls = 0;        // PQgetResult's NULLs in a row that ended nothing
    PgOutcome outcome;
    std::function<void(PgOutcome)> done;
  };

  struct Waiting {
    std::vector<PgQuery> queries;
    Pending pending;
  };

  void startConnect();
  void pollConnect(PostgresPollingStatusType last);
  void connected();
  void connectFailed(const std::string& why);
  void watch();  // a descriptor for the connection's current socket
  void setUp();  // pipeline mode and the session's bookkeeping, once connected
  void sendNow(std::vector<PgQuery> queries, Pending p);
  void send(std::vector<PgQuery>& queries, Pending& p);
  void flush();
  void waitRead();
  void onReadable();
  void drain();
  void fail(const std::string& why);
  void complete(Pending p);

  const std::string conninfo_;
  boost::asio::io_context& loop_;
  const std::string sessionOptions_;
  PGconn* conn_ = nullptr;
  int backendPid_ = 0;
  std::unique_ptr<boost::asio::posix::stream_descriptor> socket_;
  std::set<std::string> prepared_;
  std::deque<Pending> pending_;
  std::deque<Waiting> waiting_;  // made while connecting
  bool connecting_ = false;
  boost::asio::steady_timer connectDeadline_;
  // Bumped by every connection made, attempted or closed: a wait of an earlier one is ignored.
  std::uint64_t generation_ = 0;
  bool reading_ = false, writing_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A blocking connection for start-up, the admin API and the cluster's own bookkeeping.
class PgBlocking {
 public:
  explicit PgBlocking(const std::string& conninfo);  // throws Error(kUnavailable)
  ~PgBlocking();
  PgBlocking(const PgBlocking&) = delete;
  PgBlocking& operator=(const PgBlocking&) = delete;

  // Runs one statement (text parameters unless given binary ones, binary results); throws
  // Error(kUnavailable) with the server's message on failure.
  PgResult run(std::string_view sql, const PgParams& params = {});
  // Runs several statements separated by semicolons, no parameters.
  void script(std::string_view sql);
  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }
  PGconn* raw() { return conn_; }

 private:
  PGconn* conn_;
};

// An array in PostgreSQL's text format ("{1,2,3}"), for a text parameter cast to int[] or bigint[].
template <class Number>
std::string pgArray(const std::vector<Number>& values) {
  std::string out = "{";
  for (const auto& v : values) {
    if (out.size() > 1) out += ',';
    out += std::to_string(v);
  }
  return out + "}";
}

// Reading binary results.
std::int64_t pgInt8(const PGresult* r, int row, int col);
std::int32_t pgInt4(const PGresult* r, int row, int col);
std::string_view pgBytes(const PGresult* r, int row, int col);
bool pgNull(const PGresult* r, int row, int col);

}  // namespace durable::detail
