#include "storage/pg_connection.h"

#include <durable/error.h>

#include <boost/asio/post.hpp>

#include <cstring>

namespace durable::detail {

namespace {

// A connection attempt gives up after this long (a partitioned network would otherwise block
// the caller for the kernel's TCP timeout), and a connection whose server went silent is found
// dead within about 30 s (TCP keepalives, and unacknowledged sends), not the kernel's two hours;
// a connection string's own settings win. (PQconnectPoll ignores connect_timeout: PgConnection
// keeps its own deadline.)
struct ConnectParams {
  ConnectParams(const std::string& conninfo, const std::string& sessionOptions)
      : keys{"connect_timeout", "keepalives_idle", "keepalives_interval", "keepalives_count",
             "tcp_user_timeout", "dbname", sessionOptions.empty() ? nullptr : "options", nullptr},
        values{"2", "10", "5", "3", "30000", conninfo.c_str(), sessionOptions.c_str(), nullptr} {}
  const char* keys[8];
  const char* values[8];
};

void quiet(PGconn* c) {
  // NOTICEs (CREATE ... IF NOT EXISTS on a schema already there) are not ours to print.
  PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
}

PGconn* open(const std::string& conninfo, const std::string& sessionOptions = {}) {
  const ConnectParams params(conninfo, sessionOptions);
  PGconn* c = PQconnectdbParams(params.keys, params.values, 1);
  if (c == nullptr) throw Error(ErrorCode::kUnavailable, "PostgreSQL: out of memory");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string why = PQerrorMessage(c);
    PQfinish(c);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    throw Error(ErrorCode::kUnavailable, "cannot connect to PostgreSQL: " + why);
  }
  quiet(c);
  return c;
}

std::string trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::uint64_t bigEndian(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace

PgParams& PgParams::bytes(std::string_view b) {
  values_.emplace_back(b);
  formats_.push_back(1);
  return *this;
}

PgParams& PgParams::int8(std::int64_t v) {
  std::string b(8, '\0');
  auto u = static_cast<std::uint64_t>(v);
  for (int i = 7; i >= 0; --i, u >>= 8) b[static_cast<std::size_t>(i)] = static_cast<char>(u & 0xff);
  values_.push_back(std::move(b));
  formats_.push_back(1);
  return *this;
}

PgParams& PgParams::text(std::string_view t) {
  values_.emplace_back(t);
  formats_.push_back(0);
  return *this;
}

PgConnection::PgConnection(std::string conninfo, boost::asio::io_context& loop, std::string sessionOptions,
                           Connect when)
    : conninfo_(std::move(conninfo)), loop_(loop), sessionOptions_(std::move(sessionOptions)), connectDeadline_(loop) {
  if (when == Connect::kNow) {
    conn_ = open(conninfo_, sessionOptions_);
    setUp();
  }
}

PgConnection::~PgConnection() {
  *alive_ = false;
  if (socket_) {
    socket_->cancel();
    socket_->release();  // libpq owns the descriptor
  }
  if (conn_) PQfinish(conn_);
}

void PgConnection::watch() {
  if (socket_) {
    socket_->cancel();
    socket_->release();
  }
  socket_ = std::make_unique<boost::asio::posix::stream_descriptor>(loop_, PQsocket(conn_));
}

void PgConnection::setUp() {
  if (PQsetnonblocking(conn_, 1) != 0 || PQenterPipelineMode(conn_) != 1) {
    const std::string why = trimmed(PQerrorMessage(conn_));
    PQfinish(conn_);
    conn_ = nullptr;
    throw Error(ErrorCode::kUnavailable, "PostgreSQL: cannot enter pipeline mode: " + why);
  }
  quiet(conn_);
  ++generation_;
  reading_ = writing_ = false;
  watch();
  prepared_.clear();
  backendPid_ = PQbackendPID(conn_);
}

void PgConnection::startConnect() {
  const ConnectParams params(conninfo_, sessionOptions_);
  conn_ = PQconnectStartParams(params.keys, params.values, 1);
  if (conn_ == nullptr) return connectFailed("out of memory");
  if (PQstatus(conn_) == CONNECTION_BAD || PQsocket(conn_) < 0) return connectFailed(trimmed(PQerrorMessage(conn_)));
  connecting_ = true;
  const std::uint64_t attempt = ++generation_;
  connectDeadline_.expires_after(kConnectTimeout);
  connectDeadline_.async_wait([this, alive = alive_, attempt](const boost::system::error_code& ec) {
    if (!*alive || ec || !connecting_ || attempt != generation_) return;
    connectFailed("no answer within " + std::to_string(kConnectTimeout.count()) + " ms");
  });
  // libpq has begun (a non-blocking connect): it wants the socket writable first.
  pollConnect(PGRES_POLLING_WRITING);
}

void PgConnection::pollConnect(PostgresPollingStatusType last) {
  // The socket may change between polls (libpq tries each address in turn): a descriptor is
  // made for each wait, never reused for a closed one whose number came back.
  if (PQsocket(conn_) < 0) return connectFailed(trimmed(PQerrorMessage(conn_)));
  watch();
  const auto what = last == PGRES_POLLING_READING ? boost::asio::posix::stream_descriptor::wait_read
                                                  : boost::asio::posix::stream_descriptor::wait_write;
  socket_->async_wait(what, [this, alive = alive_, attempt = generation_](const boost::system::error_code& ec) {
    if (!*alive || ec || !connecting_ || attempt != generation_) return;
    switch (const auto status = PQconnectPoll(conn_)) {
      case PGRES_POLLING_OK:
        return connected();
      case PGRES_POLLING_FAILED:
        return connectFailed(trimmed(PQerrorMessage(conn_)));
      default:
        return pollConnect(status);
    }
  });
}

void PgConnection::connected() {
  connecting_ = false;
  connectDeadline_.cancel();
  try {
    setUp();
  } catch (const std::exception& e) {
    return connectFailed(e.what());
  }
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& w : waiting) sendNow(std::move(w.queries), std::move(w.pending));
}

void PgConnection::connectFailed(const std::string& why) {
  connecting_ = false;
  ++generation_;
  connectDeadline_.cancel();
  if (socket_) {
    socket_->cancel();
    socket_->release();
    socket_.reset();
  }
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
  auto error = std::make_exception_ptr(Error(ErrorCode::kUnavailable, "cannot connect to PostgreSQL: " + why));
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& w : waiting) {
    w.pending.outcome.error = error;
    complete(std::move(w.pending));
  }
}

void PgConnection::close() {
  if (connecting_) return connectFailed("the connection was closed before it was made");
  fail("the connection to PostgreSQL was closed");
}

void PgConnection::exchange(std::vector<PgQuery> queries, std::function<void(PgOutcome)> done) {
  Pending p;
  p.done = std::move(done);
  if (!connecting_ && (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK)) {
    if (conn_) fail("the connection to PostgreSQL was lost");
    waiting_.push_back({std::move(queries), std::move(p)});
    startConnect();
    return;
  }
  if (connecting_) {
    waiting_.push_back({std::move(queries), std::move(p)});
    return;
  }
  sendNow(std::move(queries), std::move(p));
}

void PgConnection::sendNow(std::vector<PgQuery> queries, Pending p) {
  if (conn_ != nullptr) send(queries, p);
  if (conn_ == nullptr) {  // sending failed: fail() took what was in flight; this one too
    p.outcome.error = std::make_exception_ptr(Error(ErrorCode::kUnavailable, "the connection to PostgreSQL was lost"));
    complete(std::move(p));
    return;
  }
  p.outcome.sent = true;
  pending_.push_back(std::move(p));
  flush();
  waitRead();
}

void PgConnection::send(std::vector<PgQuery>& queries, Pending& p) {
  std::vector<const char*> values;
  std::vector<int> lengths;
  // Every Parse before the first statement runs: a failing statement makes the server skip
  // the rest of the exchange, and a skipped Parse would leave a name we think is prepared.
  bool sent = true;
  for (auto& q : queries) {
    if (prepared_.count(q.statement->name)) continue;
    if (!PQsendPrepare(conn_, q.statement->name.c_str(), q.statement->sql.c_str(), 0, nullptr)) {
      sent = false;
      break;
    }
    prepared_.insert(q.statement->name);
    ++p.prepares;
  }
  for (auto& q : queries) {
    if (!sent) break;
    values.clear();
    lengths.clear();
    for (const auto& v : q.params.values_) {
      values.push_back(v.data());
      lengths.push_back(static_cast<int>(v.size()));
    }
    if (!PQsendQueryPrepared(conn_, q.statement->name.c_str(), q.params.size(), values.data(), lengths.data(),
                             q.params.formats_.data(), 1)) {
      break;
    }
    ++p.queries;
  }
  if (p.queries != queries.size() || !PQpipelineSync(conn_)) {
    fail("cannot send to PostgreSQL: " + trimmed(PQerrorMessage(conn_)));
  }
}

void PgConnection::flush() {
  if (conn_ == nullptr || writing_) return;
  const int rc = PQflush(conn_);
  if (rc < 0) {
    fail("cannot send to PostgreSQL: " + trimmed(PQerrorMessage(conn_)));
    return;
  }
  if (rc == 0) return;
  writing_ = true;
  socket_->async_wait(boost::asio::posix::stream_descriptor::wait_write,
                      [this, alive = alive_, connection = generation_](const boost::system::error_code& ec) {
                        if (!*alive || connection != generation_) return;  // a connection since closed
                        writing_ = false;
                        if (!ec) flush();
                      });
}

void PgConnection::waitRead() {
  if (conn_ == nullptr || reading_ || pending_.empty()) return;
  reading_ = true;
  socket_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      [this, alive = alive_, connection = generation_](const boost::system::error_code& ec) {
                        if (!*alive || connection != generation_) return;
                        reading_ = false;
                        if (!ec) onReadable();
                      });
}

void PgConnection::onReadable() {
  if (conn_ == nullptr) return;
  if (!PQconsumeInput(conn_)) {
    fail("lost the connection to PostgreSQL: " + trimmed(PQerrorMessage(conn_)));
    return;
  }
  drain();
  if (conn_ != nullptr) {
    flush();  // reading may have made room to send the rest
    waitRead();
  }
}

void PgConnection::drain() {
  while (conn_ != nullptr && !pending_.empty() && !PQisBusy(conn_)) {
    Pending& p = pending_.front();
    PgResult r(PQgetResult(conn_));
    if (!r) {
      if (p.inResult) {  // the end of one statement's results
        ++p.seen;
        p.inResult = false;
        p.strayNulls = 0;
        continue;
      }
      // Nothing was being read, so nothing ends here. Once in a row is tolerated; more means
      // libpq lost the pipeline (or the connection), and the loop would otherwise ask forever.
      if (PQstatus(conn_) != CONNECTION_OK || ++p.strayNulls > 2) {
        fail("lost the connection to PostgreSQL: " + trimmed(PQerrorMessage(conn_)));
        return;
      }
      continue;
    }
    p.strayNulls = 0;
    if (p.seen < p.prepares + p.queries) {
      p.inResult = true;
      const auto status = PQresultStatus(r.get());
      if (status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR) {
        if (!p.outcome.error) {
          const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
          p.outcome.sqlState = state ? state : "";
          const char* detail = PQresultErrorField(r.get(), PG_DIAG_MESSAGE_DETAIL);
          p.outcome.detail = detail ? detail : "";
          p.outcome.error = std::make_exception_ptr(
              Error(ErrorCode::kUnavailable, "PostgreSQL: " + trimmed(PQresultErrorMessage(r.get()))));
        }
      } else if (status == PGRES_PIPELINE_ABORTED) {
        if (!p.outcome.error) {
          p.outcome.error = std::make_exception_ptr(Error(ErrorCode::kUnavailable, "PostgreSQL: pipeline aborted"));
        }
      }
      if (p.seen >= p.prepares) p.outcome.results.push_back(std::move(r));
      continue;
    }
    if (PQresultStatus(r.get()) != PGRES_PIPELINE_SYNC) {
      fail("PostgreSQL answered out of order");
      return;
    }
    Pending done = std::move(p);
    pending_.pop_front();
    if (done.outcome.error) done.outcome.results.clear();
    complete(std::move(done));
  }
}

void PgConnection::fail(const std::string& why) {
  auto error = std::make_exception_ptr(Error(ErrorCode::kUnavailable, why));
  while (!pending_.empty()) {
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    p.outcome.results.clear();
    p.outcome.error = error;
    p.outcome.sqlState.clear();
    p.outcome.detail.clear();
    complete(std::move(p));
  }
  if (socket_) {
    socket_->cancel();
    socket_->release();
    socket_.reset();
  }
  reading_ = writing_ = false;
  ++generation_;
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

void PgConnection::complete(Pending p) {
  boost::asio::post(loop_, [done = std::move(p.done), outcome = std::make_shared<PgOutcome>(std::move(p.outcome))] {
    done(std::move(*outcome));
  });
}

PgBlocking::PgBlocking(const std::string& conninfo) : conn_(open(conninfo)) {}

PgBlocking::~PgBlocking() { PQfinish(conn_); }

namespace {
PgResult checked(PgResult r, PGconn* conn) {
  const auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    throw Error(ErrorCode::kUnavailable, "PostgreSQL: " + trimmed(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn)));
  }
  return r;
}
}  // namespace

PgResult PgBlocking::run(std::string_view sql, const PgParams& params) {
  std::vector<const char*> values;
  std::vector<int> lengths;
  for (const auto& v : params.values_) {
    values.push_back(v.data());
    lengths.push_back(static_cast<int>(v.size()));
  }
  const std::string text(sql);
  return checked(PgResult(PQexecParams(conn_, text.c_str(), params.size(), nullptr, values.data(), lengths.data(),
                                        params.formats_.data(), 1)),
                 conn_);
}

void PgBlocking::script(std::string_view sql) {
  const std::string text(sql);
  checked(PgResult(PQexec(conn_, text.c_str())), conn_);
}

std::int64_t pgInt8(const PGresult* r, int row, int col) {
  return static_cast<std::int64_t>(bigEndian(PQgetvalue(r, row, col), 8));
}

std::int32_t pgInt4(const PGresult* r, int row, int col) {
  return static_cast<std::int32_t>(bigEndian(PQgetvalue(r, row, col), 4));
}

std::string_view pgBytes(const PGresult* r, int row, int col) {
  return {PQgetvalue(r, row, col), static_cast<std::size_t>(PQgetlength(r, row, col))};
}

bool pgNull(const PGresult* r, int row, int col) { return PQgetisnull(r, row, col) != 0; }

}  // namespace durable::detail
