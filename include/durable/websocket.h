// durable/websocket.h: WebSockets owned by objects, with hibernation.
//
// An object answers an upgrade request by making a pair, accepting the server end with
// State::acceptWebSocket, and returning a 101 response that carries the client end:
//
//   durable::WebSocketPair pair;
//   state().acceptWebSocket(pair.server, {"user-123"});
//   co_return durable::Response(nullptr, {.status = 101, .webSocket = pair.client});
//
// The runtime then owns the connection, not the object: the object may be evicted while its
// sockets stay open (hibernation), and the next message constructs it again and calls
// webSocketMessage. A WebSocket is a handle; copies name the same socket.
//
// Thread safety: a WebSocket belongs to its object's shard and is used from its handlers.
#pragma once

#include <durable/error.h>
#include <durable/value.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace durable {

namespace detail {
struct WebSocketImpl;
struct WebSocketAccess;  // the runtime's way in (src/net/websocket.h)
}

// What webSocketMessage receives: `string | ArrayBuffer` in JavaScript. A text message is
// always valid UTF-8 (the runtime fails the connection with 1007 otherwise); a binary one is
// any bytes.
struct WebSocketMessage {
  std::string data;
  bool binary = false;

  bool isText() const { return !binary; }
  // The text of a text message. Throws Error(kInvalidArgument) for a binary one, because code
  // written for text must not read arbitrary bytes as text: in JavaScript, JSON.parse() of an
  // ArrayBuffer throws, so the seed's ChatRoom ignores binary frames.
  const std::string& text() const {
    if (binary) throw Error(ErrorCode::kInvalidArgument, "a binary WebSocket message has no text (it is an ArrayBuffer)");
    return data;
  }
  // The payload whatever the type: the text's UTF-8 bytes, or the binary data.
  const std::string& bytes() const { return data; }
};

class WebSocket {
 public:
  static constexpr int kConnecting = 0, kOpen = 1, kClosing = 2, kClosed = 3;
  static constexpr std::size_t kMaxAttachmentBytes = 16 * 1024;

  WebSocket() = default;

  // Queues a text (or binary) frame. Held, like a response, until the writes made before it
  // are durable. Throws Error(kInvalidArgument) once the socket is closing or closed, and for
  // text that is not valid UTF-8: every peer would fail the connection on such a text frame
  // (RFC 6455 8.1), so arbitrary bytes go as Bytes.
  void send(std::string_view text);
  void send(const Bytes& data);
  // Relays a received message as it came, text as text and binary as binary: the seed's
  // `socket.send(message)`.
  void send(const WebSocketMessage& message);
  // Starts the closing handshake with `code` (1000-1003, 1007-1014 or 3000-4999) and `reason`
  // (<= 123 bytes of UTF-8).
  void close(int code = 1000, std::string_view reason = {});
  int readyState() const;

  // A value kept with the socket across hibernation (at most 16 KiB encoded).
  void serializeAttachment(const Value& value);
  // The attachment, or null.
  Value deserializeAttachment() const;

  bool operator==(const WebSocket& o) const { return impl_ == o.impl_; }
  explicit operator bool() const { return impl_ != nullptr; }
  std::size_t hash() const { return std::hash<const void*>()(impl_.get()); }

 private:
  friend struct WebSocketPair;
  friend struct detail::WebSocketAccess;
  explicit WebSocket(std::shared_ptr<detail::WebSocketImpl> impl) : impl_(std::move(impl)) {}
  const std::shared_ptr<detail::WebSocketImpl>& impl() const { return impl_; }

  std::shared_ptr<detail::WebSocketImpl> impl_;
};

// `new WebSocketPair()`: auto [client, server] = durable::WebSocketPair();
struct WebSocketPair {
  WebSocketPair();
  WebSocket client;
  WebSocket server;
};

}  // namespace durable

template <>
struct std::hash<durable::WebSocket> {
  std::size_t operator()(const durable::WebSocket& ws) const noexcept { return ws.hash(); }
};
