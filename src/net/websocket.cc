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

namespace durable {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using detail::WebSocketImpl;

// ---------------------------------------------------------------- public handles

WebSocketPair::WebSocketPair()
    : client(std::make_shared<WebSocketImpl>()), server(std::make_shared<WebSocketImpl>()) {
  client.impl()->partner = server.impl();
}

using detail::validUtf8;
using detail::sharedPayload;

void WebSocket::send(std::string_view text) {
  if (!impl_) throw Error(ErrorCode::kInvalidArgument, "send() on an empty WebSocket");
  if (!validUtf8(text)) {
    throw Error(ErrorCode::kInvalidArgument,
                "send(): the text is not valid UTF-8; send bytes as durable::Bytes (a binary frame)");
  }
  impl_->send(sharedPayload(text), false);
}

void WebSocket::send(const Bytes& data) {
  if (!impl_) throw Error(ErrorCode::kInvalidArgument, "send() on an empty WebSocket");
  impl_->send(sharedPayload(data.data), true);
}

void WebSocket::send(const WebSocketMessage& message) {
  if (!impl_) throw Error(ErrorCode::kInvalidArgument, "send() on an empty WebSocket");
  if (!message.binary && !validUtf8(message.data)) {
    throw Error(ErrorCode::kInvalidArgument, "send(): a text message that is not valid UTF-8; mark it binary");
  }
  impl_->send(sharedPayload(message.data), message.binary);
}

void WebSocket::close(int code, std::string_view reason) {
  if (!impl_) throw Error(ErrorCode::kInvalidArgument, "close() on an empty WebSocket");
  // What a server may send (RFC 6455 7.4): the seed's webSocketError closes with 1011. The
  // codes that only report a missing close frame (1005, 1006, 1015) and the reserved 1004
  // never go on the wire.
  if (code < 1000 || code > 4999 || code == 1004 || code == 1005 || code == 1006 || (code >= 1015 && code < 3000)) {
    throw Error(ErrorCode::kInvalidArgument, "close(): the code must be in 1000-1003, 1007-1014 or 3000-4999, got " +
                                                 std::to_string(code));
  }
  if (reason.size() > 123) throw Error(ErrorCode::kInvalidArgument, "close(): the reason is longer than 123 bytes");
  if (!validUtf8(reason)) throw Error(ErrorCode::kInvalidArgument, "close(): the reason is not valid UTF-8");
  impl_->close(code, std::string(reason));
}

int WebSocket::readyState() const { return impl_ ? impl_->readyState : kClosed; }

void WebSocket::serializeAttachment(const Value& value) {
  if (!impl_) throw Error(ErrorCode::kInvalidArgument, "serializeAttachment() on an empty WebSocket");
  std::string encoded = value.encode();
  if (encoded.size() - 1 > kMaxAttachmentBytes) {
    throw Error(ErrorCode::kInvalidArgument, "serializeAttachment(): at most 16 KiB, got " +
                                                 std::to_string(encoded.size() - 1) + " bytes");
  }
  impl_->attachment = std::move(encoded);
}

Value WebSocket::deserializeAttachment() const {
  if (!impl_ || !impl_->attachment) return Value();
  return Value::decode(*impl_->attachment);
}

}  // namespace durable

namespace durable::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {
OutputGate* liveGate(WebSocketImpl& ws) { return ws.shard ? ws.shard->liveOutputGate(*ws.ns, ws.id) : nullptr; }
}  // namespace

Payload sharedPayload(std::string_view bytes) {
  // Weak: the cache never keeps a payload alive (its bytes go once no queue holds them), and
  // comparing costs what copying would.
  thread_local std::weak_ptr<const std::string> last;
  if (auto p = last.lock(); p && p->size() == bytes.size() && std::memcmp(p->data(), bytes.data(), bytes.size()) == 0) {
    return p;
  }
  auto p = std::make_shared<const std::string>(bytes);
  last = p;
  return p;
}

void WebSocketImpl::send(Payload data, bool binary) {
  if (!accepted) throw Error(ErrorCode::kInvalidArgument, "send() on a WebSocket that no object accepted");
  if (readyState == WebSocket::kClosing || readyState == WebSocket::kClosed) {
    throw Error(ErrorCode::kInvalidArgument, "Can't call WebSocket send() after close().");
  }
  // The output gate: a frame waits for the writes its object made before sending it.
  OutputGate* gate = liveGate(*this);
  const std::uint64_t mark = gate ? gate->mark() : 0;
  if (held.empty() && !closeAfterHeld) {
    // Nothing waits ahead of it and its writes are durable: straight to the connection. A
    // broadcast to thousands of sockets takes this path for each of them.
    if (auto connection = conn.lock(); connection && (!gate || gate->releasedBefore(mark))) {
      connection->write(binary, std::move(data));
      return;
    }
  }
  held.emplace_back(Outgoing{mark, binary, std::move(data)});
  release();
}

void WebSocketImpl::close(int code, std::string reason) {
  if (readyState == WebSocket::kClosing || readyState == WebSocket::kClosed) return;
  readyState = WebSocket::kClosing;
  closeAfterHeld.emplace(code, std::move(reason));
  release();
}

void WebSocketImpl::release() {
  auto connection = conn.lock();
  if (!connection || !shard) return;
  // A frame is held only while its object holds the output gate, and an object that holds it
  // is never evicted: the host that queued the frame is the live one.
  OutputGate* gate = liveGate(*this);
  while (!held.empty()) {
    auto& frame = held.front();
    if (gate && !gate->releasedBefore(frame.gateMark)) {
      if (!waitingDurable) {
        waitingDurable = true;
        // The connection may end meanwhile; then there is nothing left to send.
        std::weak_ptr<NetSocket> weak = conn;
        gate->whenReleased(frame.gateMark, [this, weak](std::exception_ptr error) {
          if (weak.expired()) return;
          waitingDurable = false;
          if (error) {
            // Those frames were built on writes that never reached the disk: never send them.
            held.clear();
          }
          release();
        });
      }
      return;
    }
    connection->write(frame.binary, std::move(frame.data));
    held.pop_front();
  }
  if (closeAfterHeld) {
    auto [code, reason] = std::move(*closeAfterHeld);
    closeAfterHeld.reset();
    connection->close(code, std::move(reason));
  }
}

// ---------------------------------------------------------------- FrameAlignedSocket

namespace {
// The length of a frame header that starts with `b` (RFC 6455 5.2), or 0 when fewer than its
// first two bytes are known.
std::size_t headerLength(const std::uint8_t* b, std::size_t have) {
  if (have < 2) return 0;
  const unsigned len7 = b[1] & 0x7f;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((b[1] & 0x80) ? 4 : 0);
}

std::uint64_t payloadLength(const std::uint8_t* b) {
  const unsigned len7 = b[1] & 0x7f;
  if (len7 < 126) return len7;
  std::uint64_t n = 0;
  const int bytes = len7 == 126 ? 2 : 8;
  for (int i = 0; i < bytes; ++i) n = (n << 8) | b[2 + i];
  return n;
}
}  // namespace

std::size_t FrameAlignedSocket::readLimit(std::size_t capacity, bool& wouldBlock) {
  FrameCursor& c = *cursor_;
  if (!c.frameKnown) {
    ssize_t peeked;
    do {
      peeked = ::recv(socket_->native_handle(), c.header + c.headerHave, sizeof c.header - c.headerHave,
                      MSG_PEEK | MSG_DONTWAIT);
    } while (peeked < 0 && errno == EINTR);
    if (peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      wouldBlock = true;
      return 0;
    }
    // The end of the stream or an error: the read reports it.
    if (peeked <= 0) return capacity;
    const std::size_t have = c.headerHave + static_cast<std::size_t>(peeked);
    const std::size_t headerBytes = headerLength(c.header, have);
    if (headerBytes == 0 || have < headerBytes) {
      // Only part of the header is here: deliver that much, and peek at the rest later.
      return std::min(capacity, static_cast<std::size_t>(peeked));
    }
    const std::uint64_t payload = payloadLength(c.header);
    // A length this large fails Beast's message limit before it matters; keep the sum finite.
    const std::uint64_t frame = payload > (std::uint64_t{1} << 62) ? payload : headerBytes + payload;
    c.frameKnown = true;
    c.frameLeft = frame - c.headerHave;
  }
  return static_cast<std::size_t>(std::min<std::uint64_t>(capacity, c.frameLeft));
}

void FrameAlignedSocket::delivered(std::size_t bytes) {
  FrameCursor& c = *cursor_;
  if (!c.frameKnown) {
    c.headerHave = static_cast<std::uint8_t>(c.headerHave + bytes);
    return;
  }
  c.frameLeft -= std::min<std::uint64_t>(bytes, c.frameLeft);
  if (c.frameLeft == 0) {
    c.frameKnown = false;
    c.headerHave = 0;
  }
}

void teardown(beast::role_type role, FrameAlignedSocket& s, beast::error_code& ec) {
  websocket::teardown(role, s.next_layer(), ec);
}

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

std::int64_t reassemblyBytesHeld() { return gReassemblyBytes.load(std::memory_order_relaxed); }

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
  ObjectSockets& owner = ws.shard->socketsOf(*ws.ns, ws.id);
  if (!message.binary && owner.autoResponse && message.data == owner.autoResponse->first) {
    ws.autoResponseAt = durable::now();
    write(false, std::make_shared<const std::string>(owner.autoResponse->second));
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

void NetSocket::write(bool binary, Payload data) {
  if (finished_ || overflowed_) return;
  const std::size_t bytes = data->size();
  if (!queue_.empty() && queuedBytes_ + bytes > settings_.maxWebSocketSendQueueBytes) {
    // The peer does not read as fast as it is sent to: drop what waits (the other sockets
    // holding the same payloads keep theirs) and close once the frame on the wire is out.
    // Later sends to it are dropped silently, so a broadcast loop goes on to the others.
    overflowed_ = true;
    log("WebSocket closed 1008: more than max_websocket_send_queue_bytes (", settings_.maxWebSocketSendQueueBytes,
        ") waiting to be sent to a peer that does not read");
    static constexpr std::string_view kReason = "send queue limit exceeded: the client does not read";
    if (!cursor_.midFrame) {
      queue_.clear();
      queuedBytes_ = 0;
      return abort(1008, std::string(kReason));
    }
    // Only the frame partly on the wire stays: cutting it would break the stream.
    OutFrame front = std::move(queue_.front());
    queue_.clear();
    queue_.emplace_back(std::move(front));
    queuedBytes_ = 0;
    runtimeClose_.emplace(1008, std::string(kReason));
    closeWhenDrained_.emplace(1008, std::string(kReason));
    return;
  }
  queuedBytes_ += bytes;
  queue_.emplace_back(OutFrame{static_cast<std::uint8_t>(binary ? 2 : 1), std::move(data)});
  if (open_) flushSoon();
}

namespace {

// The shard thread's sockets with frames to write, written in slices (NetSocket::flushSoon).
struct Flusher {
  asio::execution_context* context = nullptr;
  std::vector<std::shared_ptr<NetSocket>> ready;  // in the order they asked
  std::size_t next = 0;
  bool posted = false;
};
thread_local std::weak_ptr<Flusher> tlsFlusher;

// How long one slice of the flusher may run before it lets other handlers (and the reactor)
// have the thread. /health stays within a few slices while thousands of sockets are written.
constexpr auto kFlushSlice = std::chrono::microseconds(1000);

void runFlusher(const std::shared_ptr<Flusher>& f, const asio::any_io_executor& ex) {
  f->posted = false;
  const auto start = NetSocket::Clock::now();
  std::size_t done = 0;
  while (f->next < f->ready.size()) {
    auto socket = std::move(f->ready[f->next++]);
    socket->flush();
    if (++done % 16 == 0 && NetSocket::Clock::now() - start >= kFlushSlice) break;
  }
  if (f->next == f->ready.size()) {
    f->ready.clear();
    f->next = 0;
    return;
  }
  // The rest after whatever else is queued, the reactor's next look at the sockets included.
  f->posted = true;
  asio::post(ex, [f, ex] { runFlusher(f, ex); });
}

}  // namespace

void NetSocket::flushSoon() {
  if (flushQueued_ || finished_ || waitingWritable_) return;
  flushQueued_ = true;
  auto flusher = tlsFlusher.lock();
  auto ex = socket_.get_executor();
  if (!flusher || flusher->context != &ex.context()) {
    flusher = std::make_shared<Flusher>();
    flusher->context = &ex.context();
    tlsFlusher = flusher;
  }
  flusher->ready.push_back(shared_from_this());
  if (!flusher->posted) {
    flusher->posted = true;
    asio::any_io_executor any = ex;
    asio::post(ex, [flusher, any] { runFlusher(flusher, any); });
  }
}

void NetSocket::flush() {
  flushQueued_ = false;
  if (finished_ || !open_ || waitingWritable_) return;
  // Beast is writing a frame of its own; it calls afterBeastWrite() when done.
  if (cursor_.beastWriting) return;
  // At most this many frames per send: the headers live on the stack.
  constexpr std::size_t kMaxFrames = 64;
  constexpr std::size_t kMaxBytes = 1 << 20;
  while (!queue_.empty()) {
    std::uint8_t headers[kMaxFrames][10];
    iovec iov[kMaxFrames * 2];
    std::size_t iovs = 0, total = 0, frames = 0;
    // The frames, as far as the queue goes: the LazyQueue is a vector from its head.
    for (std::size_t f = 0; f < queue_.size() && frames < kMaxFrames && total < kMaxBytes; ++f, ++frames) {
      const OutFrame& frame = queue_.at(f);
      std::uint8_t* h = headers[frames];
      const std::uint64_t len = frame.data->size();
      std::size_t hl = 2;
      h[0] = static_cast<std::uint8_t>(0x80 | frame.opcode);
      if (len < 126) {
        h[1] = static_cast<std::uint8_t>(len);
      } else if (len <= 0xffff) {
        h[1] = 126;
        h[2] = static_cast<std::uint8_t>(len >> 8);
        h[3] = static_cast<std::uint8_t>(len);
        hl = 4;
      } else {
        h[1] = 127;
        for (int b = 0; b < 8; ++b) h[2 + b] = static_cast<std::uint8_t>(len >> (56 - 8 * b));
        hl = 10;
      }
      // The front frame may be partly written already.
      std::size_t skip = f == 0 ? frontSent_ : 0;
      if (skip < hl) {
        iov[iovs++] = {h + skip, hl - skip};
        total += hl - skip;
        skip = 0;
      } else {
        skip -= hl;
      }
      if (len > skip) {
        iov[iovs++] = {const_cast<char*>(frame.data->data()) + skip, static_cast<std::size_t>(len - skip)};
        total += static_cast<std::size_t>(len - skip);
      }
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = iovs;
    ssize_t n;
    do {
      n = ::sendmsg(socket_.native_handle(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      // The read side sees the failure and finishes.
      queue_.clear();
      queuedBytes_ = 0;
      frontSent_ = 0;
      cursor_.midFrame = false;
      writing_ = false;
      return;
    }
    std::size_t sent = n > 0 ? static_cast<std::size_t>(n) : 0;
    bool progress = false;
    while (sent > 0) {
      OutFrame& front = queue_.front();
      const std::size_t len = front.data->size();
      const std::size_t frameBytes = (len < 126 ? 2 : len <= 0xffff ? 4 : 10) + len;
      if (frontSent_ == 0) queuedBytes_ -= len;  // on the wire now, partly at least
      const std::size_t take = std::min(sent, frameBytes - frontSent_);
      frontSent_ += take;
      sent -= take;
      if (frontSent_ < frameBytes) break;
      frontSent_ = 0;
      queue_.pop_front();
      progress = true;
    }
    cursor_.midFrame = frontSent_ > 0;
    if (n >= 0 && static_cast<std::size_t>(n) == total) continue;
    // The peer's buffer is full: wait for it to take more. The write timeout runs from the
    // last whole frame it took.
    if (!writing_ || progress) writeStarted_ = Clock::now();
    writing_ = true;
    waitingWritable_ = true;
    socket_.async_wait(tcp::socket::wait_write, [self = shared_from_this()](beast::error_code ec) {
      self->waitingWritable_ = false;
      if (ec || self->finished_) return;
      self->flush();
    });
    return;
  }
  writing_ = false;
  drained();
}

void NetSocket::drained() {
  if (!queue_.empty() || !closeWhenDrained_) return;
  auto [code, reason] = std::move(*closeWhenDrained_);
  closeWhenDrained_.reset();
  close(code, std::move(reason));
}

void NetSocket::afterBeastWrite() {
  if (!queue_.empty()) {
    flushSoon();
  } else {
    drained();
  }
}

void beastWriteDone(NetSocket* owner) {
  if (owner) owner->afterBeastWrite();
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

bool adoptWebSocket(const WebSocket& client, tcp::socket socket, beast::http::request<beast::http::string_body> request,
                    SocketShard& from, ConnectionSlot slot) {
  if (!WebSocketAccess::impl(client)) return false;
  auto server = WebSocketAccess::impl(client)->partner.lock();
  if (!server || !server->accepted || !server->shard) return false;
  SocketShard* to = server->shard;
  const config::Settings& settings = to->settings();
  if (to == &from) {
    auto conn = std::make_shared<NetSocket>(std::move(socket), server, settings, std::move(slot));
    server->conn = conn;
    conn->start(std::move(request));
    return true;
  }
  // Move the connection to the object's shard: same descriptor, new io_context.
  const auto protocol = socket.local_endpoint().protocol();
  const int fd = socket.release();
  auto req = std::make_shared<beast::http::request<beast::http::string_body>>(std::move(request));
  // Shared only to ride in a copyable function; the place is released once, by its last owner.
  auto place = std::make_shared<ConnectionSlot>(std::move(slot));
  asio::post(to->context(), [to, server, fd, protocol, req, place, &settings] {
    tcp::socket moved(to->context());
    boost::system::error_code ec;
    moved.assign(protocol, fd, ec);
    if (ec) {
      ::close(fd);
      return;
    }
    auto conn = std::make_shared<NetSocket>(std::move(moved), server, settings, std::move(*place));
    server->conn = conn;
    conn->start(std::move(*req));
  });
  return true;
}

}  // namespace durable::detail
