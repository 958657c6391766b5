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
    if (auto connection = conn.lock(); connection && (!gate || gate->clearFor(mark))) {
      if (!shard->outputAllowed(*ns, id)) return fencedOut();
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
  OutputGate* gate = liveGate(*this);
  closeAfterHeld.emplace(PendingClose{gate ? gate->mark() : 0, code, std::move(reason)});
  release();
}

void WebSocketImpl::release() {
  auto connection = conn.lock();
  if (!connection || !shard) return;
  // A frame is held only while its object holds the output gate, and an object that holds it
  // is never evicted: the host that queued the frame is the live one.
  OutputGate* gate = liveGate(*this);
  // Frames built on writes that never reached the disk are never sent. The close still goes:
  // it reveals no state, and the object asked for it.
  if (gate && gate->broken()) held.clear();
  while (!held.empty() || closeAfterHeld) {
    const std::uint64_t mark = held.empty() ? closeAfterHeld->gateMark : held.front().gateMark;
    if (gate && !gate->broken() && !gate->clearFor(mark)) {
      if (!waitingDurable) {
        waitingDurable = true;
        // The connection may end meanwhile; then there is nothing left to send.
        std::weak_ptr<NetSocket> weak = conn;
        gate->whenReleased(mark, [this, weak](std::exception_ptr error) {
          if (weak.expired()) return;
          waitingDurable = false;
          if (error) held.clear();
          release();
        });
      }
      return;
    }
    if (held.empty()) {
      PendingClose pending = std::move(*closeAfterHeld);
      closeAfterHeld.reset();
      connection->close(pending.code, std::move(pending.reason));
      return;
    }
    if (!shard->outputAllowed(*ns, id)) return fencedOut();
    connection->write(held.front().binary, std::move(held.front().data));
    held.pop_front();
  }
}

void WebSocketImpl::fencedOut() {
  held.clear();
  if (readyState < WebSocket::kClosing) readyState = WebSocket::kClosing;
  // A close the object asked for goes as it asked: it reveals no state.
  if (!closeAfterHeld) closeAfterHeld.emplace(PendingClose{0, 1012, "the object may have moved to another node; reconnect"});
  closeAfterHeld->gateMark = 0;
  release();
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

void adoptWebSocket(const std::shared_ptr<WebSocketImpl>& server, tcp::socket socket,
                    beast::http::request<beast::http::string_body> request, SocketShard& from, ConnectionSlot slot) {
  SocketShard* to = server->shard;
  const config::Settings& settings = to->settings();
  if (to == &from) {
    auto conn = std::make_shared<NetSocket>(std::move(socket), server, settings, std::move(slot));
    server->conn = conn;
    conn->start(std::move(request));
    return;
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
}

}  // namespace durable::detail
