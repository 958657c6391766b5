// One HTTP connection: reading and checking each request (RFC 9112), running the Worker,
// writing the answer, and handing an upgraded connection to its WebSocket.
#include "net/http_session.h"
#include "net/url_path.h"
#include "net/error_response.h"

#include "net/websocket.h"
#include "net/websocket_relay.h"
#include "base/exec_context.h"
#include "base/log.h"
#include "base/request_tag.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <sys/resource.h>
#include <sys/socket.h>

#include <cstdio>
#include <optional>
#include <utility>

namespace durable::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

// Writes the response head and body into `out`, reusing its capacity. Hand-written because
// Beast's generic serializer cost about a fifth of a request's instructions; the format is
// small. CR and LF in a header become spaces, so no handler can split the response.
// `requestId`: sent as x-request-id unless the response names one itself.
void serialize(const Response& r, unsigned version, bool keepAlive, bool headRequest, std::string_view requestId,
               std::string& out) {
  out.clear();
  out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  const int status = r.status();
  out += std::to_string(status);
  out += ' ';
  if (!r.statusText().empty()) {
    out += r.statusText();
  } else {
    const auto reason = http::obsolete_reason(static_cast<http::status>(status));
    out.append(reason.data(), reason.size());
  }
  out += "\r\n";
  auto clean = [&out](std::string_view text) {
    for (char c : text) out += (c == '\r' || c == '\n') ? ' ' : c;
  };
  for (const auto& [name, value] : r.headers().entries()) {
    // Framing is ours to decide.
    if (name == "content-length" || name == "transfer-encoding" || name == "connection") continue;
    if (name == kRequestIdHeader) requestId = {};
    clean(name);
    out += ": ";
    clean(value);
    out += "\r\n";
  }
  if (!requestId.empty()) {
    // validRequestId(): nothing to clean.
    out += kRequestIdHeader;
    out += ": ";
    out += requestId;
    out += "\r\n";
  }
  const bool bodyless = status < 200 || status == 204 || status == 304;
  if (!bodyless) {
    out += "content-length: ";
    out += std::to_string(r.text().size());
    out += "\r\n";
  }
  if (!keepAlive) {
    out += "connection: close\r\n";
  } else if (version == 10) {
    out += "connection: keep-alive\r\n";
  }
  out += "\r\n";
  if (!bodyless && !headRequest) out += r.text();
}

}  // namespace

namespace {

using Clock = std::chrono::steady_clock;

class Session final : public HttpSession, public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer& server, SocketShard& shard)
      : socket_(std::move(socket)), server_(server), shard_(shard), slot_(server.connectionCounter()),
        bodyBytes_(server.bodyBytesCounter()) {}
  ~Session() { releaseBody(); }

  void run() override { readRequest(); }

  // The Listener's sweep: ends a connection whose read or write has taken too long.
  void closeIfLate(std::chrono::steady_clock::time_point now) override {
    if (now >= deadline_ && socket_.is_open()) close();
  }

  // On stop: a connection waiting for a request that has not started closes now.
  void closeIfIdle() override {
    if (reading_ && parser_ && !parser_->got_some() && buffer_.size() == 0) close();
  }

 private:
  void readRequest() {
    releaseBody();
    if (server_.stopping()) return close();
    reading_ = true;
    head_ = false;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options().maxHeaderBytes));
    parser_->body_limit(server_.options().maxBodyBytes);
    deadline_ = Clock::now() + server_.options().readTimeout;
    // The head first, so that a client waiting for "100 Continue" gets it before it sends the
    // body. Eager: a body that came in the same packets is parsed along with the head.
    parser_->eager(true);
    scanned_ = 0;
    readHead();
  }

  // Collects the whole head in buffer_ before Beast parses it, to look at the raw bytes:
  // Beast joins obs-fold continuation lines into one value, so a folded header cannot be told
  // apart afterwards, and RFC 9112 5.2 lets a server reject them. Beast consumes nothing of a
  // head until it is complete, so this read ahead changes nothing else.
  void readHead() {
    switch (scanHead()) {
      case HeadScan::kFolded:
        reading_ = false;
        return fail(400, "malformed HTTP request: obs-fold (a header line starting with whitespace)");
      case HeadScan::kIncomplete:
        if (buffer_.size() <= server_.options().maxHeaderBytes) {
          auto space = buffer_.prepare(beast::read_size(buffer_, 65536));
          socket_.async_read_some(space, [self = shared_from_this()](beast::error_code ec, std::size_t n) {
            if (ec) {
              // Nothing or a part of a head, then the end: there is nobody to answer.
              self->reading_ = false;
              return self->close();
            }
            self->buffer_.commit(n);
            self->readHead();
          });
          return;
        }
        // Too large: Beast's header limit answers it (431).
        [[fallthrough]];
      case HeadScan::kComplete:
        http::async_read_header(socket_, buffer_, *parser_,
                                beast::bind_front_handler(&Session::onHeader, shared_from_this()));
    }
  }

  enum class HeadScan { kIncomplete, kComplete, kFolded };

  // Looks for the end of the head in buffer_ (an empty line), and for a line inside it that
  // starts with SP or HTAB: obs-fold, or whitespace before the first field (RFC 9112 2.2),
  // which smuggling relies on as much. Resumes where the last scan stopped.
  HeadScan scanHead() {
    const auto data = buffer_.data();
    const char* p = static_cast<const char*>(data.data());
    const std::size_t n = data.size();
    std::size_t i = scanned_;
    for (; i < n; ++i) {
      if (p[i] != '\n') continue;
      if (i + 1 >= n) break;  // the next byte decides
      const char next = p[i + 1];
      if (next == '\n' || (next == '\r' && (i + 2 >= n || p[i + 2] == '\n'))) {
        if (next == '\r' && i + 2 >= n) break;
        // The first empty line ends the head. Bare LFs, or empty lines before the request
        // line, are Beast's to judge.
        return HeadScan::kComplete;
      }
      if (next == ' ' || next == '\t') return HeadScan::kFolded;
    }
    scanned_ = i;
    return HeadScan::kIncomplete;
  }

  void onHeader(beast::error_code ec, std::size_t bytes) {
    started_ = Clock::now();
    method_ = ec ? metrics::Method::kOther : methodLabel(parser_->get().method());
    if (!ec) {
      // Before any body is read: a framing we do not understand means we cannot know where
      // this request ends, so nothing after it on this connection may be read as a request.
      if (auto bad = framingError(parser_->get())) {
        reading_ = false;
        return fail(bad->first, std::move(bad->second));
      }
    }
    if (!ec && !reserveBody(parser_->content_length().value_or(0))) return refuseBody();
    if (ec || parser_->is_done()) return onRead(ec, bytes);
    const auto& req = parser_->get();
    if (req.version() >= 11 && beast::iequals(req[http::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(socket_, asio::buffer(kContinue), [self = shared_from_this()](beast::error_code e, std::size_t) {
        if (e) return self->close();
        self->readBody();
      });
      return;
    }
    readBody();
  }

  // RFC 9112 6.1 and 3.2: the request's framing and Host, checked on the head alone.
  static std::optional<std::pair<int, std::string>> framingError(const http::request<http::string_body>& req) {
    const auto codings = req.count(http::field::transfer_encoding);
    if (codings > 0) {
      if (req.version() < 11) {
        return std::pair{400, std::string("malformed HTTP request: Transfer-Encoding in an HTTP/1.0 request")};
      }
      std::string_view te = codings == 1 ? std::string_view(req[http::field::transfer_encoding]) : std::string_view("x");
      while (!te.empty() && (te.front() == ' ' || te.front() == '\t')) te.remove_prefix(1);
      while (!te.empty() && (te.back() == ' ' || te.back() == '\t')) te.remove_suffix(1);
      if (!beast::iequals(te, "chunked")) {
        // Only chunked is decoded here; anything else (gzip, "chunked, identity") has a body
        // whose end we cannot find.
        return std::pair{501, std::string("unsupported Transfer-Encoding (only chunked is accepted)")};
      }
      if (req.count(http::field::content_length) > 0) {
        return std::pair{400, std::string("malformed HTTP request: both Transfer-Encoding and Content-Length")};
      }
    }
    if (req.version() >= 11 && req.count(http::field::host) == 0) {
      return std::pair{400, std::string("malformed HTTP request: HTTP/1.1 without a Host header")};
    }
    return std::nullopt;
  }

  // In pieces, so that a chunked body (whose size the head does not say) is counted against
  // the server-wide bound as it grows.
  void readBody() {
    http::async_read_some(socket_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      if (!ec && !self->reserveBody(self->parser_->get().body().capacity())) return self->refuseBody();
      if (ec || self->parser_->is_done()) return self->onRead(ec, n);
      self->readBody();
    });
  }

  // Counts `bytes` of this request's body (what it holds, or will: Beast reserves a declared
  // length at once) in the server's total; false when that would pass max_body_bytes_in_memory.
  bool reserveBody(std::size_t bytes) {
    if (bytes <= bodyHeld_) return true;
    const auto more = static_cast<std::int64_t>(bytes - bodyHeld_);
    const std::int64_t total = bodyBytes_->fetch_add(more, std::memory_order_relaxed) + more;
    bodyHeld_ = bytes;
    return total <= static_cast<std::int64_t>(server_.options().maxBodyBytesInMemory);
  }

  void releaseBody() {
    if (bodyHeld_ == 0) return;
    bodyBytes_->fetch_sub(static_cast<std::int64_t>(bodyHeld_), std::memory_order_relaxed);
    bodyHeld_ = 0;
  }

  // Nothing of the request has run; its body goes at once, and the connection closes after
  // the answer, since the rest of the body may still be on its way.
  void refuseBody() {
    reading_ = false;
    parser_.reset();
    releaseBody();
    log("http: request refused (503): request bodies in memory would pass max_body_bytes_in_memory (",
        server_.options().maxBodyBytesInMemory, ")");
    fail(503, "the server holds too many request bodies right now; retry later");
  }

  void onRead(beast::error_code ec, std::size_t) {
    reading_ = false;
    if (ec) {
      if (ec == http::error::body_limit) return fail(413, "request body is larger than the limit");
      if (ec == http::error::header_limit) return fail(431, "request headers are larger than the limit");
      if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
          ec != http::error::end_of_stream && ec != http::error::partial_message) {
        return fail(400, "malformed HTTP request: " + ec.message());
      }
      return close();
    }
    auto& req = parser_->get();
    if (server_.options().accessLog) {
      logMethod_ = req.method_string();
      logTarget_ = req.target();
    }
    version_ = req.version();
    keepAlive_ = req.keep_alive() && !server_.stopping();
    head_ = req.method() == http::verb::head;

    // The Host header becomes part of the request's URL: one that is not an authority could
    // move the path ("Host: x/admin") past whatever looked at the request line.
    if (req.count(http::field::host) > 1) return fail(400, "malformed HTTP request: more than one Host header");
    std::string host = std::string(req[http::field::host]);
    if (!validAuthority(host)) return fail(400, "malformed HTTP request: bad Host header");
    std::string_view rawTarget = req.target();
    std::string absolutePath;
    if (auto authority = absoluteForm(rawTarget, absolutePath)) {
      // RFC 9112 3.2.2: the target's authority replaces Host (which an HTTP/1.1 client still sends).
      if (authority->empty() || !validAuthority(*authority)) {
        return fail(400, "malformed HTTP request: bad authority in the target");
      }
      host = std::string(*authority);
      rawTarget = absolutePath;
    }
    if (host.empty()) host = server_.options().host + ":" + std::to_string(server_.port());
    if (rawTarget.empty() || rawTarget.front() != '/') return fail(400, "malformed HTTP request: bad target");
    const std::string target = normalizeTarget(rawTarget);
    RequestInit init{.method = std::string_view(req.method_string())};
    if (!req.body().empty() || req.has_content_length()) init.body = req.body();
    Headers headers;
    for (const auto& field : req) headers.append(field.name_string(), field.value());
    std::optional<Request> request;
    try {
      request.emplace("http://" + host + target, init);
    } catch (const std::exception& e) {
      // Only the client's bytes can make a URL or header that Request refuses.
      return fail(400, e.what());
    }
    // As the client sent them: a body without a content-type gets none, as in a Worker. The
    // request's id is its x-request-id when fit to use, else made here (durable::requestId()).
    const TagHeaders given = findTagHeaders(headers);
    tag_ = makeRequestTag(given.id, given.traceparent);
    request->headers() = std::move(headers);
    // The request has its own copy; the parser's goes now (its count stays until the answer).
    std::string().swap(req.body());

    deadline_ = Clock::time_point::max();
    if (!server_.requestStarted()) return close();  // arrived after the drain began: not run
    auto self = shared_from_this();
    // The Worker's code runs as part of this request: its log lines and stub calls carry the tag.
    ContextScope scope({nullptr, 0, tag_});
    spawn(server_.worker().fetch(std::move(*request), server_.host().env()),
          std::function<void(Result<Response>)>([self](Result<Response> r) {
            if (r.ok() && r.value().status() == 101) {
              self->upgrade(r.value());
            } else if (r.ok()) {
              self->write(r.value(), true);
            } else {
              // Worker::fetch turns errors into responses; this is the last resort.
              Response err = errorResponse(ErrorCode::kInternal, "internal error");
              self->write(err, true);
            }
          }));
  }

  // For an absolute-form target ("http://host:port/path?q"): its authority, with the
  // origin-form rest in `path`. nullopt for any other form.
  static std::optional<std::string_view> absoluteForm(std::string_view target, std::string& path) {
    std::size_t schemeEnd;
    if (target.size() >= 7 && beast::iequals(target.substr(0, 7), "http://")) {
      schemeEnd = 7;
    } else if (target.size() >= 8 && beast::iequals(target.substr(0, 8), "https://")) {
      schemeEnd = 8;
    } else {
      return std::nullopt;
    }
    std::string_view rest = target.substr(schemeEnd);
    const std::size_t end = rest.find_first_of("/?#");
    const std::string_view authority = rest.substr(0, end);
    path = end == std::string_view::npos ? "/" : std::string(rest.substr(end));
    if (path.front() != '/') path.insert(path.begin(), '/');
    return authority;
  }

  // A 101 from an object: the connection becomes that object's WebSocket.
  void upgrade(const Response& response) {
    const auto& client = response.webSocket();
    const auto& clientImpl = WebSocketAccess::impl(client);
    if (clientImpl && clientImpl->adopt) {
      server_.requestEnded();
      requestDone(101, 0);
      deadline_ = Clock::time_point::max();
      releaseBody();
      auto adopt = std::move(clientImpl->adopt);
      // What the peer sent after its request's head is the new protocol's already.
      const auto rest = buffer_.data();
      adopt(std::move(socket_), std::move(slot_), std::string(static_cast<const char*>(rest.data()), rest.size()));
      return;
    }
    if (clientImpl && clientImpl->relayed && websocket::is_upgrade(parser_->get())) {
      // An object another node holds: that node ran the handshake; this one passes bytes.
      server_.requestEnded();
      requestDone(101, 0);
      deadline_ = Clock::time_point::max();
      releaseBody();
      startRelay(std::move(socket_), response, parser_->get()[http::field::sec_websocket_key], std::move(slot_));
      return;
    }
    auto server = clientImpl ? clientImpl->partner.lock() : nullptr;
    if (!websocket::is_upgrade(parser_->get()) || !server || !server->accepted || !server->shard) {
      keepAlive_ = false;
      Response err = errorResponse(ErrorCode::kInternal,
                                   "a 101 response needs a WebSocket upgrade request and an accepted WebSocketPair");
      return write(err, true);
    }
    server_.requestEnded();
    requestDone(101, 0);
    // RFC 6455: a client sends no frame before the 101, so nothing buffered is lost here.
    auto request = parser_->release();
    deadline_ = Clock::time_point::max();
    releaseBody();
    // The connection's place in max_connections goes with it: the socket still counts.
    adoptWebSocket(server, std::move(socket_), std::move(request), shard_, std::move(slot_));
  }

  void fail(int status, std::string message) {
    keepAlive_ = false;
    Response r = protocolErrorResponse(status, message);
    write(r, false);
  }

  void write(const Response& res, bool counted) {
    serialize(res, version_ ? version_ : 11, keepAlive_, head_, requestIdOf(tag_), out_);
    deadline_ = Clock::now() + kWriteTimeout;
    const int status = res.status();
    const bool bodyless = head_ || status < 200 || status == 204 || status == 304;
    const std::size_t bodyBytes = bodyless ? 0 : res.text().size();
    asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this(), counted, status, bodyBytes](
                                                       beast::error_code ec, std::size_t) {
      if (counted) self->server_.requestEnded();
      self->requestDone(status, bodyBytes);
      // A large body's buffer is not worth keeping for the next request.
      if (self->out_.capacity() > 64 * 1024) std::string().swap(self->out_);
      if (ec || !self->keepAlive_) return self->close();
      self->readRequest();
    });
  }

  static metrics::Method methodLabel(http::verb verb) {
    switch (verb) {
      case http::verb::get: return metrics::Method::kGet;
      case http::verb::head: return metrics::Method::kHead;
      case http::verb::post: return metrics::Method::kPost;
      case http::verb::put: return metrics::Method::kPut;
      case http::verb::delete_: return metrics::Method::kDelete;
      case http::verb::patch: return metrics::Method::kPatch;
      case http::verb::options: return metrics::Method::kOptions;
      default: return metrics::Method::kOther;
    }
  }

  // The response is written (or the connection upgraded): counted, and logged when asked.
  void requestDone(int status, std::size_t bodyBytes) {
    // A request refused before its head was complete has no start: it took no time of ours.
    const auto now = Clock::now();
    const auto took = started_ == Clock::time_point{} ? Clock::duration{} : now - started_;
    if (server_.options().countInMetrics) {
      shard_.metrics().countRequest(method_, status, std::chrono::duration<double>(took).count());
    }
    if (server_.options().accessLog) logAccess(status, bodyBytes, took);
    started_ = {};
    method_ = metrics::Method::kOther;
    tag_ = {};
  }

  // From the request's head to its response written (or the connection upgraded).
  void logAccess(int status, std::size_t bodyBytes, Clock::duration took) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
    char duration[32];
    std::snprintf(duration, sizeof duration, "%lld.%03lld", static_cast<long long>(us / 1000),
                  static_cast<long long>(us % 1000));
    // A request that failed to parse has no method or target to show.
    if (logMethod_.empty()) logMethod_ = "-";
    if (logTarget_.empty()) logTarget_ = "-";
    for (char& c : logTarget_) {
      if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) c = '?';
    }
    ContextScope scope({nullptr, 0, tag_});  // the line names the request's id
    logInfo("access ", logMethod_, " ", logTarget_, " status=", status, " bytes=", bodyBytes, " duration_ms=", duration);
    logMethod_.clear();
    logTarget_.clear();
  }

  void close() {
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    socket_.close(ec);
  }

  tcp::socket socket_;
  // When a read or write still pending then has taken too long; the Listener's sweep closes
  // the connection. A timestamp, not a timer per request: arming and cancelling a timer for
  // every read and write cost several percent of a request.
  Clock::time_point deadline_ = Clock::time_point::max();
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string out_;
  std::size_t scanned_ = 0;  // bytes of buffer_ scanHead() has looked at
  bool head_ = false;
  HttpServer& server_;
  SocketShard& shard_;
  ConnectionSlot slot_;
  std::shared_ptr<std::atomic<std::int64_t>> bodyBytes_;
  std::size_t bodyHeld_ = 0;  // this connection's share of bodyBytes_
  unsigned version_ = 11;
  bool keepAlive_ = true;
  bool reading_ = false;
  // The request being answered: when its head was read, its method.
  Clock::time_point started_{};
  metrics::Method method_ = metrics::Method::kOther;
  RequestTag tag_{};  // the request's id, from its head until its response is written
  // For the access log, when it is on.
  std::string logMethod_;
  std::string logTarget_;
};

}  // namespace

std::shared_ptr<HttpSession> makeHttpSession(tcp::socket socket, HttpServer& server, SocketShard& shard) {
  return std::make_shared<Session>(std::move(socket), server, shard);
}

}  // namespace durable::detail
