// NetSocket's life on its shard: the handshake, reads and reassembly, the limits and the
// sweep that enforces them, hibernation, and the close that tells the object.
#include "net/websocket.h"

#include "base/log.h"
#include "base/utf8.h"
#include "config/config.h"
#include "gates/output_gate.h"

#include <durable/clock.h>
#include <durable/error.h>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <boost/asio/steady_timer.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

namespace durable::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

// ---------------------------------------------------------------- NetSocket

namespace {

std::atomic<std::int64_t> gReassemblyBytes{0};

// Beast reads a message in pieces of this much, so the bytes an unfinished message holds are
// counted as they arrive, not once it is whole.
constexpr std::size_t kReadPiece = 64 * 1024;

// The timeouts of one shard's sockets, checked by one timer per shard thread rather than one
// per socket: a timer is about as large as a hibernated socket.
struct SocketSweep {
  explicit SocketSweep(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  asio::execution_context* context = nullptr;
  std::vector<std::weak_ptr<NetSocket>> sockets;
};
thread_local std::weak_ptr<SocketSweep> tlsSweep;

std::chrono::milliseconds sweepPeriod(const config::Settings& s) {
  std::int64_t shortest = std::min({s.webSocketWriteTimeoutMs, s.webSocketMessageTimeoutMs, s.webSocketPongTimeoutMs});
  if (s.webSocketPingIntervalMs > 0) shortest = std::min(shortest, s.webSocketPingIntervalMs);
  return std::chrono::milliseconds(std::clamp<std::int64_t>(shortest / 4, 5, 1000));
}

void runSweep(const std::shared_ptr<SocketSweep>& sweep, std::chrono::milliseconds period) {
  sweep->timer.expires_after(period);
  sweep->timer.async_wait([sweep, period](beast::error_code ec) {
    if (ec) return;
    std::erase_if(sweep->sockets, [](const std::weak_ptr<NetSocket>& w) { return w.expired(); });
    // The list may grow while sockets are checked (a close runs no new socket, but be safe).
    auto sockets = sweep->sockets;
    const auto now = NetSocket::Clock::now();
    for (auto& w : sockets) {
      if (auto s = w.lock()) s->sweep(now);
    }
    // With no socket left the sweep ends, and the next socket starts another.
    if (!sweep->sockets.empty()) runSweep(sweep, period);
  });
}

void watch(const std::shared_ptr<NetSocket>& socket, const asio::any_io_executor& ex, const config::Settings& settings) {
  auto sweep = tlsSweep.lock();
  if (!sweep || sweep->context != &ex.context()) {
    sweep = std::make_shared<SocketSweep>(ex);
    sweep->context = &ex.context();
    tlsSweep = sweep;
    sweep->sockets.push_back(socket);
    runSweep(sweep, sweepPeriod(settings));
    return;
  }
  sweep->sockets.push_back(socket);
}

}  // namespace

NetSocket::NetSocket(tcp::socket socket, std::shared_ptr<WebSocketImpl> impl, const config::Settings& settings,
                     ConnectionSlot slot)
    : socket_(std::move(socket)), settings_(settings), slot_(std::move(slot)), impl_(std::move(impl)) {
  cursor_.owner = this;
  configure(ws_.emplace(FrameAlignedSocket(socket_, cursor_)));
}

void NetSocket::configure(Stream& ws) {
  ws.read_message_max(settings_.maxWebSocketMessageBytes);
  ws.auto_fragment(false);
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = std::chrono::seconds(30);
  // Idle sockets are the point of hibernation: Beast's idle timeout would need a live stream
  // and a timer each; the shard's sweep pings idle peers instead (sweep()).
  timeouts.idle_timeout = websocket::stream_base::none();
  timeouts.keep_alive_pings = false;
  ws.set_option(timeouts);
  // A pong (or ping) read while a message is awaited is the peer's sign of life too.
  ws.control_callback([this](websocket::frame_type, beast::string_view) {
    lastHeard_ = Clock::now();
    pinged_ = false;
  });
}

namespace {
// What restoring a released stream accepts: any valid upgrade does, since the response it
// produces is discarded.
const beast::http::request<beast::http::empty_body>& restoreRequest() {
  static const auto request = [] {
    beast::http::request<beast::http::empty_body> r(beast::http::verb::get, "/", 11);
    r.set(beast::http::field::host, "localhost");
    r.set(beast::http::field::upgrade, "websocket");
    r.set(beast::http::field::connection, "Upgrade");
    r.set(beast::http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
    r.set(beast::http::field::sec_websocket_version, "13");
    return r;
  }();
  return request;
}
}  // namespace

NetSocket::Stream* NetSocket::stream() {
  if (ws_) return &*ws_;
  // Beast has no way to make a stream in the open state but its own handshake; the handshake
  // is run again with its response discarded. Released streams were idle at a frame boundary,
  // so the new one starts where the old one stood.
  Stream& ws = ws_.emplace(FrameAlignedSocket(socket_, cursor_));
  configure(ws);
  std::string discarded;
  cursor_.captureWrites = &discarded;
  beast::error_code ec;
  ws.accept(restoreRequest(), ec);
  cursor_.captureWrites = nullptr;
  if (ec) {
    log("restoring a hibernated WebSocket failed: ", ec.message());
    ws_.reset();
    finish(1006, "", false, std::nullopt);
    return nullptr;
  }
  return &ws;
}

void NetSocket::hibernate() {
  if (ws_ && waitingIdle_ && open_ && !writing_ && queue_.empty() && !cursor_.beastWriting && !closing_ &&
      !finished_ && !closeWhenDrained_ && !inMessage_ && cursor_.atFrameBoundary()) {
    ws_.reset();
  }
}

void NetSocket::start(beast::http::request<beast::http::string_body> request) {
  watch(shared_from_this(), socket_.get_executor(), settings_);
  // Beast validates the upgrade and builds the response (101, or its refusal), captured here;
  // the stream then goes at once and comes back with the first frame or send. Most sockets of
  // a hibernating room never need it: they cost no Beast state from the start.
  auto response = std::make_shared<std::string>();
  beast::error_code refused;
  cursor_.captureWrites = response.get();
  ws_->accept(request, refused);
  cursor_.captureWrites = nullptr;
  ws_.reset();
  asio::async_write(socket_, asio::buffer(*response),
                    [self = shared_from_this(), response, refused](beast::error_code ec, std::size_t) {
                      if (ec || refused) return self->finish(1006, "", false, std::nullopt);
                      self->open_ = true;
                      self->impl_->shard->metrics().websocketsOpen.add(1);
                      self->lastHeard_ = Clock::now();
                      if (self->impl_->readyState == WebSocket::kConnecting) self->impl_->readyState = WebSocket::kOpen;
                      self->impl_->release();
                      // Frames queued during the handshake (and a close() behind them) go now.
                      if (!self->queue_.empty()) {
                        self->flushSoon();
                      } else {
                        self->drained();
                      }
                      self->read();
                    });
}

void NetSocket::read() {
  if (inMessage_ || !cursor_.atFrameBoundary()) return readMessage();
  waitingIdle_ = true;
  socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](beast::error_code) {
    self->waitingIdle_ = false;
    // Our own close() reads the peer's answer itself; a failed wait is the read's to report.
    if (self->closing_ || self->finished_) return;
    self->lastHeard_ = Clock::now();
    self->pinged_ = false;
    if (self->consumePong()) return self->read();
    self->readMessage();
  });
}

bool NetSocket::consumePong() {
  // A client's pong is masked (RFC 6455 5.3): 0x8A, 0x80 | length, 4 mask bytes, <= 125 bytes.
  unsigned char b[2 + 4 + 125];
  ssize_t n;
  do {
    n = ::recv(socket_.native_handle(), b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 2 || b[0] != 0x8A || (b[1] & 0x80) == 0 || (b[1] & 0x7f) > 125) return false;
  const std::size_t frame = 6 + (b[1] & 0x7f);
  if (static_cast<std::size_t>(n) < frame) return false;
  do {
    n = ::recv(socket_.native_handle(), b, frame, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(frame);
}

void NetSocket::readMessage() {
  Stream* ws = stream();
  if (!ws) return;
  ws->async_read_some(buffer_, kReadPiece, beast::bind_front_handler(&NetSocket::onRead, shared_from_this()));
}

bool NetSocket::accountReassembly() {
  const std::size_t holding = buffer_.capacity();
  if (holding <= reassemblyHeld_) return true;
  const auto more = static_cast<std::int64_t>(holding - reassemblyHeld_);
  reassemblyHeld_ = holding;
  const std::int64_t total = gReassemblyBytes.fetch_add(more, std::memory_order_relaxed) + more;
  return total <= static_cast<std::int64_t>(settings_.maxWebSocketReassemblyBytes);
}

void NetSocket::releaseReassembly() {
  if (reassemblyHeld_ == 0) return;
  gReassemblyBytes.fetch_sub(static_cast<std::int64_t>(reassemblyHeld_), std::memory_order_relaxed);
  reassemblyHeld_ = 0;
}

void NetSocket::onRead(beast::error_code ec, std::size_t) {
  if (finished_) {
    // abort() from the sweep closed the socket under this read: its bytes go now.
    releaseReassembly();
    buffer_.clear();
    buffer_.shrink_to_fit();
    return;
  }
  if (ec) {
    releaseReassembly();
    // Our own close() is under way: Beast ends the pending read (operation_aborted) and the
    // closing handshake's completion reports how it went.
    if (closing_ && ec != websocket::error::closed) return;
    if (ec == websocket::error::closed) {
      const auto& r = ws_->reason();
      return finish(r.code ? static_cast<int>(r.code) : 1005, std::string(r.reason.c_str()), true, std::nullopt);
    }
    if (ec == websocket::error::message_too_big) return finish(1009, "message too big", false, std::nullopt);
    if (ec.category() == websocket::make_error_code(websocket::error::bad_opcode).category()) {
      return finish(1002, "", false, "WebSocket protocol error: " + ec.message());
    }
    return finish(1006, "", false, std::nullopt);
  }
  lastHeard_ = Clock::now();
  pinged_ = false;
  if (!ws_->is_message_done()) {
    if (!inMessage_) {
      inMessage_ = true;
      messageStarted_ = lastHeard_;
    }
    if (!accountReassembly()) {
      log("WebSocket closed 1009: unfinished messages hold more than max_websocket_reassembly_bytes (",
          settings_.maxWebSocketReassemblyBytes, ") on this server");
      abort(1009, "too much unfinished message data on the server");
      buffer_.clear();
      buffer_.shrink_to_fit();
      return;
    }
    return readMessage();
  }
  inMessage_ = false;
  releaseReassembly();
  WebSocketMessage message;
  message.binary = ws_->got_binary();
  message.data = beast::buffers_to_string(buffer_.data());
  buffer_.clear();
  // An idle socket holds no buffer: that is most of what hibernation saves.
  buffer_.shrink_to_fit();

  WebSocketImpl& ws = *impl_;
  ws.shard->metrics().websocketMessagesIn.add();
  ObjectSockets& owner = ws.shard->socketsOf(*ws.ns, ws.id);
  if (!message.binary && owner.autoResponse && message.data == owner.autoResponse->first) {
    if (ws.shard->outputAllowed(*ws.ns, ws.id)) {
      ws.autoResponseAt = durable::now();
      write(false, std::make_shared<const std::string>(owner.autoResponse->second));
    } else {
      ws.fencedOut();
    }
  } else if (!closing_) {
    auto handle = impl_;
    ws.shard->runInObject(
        *ws.ns, ws.id,
        [handle, message = std::move(message)](DurableObject& o, State&) -> Task<void> {
          return o.webSocketMessage(WebSocketAccess::wrap(handle), message);
        },
        [](std::exception_ptr e) {
          if (e) log("webSocketMessage threw: ", describeException(e));
        });
  }
  read();
}

void NetSocket::ping() {
  pinged_ = true;
  pingSent_ = Clock::now();
  static const Payload kEmpty = std::make_shared<const std::string>();
  queue_.emplace_back(OutFrame{9, kEmpty});
  flushSoon();
}

void NetSocket::sweep(Clock::time_point now) {
  if (finished_) return;
  using ms = std::chrono::milliseconds;
  if (writing_ && now - writeStarted_ >= ms(settings_.webSocketWriteTimeoutMs)) {
    log("WebSocket dropped: the peer took no data for websocket_write_timeout_ms (", settings_.webSocketWriteTimeoutMs,
        " ms)");
    return abort(1008, "write timeout: the client does not read");
  }
  if (inMessage_ && now - messageStarted_ >= ms(settings_.webSocketMessageTimeoutMs)) {
    log("WebSocket closed 1008: a fragmented message unfinished after websocket_message_timeout_ms (",
        settings_.webSocketMessageTimeoutMs, " ms)");
    return abort(1008, "message not finished in time");
  }
  if (pinged_ && now - pingSent_ >= ms(settings_.webSocketPongTimeoutMs)) {
    return abort(1006, "no answer to a ping");
  }
  if (settings_.webSocketPingIntervalMs > 0 && !pinged_ && open_ && !closing_ && !writing_ && !closeWhenDrained_ &&
      now - lastHeard_ >= ms(settings_.webSocketPingIntervalMs)) {
    ping();
  }
}

void NetSocket::abort(int code, std::string reason) {
  if (finished_) return;
  runtimeClose_.emplace(code, reason);
  // 1006 means no close frame; and none can go in the middle of a frame of ours, or after
  // the close Beast sent.
  if (code != 1006 && open_ && !cursor_.midFrame && !cursor_.beastWriting && !closing_) {
    std::string frame;
    frame += static_cast<char>(0x88);
    frame += static_cast<char>(2 + reason.size());
    frame += static_cast<char>(code >> 8);
    frame += static_cast<char>(code & 0xff);
    frame += reason;
    ssize_t n;
    do {
      n = ::send(socket_.native_handle(), frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
  }
  beast::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  finish(code, std::move(reason), false, std::nullopt);
}

void NetSocket::close(int code, std::string reason) {
  if (finished_ || closing_) return;
  if (writing_ || !queue_.empty() || !open_) {
    closeWhenDrained_.emplace(code, std::move(reason));
    return;
  }
  closing_ = true;
  websocket::close_reason cr(static_cast<websocket::close_code>(code), reason);
  Stream* ws = stream();
  if (!ws) return;
  ws->async_close(cr, [self = shared_from_this()](beast::error_code ec) {
    // The peer answered (or the handshake failed or timed out): the socket is done.
    if (ec) return self->finish(1006, "", false, std::nullopt);
    const auto& r = self->ws_->reason();
    self->finish(r.code ? static_cast<int>(r.code) : 1005, std::string(r.reason.c_str()), true, std::nullopt);
  });
}

void NetSocket::finish(int code, std::string reason, bool wasClean, std::optional<std::string> error) {
  if (finished_) return;
  finished_ = true;
  queue_.clear();
  queuedBytes_ = 0;
  frontSent_ = 0;
  cursor_.midFrame = false;
  writing_ = false;
  releaseReassembly();
  slot_.release();
  auto impl = impl_;
  impl->readyState = WebSocket::kClosed;
  impl->held.clear();
  impl->conn.reset();
  SocketShard& shard = *impl->shard;
  if (open_) shard.metrics().websocketsOpen.add(-1);
  shard.dropSocket(impl);
  beast::error_code ignored;
  socket_.close(ignored);
  if (runtimeClose_) {
    // The runtime ended it: the object hears why, whatever the peer answered.
    code = runtimeClose_->first;
    reason = runtimeClose_->second;
    wasClean = false;
    error.reset();
  } else if (closing_ && wasClean) {
    return;  // the object closed it itself
  }
  shard.runInObject(
      *impl->ns, impl->id,
      [impl, code, reason = std::move(reason), wasClean, error](DurableObject& o, State&) -> Task<void> {
        if (error) return o.webSocketError(WebSocketAccess::wrap(impl), *error);
        return o.webSocketClose(WebSocketAccess::wrap(impl), code, reason, wasClean);
      },
      [](std::exception_ptr e) {
        if (e) log("webSocketClose threw: ", describeException(e));
      });
}

}  // namespace durable::detail
