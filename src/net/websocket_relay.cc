#include "net/websocket_relay.h"

#include "base/encoding.h"
#include "net/asio_await.h"

#include <durable/error.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <array>
#include <atomic>
#include <list>
#include <mutex>
#include <optional>

#include <openssl/rand.h>
#include <openssl/sha.h>
#include <unistd.h>

namespace durable::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

Error unreachable(const std::string& what) { return Error(ErrorCode::kUnavailable, what, {.retryable = false}); }

// Where the owner's stream is between frames (RFC 6455 5.2): the relay reads every header
// and counts payloads, nothing more.
class FrameBoundary {
 public:
  void feed(const char* p, std::size_t n) {
    while (n > 0) {
      if (payloadLeft_ > 0) {
        const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(payloadLeft_, n));
        payloadLeft_ -= take;
        p += take;
        n -= take;
        continue;
      }
      header_[have_++] = static_cast<std::uint8_t>(*p++);
      --n;
      if (have_ < 2) continue;
      const unsigned len7 = header_[1] & 0x7f;
      const unsigned need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((header_[1] & 0x80) ? 4 : 0);
      if (have_ < need) continue;
      std::uint64_t len = len7;
      if (len7 == 126) len = (std::uint64_t{header_[2]} << 8) | header_[3];
      if (len7 == 127) {
        len = 0;
        for (int i = 2; i < 10; ++i) len = (len << 8) | header_[i];
      }
      if ((header_[0] & 0x0f) == 0x8) closeSeen_ = true;
      payloadLeft_ = len;
      have_ = 0;
    }
  }
  bool between() const { return payloadLeft_ == 0 && have_ == 0; }
  bool closeSeen() const { return closeSeen_; }

 private:
  std::uint64_t payloadLeft_ = 0;
  std::uint8_t header_[14] = {};
  unsigned have_ = 0;
  bool closeSeen_ = false;
};

// A close frame: unmasked as a server sends it, masked as a client must (RFC 6455 5.3).
std::string closeFrame(int code, const std::string& reason, bool masked = false) {
  std::string payload;
  payload.push_back(static_cast<char>((code >> 8) & 0xff));
  payload.push_back(static_cast<char>(code & 0xff));
  payload += reason.substr(0, 123);
  std::string f;
  f.push_back(static_cast<char>(0x88));
  f.push_back(static_cast<char>(payload.size() | (masked ? 0x80 : 0)));
  if (masked) {
    unsigned char key[4];
    RAND_bytes(key, sizeof key);
    f.append(reinterpret_cast<const char*>(key), sizeof key);
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(payload[i] ^ key[i % 4]);
  }
  return f + payload;
}

// RFC 6455 4.2.2: the Sec-WebSocket-Accept that answers `key`.
std::string acceptFor(std::string_view key) {
  const std::string text = std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return base64(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

// A fresh Sec-WebSocket-Key: 16 random bytes.
std::string freshKey() {
  unsigned char nonce[16];
  RAND_bytes(nonce, sizeof nonce);
  return base64(std::string_view(reinterpret_cast<const char*>(nonce), sizeof nonce));
}

bool fitsInAHeader(std::string_view s) { return s.find_first_of("\r\n") == std::string_view::npos; }

class Relay;

// Every open relay, for closeRelays(): each is ended on its own thread.
struct Registry {
  std::mutex mutex;
  std::list<std::weak_ptr<Relay>> relays;
  std::atomic<std::size_t> open{0};
};
Registry& registry() {
  static Registry r;
  return r;
}

class Relay : public std::enable_shared_from_this<Relay> {
 public:
  Relay(tcp::socket client, tcp::socket peer, ConnectionSlot slot, std::function<bool()> stillRouted,
        std::chrono::milliseconds writeTimeout)
      : client_(std::move(client)), peer_(std::move(peer)), slot_(std::move(slot)), linger_(client_.get_executor()),
        watch_(client_.get_executor()), peerClose_(client_.get_executor()), stillRouted_(std::move(stillRouted)), writeTimeout_(writeTimeout) {
    ++registry().open;
  }
  ~Relay() {
    finish();
    --registry().open;
  }

  asio::any_io_executor executor() { return client_.get_executor(); }

  void start(std::string head, const std::string& early) {
    {
      auto& r = registry();
      std::lock_guard lock(r.mutex);
      r.relays.push_front(weak_from_this());
      place_ = r.relays.begin();
      registered_ = true;
    }
    beast::error_code ignored;
    peer_.set_option(tcp::no_delay(true), ignored);
    // The 101 and the owner's first bytes, then both directions.
    frames_.feed(early.data(), early.size());
    toClient_ = std::move(head) + early;
    downSince_ = Clock::now();
    asio::async_write(client_, asio::buffer(toClient_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->downSince_.reset();
      if (ec) return self->clientGone();
      self->readPeer();
      self->readClient();
    });
    watch();
  }

  // closeRelays() and the watch: ends the relay as if the owner had gone, with this code. The
  // owner hears the same code when the client's stream toward it is between frames (the
  // object's webSocketClose sees it, not an abnormal 1006); the client hears it from peerGone.
  void end(int code, std::string reason) {
    // Once: a close frame already went to the owner (the watch may call again while it answers).
    if (peerDown_ || !toPeer_.empty()) return;
    code_ = code;
    reason_ = std::move(reason);
    if (!upSince_ && upFrames_.between() && !upFrames_.closeSeen()) {
      toPeer_ = closeFrame(code_, reason_, true);
      upSince_ = Clock::now();
      // The owner answers with its close frame, which goes on to the client, and closes the
      // connection (peerGone); cut off first, its close would be an abnormal one. A second at
      // most, the write included: an owner that stopped reading is dropped all the same.
      peerClose_.expires_after(std::chrono::seconds(1));
      peerClose_.async_wait([self = shared_from_this()](beast::error_code ec) {
        if (!ec) self->dropPeer();
      });
      asio::async_write(peer_, asio::buffer(toPeer_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
        self->upSince_.reset();
        if (ec) self->dropPeer();
      });
      return;
    }
    dropPeer();
  }

 private:
  using Clock = std::chrono::steady_clock;

  void readPeer() {
    peer_.async_read_some(asio::buffer(down_), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      if (ec) return self->peerGone();
      self->frames_.feed(self->down_.data(), n);
      self->downSince_ = Clock::now();
      asio::async_write(self->client_, asio::buffer(self->down_.data(), n),
                        [self](beast::error_code wec, std::size_t) {
                          self->downSince_.reset();
                          if (wec) return self->clientGone();
                          self->readPeer();
                        });
    });
  }

  void dropPeer() {
    beast::error_code ignored;
    peer_.shutdown(tcp::socket::shutdown_both, ignored);
    peer_.close(ignored);
  }

  void readClient() {
    client_.async_read_some(asio::buffer(up_), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      if (ec) return self->clientGone();
      // Its close reply, or late frames: nowhere to go (or the owner was sent a close already).
      if (self->peerDown_ || self->toPeer_.size() > 0) return self->readClient();
      self->upFrames_.feed(self->up_.data(), n);
      self->upSince_ = Clock::now();
      asio::async_write(self->peer_, asio::buffer(self->up_.data(), n), [self](beast::error_code wec, std::size_t) {
        self->upSince_.reset();
        // A failed write to the owner shows as a failed read there too (peerGone).
        if (wec) return;
        self->readClient();
      });
    });
  }

  // Once a second: the object still where the routes say, and neither side stuck on a write.
  void watch() {
    watch_.expires_after(std::chrono::seconds(1));
    watch_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->finished_) return;
      const auto now = Clock::now();
      if (self->downSince_ && now - *self->downSince_ > self->writeTimeout_) return self->clientGone();
      if (self->upSince_ && now - *self->upSince_ > self->writeTimeout_) {
        self->end(1011, "the node holding the object stopped reading");
      } else if (!self->peerDown_ && self->stillRouted_ && !self->stillRouted_()) {
        self->end(1012, "the object moved to another node; reconnect");
      }
      self->watch();
    });
  }

  // The owner closed, failed or was ended: the client hears a close frame if the stream is
  // between frames and the owner sent none, then its connection is closed.
  void peerGone() {
    if (std::exchange(peerDown_, true)) return;
    peerClose_.cancel();
    beast::error_code ignored;
    peer_.close(ignored);
    if (clientDown_) return finish();
    if (!frames_.closeSeen() && frames_.between()) {
      toClient_ = closeFrame(code_, reason_);
      asio::async_write(client_, asio::buffer(toClient_), [self = shared_from_this()](beast::error_code, std::size_t) {
        self->lingerThenClose();
      });
      return;
    }
    lingerThenClose();
  }

  // Half-closes the client's connection and reads on (readClient) until the client closes it
  // or a moment passes: closing at once with its close reply unread would reset the
  // connection, and a reset can discard the close frame before the client reads it.
  void lingerThenClose() {
    beast::error_code ignored;
    client_.shutdown(tcp::socket::shutdown_send, ignored);
    linger_.expires_after(std::chrono::seconds(2));
    linger_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->clientGone();
    });
  }

  void clientGone() {
    if (std::exchange(clientDown_, true)) return;
    beast::error_code ignored;
    client_.close(ignored);
    linger_.cancel();
    watch_.cancel();
    peerClose_.cancel();
    if (!peerDown_) {
      peerDown_ = true;
      peer_.shutdown(tcp::socket::shutdown_both, ignored);
      peer_.close(ignored);
    }
    finish();
  }

  void finish() {
    if (std::exchange(finished_, true)) return;
    slot_.release();
    if (!registered_) return;
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    r.relays.erase(place_);
  }

  tcp::socket client_;
  tcp::socket peer_;
  ConnectionSlot slot_;
  asio::steady_timer linger_;
  asio::steady_timer watch_;
  asio::steady_timer peerClose_;  // how long the owner has to answer end()'s close frame
  std::function<bool()> stillRouted_;
  const std::chrono::milliseconds writeTimeout_;
  std::optional<Clock::time_point> downSince_;  // a write to the client started then, unfinished
  std::optional<Clock::time_point> upSince_;    // the same toward the owner
  // Small: a relay lives as long as its socket, and most sockets are idle.
  std::array<char, 4 * 1024> down_{};
  std::array<char, 4 * 1024> up_{};
  std::string toClient_;
  std::string toPeer_;       // the close frame end() sends the owner
  FrameBoundary frames_;     // the owner's stream toward the client
  FrameBoundary upFrames_;   // the client's toward the owner
  std::list<std::weak_ptr<Relay>>::iterator place_;
  int code_ = 1012;
  std::string reason_ = "the node holding the object went away; reconnect";
  bool peerDown_ = false;
  bool clientDown_ = false;
  bool finished_ = false;
  bool registered_ = false;
};

}  // namespace

Task<Response> sendUpgrade(asio::io_context& context, const std::string& address, const Request& request,
                           std::chrono::milliseconds timeout) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) throw unreachable("cluster: a node's address has no port: " + address);
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = address.substr(colon + 1);

  auto resolver = std::make_shared<tcp::resolver>(context);
  AsioOp<tcp::resolver::results_type> resolve{[&](auto done) {
    resolver->async_resolve(host, port, [done](beast::error_code ec, tcp::resolver::results_type r) { done(ec, r); });
  }};
  auto [rec, endpoints] = co_await resolve;
  if (rec) throw NotDelivered("cluster: cannot resolve the node " + address + ": " + rec.message());

  auto stream = std::make_unique<beast::tcp_stream>(context);
  stream->expires_after(timeout);
  AsioOp<tcp::endpoint> connect{[&](auto done) {
    stream->async_connect(endpoints, [done](beast::error_code ec, tcp::endpoint e) { done(ec, e); });
  }};
  auto [cec, endpoint] = co_await connect;
  if (cec) throw NotDelivered("cluster: cannot connect to the node " + address + ": " + cec.message());

  const URL url(request.urlString());
  http::request<http::string_body> req{http::verb::get, url.pathname() + url.search(), 11};
  for (const auto& [name, value] : request.headers().entries()) {
    if (name == "host" || name == "content-length" || name == "transfer-encoding" || name == "connection" ||
        name == "upgrade" || name.rfind("sec-websocket-", 0) == 0) {
      continue;
    }
    req.insert(name, value);
  }
  req.set(http::field::host, address);
  // This connection's own handshake, whatever the stub's request held: no extensions, so that
  // frames cross unchanged; the subprotocols the client offered.
  req.set(http::field::connection, "Upgrade");
  req.set(http::field::upgrade, "websocket");
  req.set(http::field::sec_websocket_version, "13");
  req.set(http::field::sec_websocket_key, freshKey());
  if (const auto protocol = request.headers().get("sec-websocket-protocol")) {
    req.set(http::field::sec_websocket_protocol, *protocol);
  }
  AsioOp<std::size_t> write{[&](auto done) {
    http::async_write(*stream, req, [done](beast::error_code ec, std::size_t n) { done(ec, n); });
  }};
  auto [wec, written] = co_await write;
  if (wec) throw unreachable("cluster: sending a WebSocket upgrade to " + address + " failed: " + wec.message());

  // A 101 has no body: the read stops after its head, and what follows it in `buffer` is the
  // owner's first frames.
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(16 * 1024 * 1024);
  AsioOp<std::size_t> read{[&](auto done) {
    http::async_read(*stream, buffer, parser, [done](beast::error_code ec, std::size_t n) { done(ec, n); });
  }};
  auto [rdec, got] = co_await read;
  if (rdec) throw unreachable("cluster: the node " + address + " did not answer the WebSocket upgrade: " + rdec.message());

  auto res = parser.release();
  const int status = static_cast<int>(res.result_int());
  if (status != 101) {
    const std::string reason(res.reason());
    Response out(std::move(res.body()), {.status = status, .statusText = reason});
    out.headers().remove("content-type");
    for (const auto& field : res) out.headers().append(field.name_string(), field.value());
    co_return out;
  }
  stream->expires_never();
  auto relayed = std::make_shared<RelayedUpgrade>(RelayedUpgrade{stream->release_socket(), {}, {}, timeout});
  keepAliveBetweenNodes(relayed->peer);
  const auto early = buffer.data();
  relayed->early.assign(static_cast<const char*>(early.data()), early.size());
  auto client = std::make_shared<WebSocketImpl>();
  client->relayed = std::move(relayed);
  const WebSocket end = WebSocketAccess::wrap(client);
  Response out(nullptr, {.status = 101, .webSocket = end});
  for (const auto& field : res) out.headers().append(field.name_string(), field.value());
  co_return out;
}

void startRelay(tcp::socket client, const Response& response, std::string_view clientKey, ConnectionSlot slot) {
  auto relayed = std::exchange(WebSocketAccess::impl(response.webSocket())->relayed, nullptr);
  tcp::socket peer = std::move(relayed->peer);
  if (&peer.get_executor().context() != &client.get_executor().context()) {
    // Same descriptor, the client's io_context: both ends on one thread.
    const auto protocol = peer.local_endpoint().protocol();
    const int fd = peer.release();
    peer = tcp::socket(static_cast<asio::io_context&>(client.get_executor().context()));
    beast::error_code ec;
    peer.assign(protocol, fd, ec);
    if (ec) ::close(fd);
  }
  std::string first = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: " + acceptFor(clientKey) + "\r\n";
  for (const auto& [name, value] : response.headers().entries()) {
    if (name.rfind("x-durable-", 0) == 0 || name == "content-length" || name == "transfer-encoding" ||
        name == "connection" || name == "upgrade" || name == "sec-websocket-accept" ||
        name == "sec-websocket-extensions" || !fitsInAHeader(name) || !fitsInAHeader(value)) {
      continue;
    }
    first += name + ": " + value + "\r\n";
  }
  first += "\r\n";
  auto relay = std::make_shared<Relay>(std::move(client), std::move(peer), std::move(slot), std::move(relayed->stillRouted),
                                       relayed->writeTimeout);
  relay->start(std::move(first), relayed->early);
}

void closeRelays(int code, const std::string& reason) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  for (auto& weak : r.relays) {
    auto relay = weak.lock();
    if (!relay) continue;
    // Its own thread: a relay's sockets are used there only.
    asio::post(relay->executor(), [relay, code, reason] { relay->end(code, reason); });
  }
}

std::size_t openRelays() { return registry().open.load(); }

}  // namespace durable::detail
