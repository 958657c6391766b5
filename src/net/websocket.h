// WebSockets owned by objects.
//
// A WebSocketPair is two WebSocketImpl: the server end, which the object accepts, and the
// client end, which travels back in the 101 response and tells the HTTP session whose
// connection to hand over. The session moves the TCP socket to the object's shard and a
// NetSocket takes it from there, so an object and its sockets share one thread: a broadcast
// is a loop of queued writes, with no hop between threads.
//
// Hibernation: a socket belongs to its object's entry in the shard's SocketRegistry, not to
// the object instance, so the instance can be evicted while sockets stay open; the next
// message constructs it again (ObjectHost::webSocketEvent).
#pragma once

#include <durable/id.h>
#include <durable/websocket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <cstdint>
#include <utility>
#include <vector>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace durable::detail {

// A FIFO that allocates nothing while empty. std::deque allocates about 600 bytes on
// construction; two per idle socket were a fifth of a hibernated socket's memory.
template <class T>
class LazyQueue {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  template <class... Args>
  void emplace_back(Args&&... args) {
    items_.emplace_back(std::forward<Args>(args)...);
  }
  void pop_front() {
    if (++head_ == items_.size()) {
      clear();
    } else if (head_ >= 64 && head_ * 2 >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  void clear() {
    std::vector<T>().swap(items_);
    head_ = 0;
  }

 private:
  std::vector<T> items_;
  std::size_t head_ = 0;
};

class NetSocket;
class Shard;
struct NamespaceImpl;

struct WebSocketImpl {
  // Client end: the server end it was made with (until the HTTP layer adopts the connection).
  std::weak_ptr<WebSocketImpl> partner;

  // Server end; owner shard only once accepted.
  Shard* shard = nullptr;
  const NamespaceImpl* ns = nullptr;
  ObjectId id;
  bool accepted = false;
  int readyState = WebSocket::kConnecting;
  std::vector<std::string> tags;
  std::optional<std::string> attachment;  // Value::encode()
  std::optional<std::int64_t> autoResponseAt;
  // Weak: the connection lives while it has an operation pending (a read always is, while it
  // is open); a strong pointer both ways would keep a socket alive past its io_context.
  std::weak_ptr<NetSocket> conn;

  // Frames sent but not yet written: held for the output gate, or for the connection.
  struct Outgoing {
    std::uint64_t seq;  // durable batch the frame waits for (0: none)
    bool binary;
    std::string data;
  };
  LazyQueue<Outgoing> held;
  bool waitingDurable = false;
  std::optional<std::pair<int, std::string>> closeAfterHeld;  // close() queued behind held frames

  void send(std::string data, bool binary);
  void close(int code, std::string reason);
  // Writes the held frames that may leave now.
  void release();
};

// Per object on a shard: its sockets and the object-level WebSocket settings, which outlive
// the instance.
struct ObjectSockets {
  std::vector<std::shared_ptr<WebSocketImpl>> sockets;
  std::optional<std::pair<std::string, std::string>> autoResponse;
  std::optional<std::int64_t> eventTimeoutMs;
};

// The network side of an accepted socket, on the object's shard.
class NetSocket : public std::enable_shared_from_this<NetSocket> {
 public:
  using Stream = boost::beast::websocket::stream<boost::beast::tcp_stream>;

  NetSocket(boost::asio::ip::tcp::socket socket, std::shared_ptr<WebSocketImpl> impl, std::size_t maxMessageBytes);
  // Completes the handshake for `request`, then reads until the socket closes.
  void start(boost::beast::http::request<boost::beast::http::string_body> request);
  void write(bool binary, std::string data);
  void close(int code, std::string reason);

 private:
  void read();
  void onRead(boost::beast::error_code ec, std::size_t bytes);
  void writeNext();
  void finish(int code, std::string reason, bool wasClean, std::optional<std::string> error);

  Stream ws_;
  boost::beast::flat_buffer buffer_;
  std::shared_ptr<WebSocketImpl> impl_;
  LazyQueue<std::pair<bool, std::string>> queue_;
  std::pair<bool, std::string> current_;  // the frame being written: async_write reads from it
  bool writing_ = false;
  bool open_ = false;
  bool closing_ = false;
  bool finished_ = false;
  std::optional<std::pair<int, std::string>> closeWhenDrained_;
};

// Hands an upgraded connection to the object that accepted `client`'s partner: moves the
// socket to that object's shard and completes the handshake there. Returns false (and does
// nothing) when `client` is not the client end of an accepted pair.
bool adoptWebSocket(const WebSocket& client, boost::asio::ip::tcp::socket socket,
                    boost::beast::http::request<boost::beast::http::string_body> request, Shard& from);

}  // namespace durable::detail
