// WebSockets owned by objects.
//
// A WebSocketPair is two WebSocketImpl: the server end, which the object accepts, and the
// client end, which travels back in the 101 response and tells the HTTP session whose
// connection to hand over. The session moves the TCP socket to the object's shard and a
// NetSocket takes it from there, so an object and its sockets share one thread: a broadcast
// is a loop of queued writes, with no hop between threads.
//
// Hibernation: a socket belongs to its object's ObjectSockets entry in the shard
// (SocketShard::socketsOf), not to the object instance, so the instance can be evicted while
// sockets stay open; the next message constructs it again (SocketShard::runInObject).
#pragma once

#include "metrics/metrics.h"

#include <durable/id.h>
#include <durable/object.h>
#include <durable/task.h>
#include <durable/websocket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/beast/core/buffers_prefix.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace durable::config {
struct Settings;
}

namespace durable::detail {

// One place in the server's max_connections. The HTTP session takes it when it accepts a
// connection and, on an upgrade, hands it over with the socket: a WebSocket holds its place
// until the socket is closed, so upgraded sockets cannot escape the limit (and exhaust the
// descriptors).
class ConnectionSlot {
 public:
  ConnectionSlot() = default;
  explicit ConnectionSlot(std::shared_ptr<std::atomic<std::int64_t>> counter) : counter_(std::move(counter)) {
    if (counter_) counter_->fetch_add(1, std::memory_order_relaxed);
  }
  ConnectionSlot(ConnectionSlot&& o) noexcept : counter_(std::move(o.counter_)) {}
  ConnectionSlot& operator=(ConnectionSlot&& o) noexcept {
    if (this != &o) {
      release();
      counter_ = std::move(o.counter_);
    }
    return *this;
  }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;
  ~ConnectionSlot() { release(); }
  void release() {
    if (counter_) counter_->fetch_sub(1, std::memory_order_relaxed);
    counter_.reset();
  }

 private:
  std::shared_ptr<std::atomic<std::int64_t>> counter_;
};

// A frame's payload, immutable and shared: a broadcast queues one buffer for every socket,
// not a copy each (ten slow readers of 40 frames of 4 MiB held 1.7 GB as copies).
using Payload = std::shared_ptr<const std::string>;
// The payload for `bytes`: the buffer of the previous send on this thread when it holds the
// same bytes and is still queued somewhere, so the natural loop `for (ws : getWebSockets())
// ws.send(text)` shares one buffer without an API for it.
Payload sharedPayload(std::string_view bytes);

// A FIFO that allocates nothing while empty. std::deque allocates about 600 bytes on
// construction; two per idle socket were a fifth of a hibernated socket's memory.
template <class T>
class LazyQueue {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  T& at(std::size_t i) { return items_[head_ + i]; }
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
// Beast finished a write on the socket: the frames of ours that waited may go.
void beastWriteDone(NetSocket* owner);

// Where the next frame on a WebSocket's connection starts: what FrameAlignedSocket knows of
// the bytes it has delivered. Lives in NetSocket, so it outlasts a released Beast stream.
struct FrameCursor {
  std::uint64_t frameLeft = 0;     // bytes of the current frame not yet delivered (frameKnown)
  std::uint8_t header[14] = {};    // the current frame's header: delivered bytes, then peeked ones
  std::uint8_t headerHave = 0;     // header bytes delivered
  bool frameKnown = false;         // the header is complete and frameLeft counts what is left
  // While Beast's accept() runs: where its handshake response goes (NetSocket sends it, or
  // drops it when restoring a released stream).
  std::string* captureWrites = nullptr;
  // Our frames are written beside Beast, straight to the socket (NetSocket::flush); Beast still
  // writes its own (pong and close replies, our close). Neither may start inside the other's
  // frame: Beast's writes wait while one of ours is partly on the wire (midFrame), and ours
  // wait while Beast writes (beastWriting), which calls `owner` back when done.
  bool midFrame = false;
  bool beastWriting = false;
  NetSocket* owner = nullptr;

  // True when every byte delivered so far belongs to a frame that was delivered whole.
  bool atFrameBoundary() const noexcept { return !frameKnown && headerHave == 0; }
};

// The layer under an accepted WebSocket's Beast stream: a view of the NetSocket's TCP socket
// that hands Beast's reader whole frames at most. It never delivers a byte past the end of the
// frame being read (it peeks at each frame's header first), so when a message has been read,
// Beast's buffer is empty, and an idle socket can wait for readability alone and even give up
// its Beast stream (about 2.5 KiB with its read buffer) while it hibernates; a pending Beast
// read costs another 2 KiB. Idle hibernated sockets are what there are many of.
class FrameAlignedSocket {
 public:
  using socket_type = boost::asio::ip::tcp::socket;
  using executor_type = socket_type::executor_type;
  using next_layer_type = socket_type;

  FrameAlignedSocket(socket_type& socket, FrameCursor& cursor) : socket_(&socket), cursor_(&cursor) {}

  executor_type get_executor() noexcept { return socket_->get_executor(); }
  socket_type& next_layer() noexcept { return *socket_; }
  const socket_type& next_layer() const noexcept { return *socket_; }

  template <class ConstBuffers, class Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler);

  template <class MutableBuffers, class Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler);

  // Synchronous calls serve only Beast's accept(): at the handshake its response is captured
  // and sent by NetSocket, and on restoring a released stream it is dropped (the client had it
  // long ago).
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, boost::system::error_code& ec) {
    if (!cursor_->captureWrites) {
      ec = boost::asio::error::operation_not_supported;
      return 0;
    }
    ec = {};
    for (auto b : boost::beast::buffers_range_ref(buffers)) {
      cursor_->captureWrites->append(static_cast<const char*>(b.data()), b.size());
    }
    return boost::asio::buffer_size(buffers);
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers) {
    boost::system::error_code ec;
    const std::size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers&, boost::system::error_code& ec) {
    ec = boost::asio::error::operation_not_supported;
    return 0;
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers&) {
    throw boost::system::system_error(boost::asio::error::operation_not_supported);
  }

 private:
  template <class MutableBuffers>
  struct ReadOp;
  template <class ConstBuffers>
  struct WriteOp;

  // How many of `capacity` bytes the next read may take. Sets `wouldBlock` when nothing has
  // arrived; any other failure is left for the read itself to report.
  std::size_t readLimit(std::size_t capacity, bool& wouldBlock);
  void delivered(std::size_t bytes);

  socket_type* socket_;
  FrameCursor* cursor_;
};

template <class MutableBuffers>
struct FrameAlignedSocket::ReadOp {
  FrameAlignedSocket s;
  MutableBuffers buffers;
  bool reading = false;

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}, std::size_t bytes = 0) {
    if (reading) {
      if (!ec) s.delivered(bytes);
      return self.complete(ec, bytes);
    }
    if (ec) return self.complete(ec, 0);  // the wait for readability failed
    bool wouldBlock = false;
    const std::size_t limit = s.readLimit(boost::asio::buffer_size(buffers), wouldBlock);
    if (wouldBlock) return s.socket_->async_wait(socket_type::wait_read, std::move(self));
    reading = true;
    s.socket_->async_read_some(boost::beast::buffers_prefix(limit, buffers), std::move(self));
  }
};

template <class MutableBuffers, class Handler>
auto FrameAlignedSocket::async_read_some(const MutableBuffers& buffers, Handler&& handler) {
  return boost::asio::async_compose<Handler, void(boost::system::error_code, std::size_t)>(
      ReadOp<MutableBuffers>{*this, buffers}, handler, *socket_);
}

template <class ConstBuffers>
struct FrameAlignedSocket::WriteOp {
  FrameAlignedSocket s;
  ConstBuffers buffers;
  bool writing = false;

  template <class Self>
  void operator()(Self& self, boost::system::error_code ec = {}, std::size_t bytes = 0) {
    if (writing) {
      s.cursor_->beastWriting = false;
      beastWriteDone(s.cursor_->owner);
      return self.complete(ec, bytes);
    }
    if (ec) return self.complete(ec, 0);  // the wait for writability failed
    // A frame of ours is partly written: its own wait for writability comes first and
    // finishes it (or writes more of it); look again after that.
    if (s.cursor_->midFrame) return s.socket_->async_wait(socket_type::wait_write, std::move(self));
    writing = true;
    s.cursor_->beastWriting = true;
    s.socket_->async_write_some(buffers, std::move(self));
  }
};

template <class ConstBuffers, class Handler>
auto FrameAlignedSocket::async_write_some(const ConstBuffers& buffers, Handler&& handler) {
  return boost::asio::async_compose<Handler, void(boost::system::error_code, std::size_t)>(
      WriteOp<ConstBuffers>{*this, buffers}, handler, *socket_);
}

// Beast's closing handshake ends with a teardown of the layer below the WebSocket.
template <class Handler>
void async_teardown(boost::beast::role_type role, FrameAlignedSocket& s, Handler&& handler) {
  boost::beast::websocket::async_teardown(role, s.next_layer(), std::forward<Handler>(handler));
}
void teardown(boost::beast::role_type role, FrameAlignedSocket& s, boost::system::error_code& ec);

struct NamespaceImpl;
struct WebSocketImpl;
struct ObjectSockets;
struct RelayedUpgrade;
class OutputGate;

// The runtime's way into a WebSocket handle, whose constructor and impl() are private.
struct WebSocketAccess {
  static WebSocket wrap(std::shared_ptr<WebSocketImpl> impl) { return WebSocket(std::move(impl)); }
  static const std::shared_ptr<WebSocketImpl>& impl(const WebSocket& ws) { return ws.impl(); }
};

// What a WebSocket needs from the shard thread that owns its object. The runtime's Shard
// implements it, so that net/ knows nothing of the layers above. A NamespaceImpl is opaque
// here: a socket only hands it back.
class SocketShard {
 public:
  virtual boost::asio::io_context& context() = 0;
  virtual const config::Settings& settings() const = 0;
  virtual metrics::ShardMetrics& metrics() = 0;
  // The object's sockets and WebSocket settings, which outlive its instance.
  virtual ObjectSockets& socketsOf(const NamespaceImpl& ns, const ObjectId& id) = 0;
  virtual void dropSocket(const std::shared_ptr<WebSocketImpl>& ws) = 0;
  // The output gate of the object while it is in memory, else nullptr: an evicted object
  // holds no gate, so nothing it sent is waiting.
  virtual OutputGate* liveOutputGate(const NamespaceImpl& ns, const ObjectId& id) = 0;
  // Cluster mode: false once this node may have lost the object's slot (its lease may have
  // lapsed, or the slot moved since the object was loaded): nothing of the object may leave,
  // it may be stale. Always true on a single node.
  virtual bool outputAllowed(const NamespaceImpl& ns, const ObjectId& id) = 0;
  // Runs `fn` in the object as an event, constructing it again if it hibernated.
  virtual void runInObject(const NamespaceImpl& ns, const ObjectId& id,
                           std::function<Task<void>(DurableObject&, State&)> fn,
                           std::function<void(std::exception_ptr)> done) = 0;

 protected:
  ~SocketShard() = default;
};

struct WebSocketImpl {
  // Client end: the server end it was made with (until the HTTP layer adopts the connection).
  std::weak_ptr<WebSocketImpl> partner;

  // Server end; owner shard only once accepted.
  SocketShard* shard = nullptr;
  const NamespaceImpl* ns = nullptr;
  ObjectId id;
  bool accepted = false;
  int readyState = WebSocket::kConnecting;
  std::vector<std::string> tags;
  std::optional<std::string> attachment;  // Value::encode()
  std::optional<std::int64_t> autoResponseAt;
  // A connection that stops being HTTP but is no WebSocket (cluster mode's node-to-node
  // channels, net/peer_channel.h): the HTTP session hands its socket and place over to this.
  // The string: what the peer sent after the request's head (read into the session's buffer).
  std::function<void(boost::asio::ip::tcp::socket, ConnectionSlot, std::string)> adopt;
  // Client end of a WebSocket another node holds (cluster mode): the connection to that node,
  // upgraded, for the HTTP session to relay the client's connection to (net/websocket_relay.h).
  std::shared_ptr<RelayedUpgrade> relayed;
  // Weak: the connection lives while it has an operation pending (a read always is, while it
  // is open); a strong pointer both ways would keep a socket alive past its io_context.
  std::weak_ptr<NetSocket> conn;

  // Frames sent but not yet written: held for the output gate, or for the connection.
  struct Outgoing {
    std::uint64_t gateMark;  // the object's OutputGate::mark() when it was sent (0: no object)
    bool binary;
    Payload data;
  };
  LazyQueue<Outgoing> held;
  bool waitingDurable = false;
  // close() queued behind the held frames, with the gate's mark when it was called: a close is
  // output too, and waits for the writes made before it.
  struct PendingClose {
    std::uint64_t gateMark;
    int code;
    std::string reason;
  };
  std::optional<PendingClose> closeAfterHeld;

  void send(Payload data, bool binary);
  void close(int code, std::string reason);
  // Writes the held frames that may leave now.
  void release();
  // The object may no longer speak here (SocketShard::outputAllowed): what it sent and has not
  // left is dropped, and the client is told to reconnect (1012, as when an object moves).
  void fencedOut();
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
  using Stream = boost::beast::websocket::stream<FrameAlignedSocket, false>;

  using Clock = std::chrono::steady_clock;

  NetSocket(boost::asio::ip::tcp::socket socket, std::shared_ptr<WebSocketImpl> impl, const config::Settings& settings,
            ConnectionSlot slot);
  // Completes the handshake for `request`, then reads until the socket closes.
  void start(boost::beast::http::request<boost::beast::http::string_body> request);
  void write(bool binary, Payload data);
  void close(int code, std::string reason);
  // The object went into hibernation: an idle socket gives up its Beast stream until the next
  // frame arrives or the object sends.
  void hibernate();
  // The shard's periodic check: write, message and pong timeouts, and the idle ping.
  void sweep(Clock::time_point now);
  // Writes the queued frames, as many as the socket takes now (one gathered send), and waits
  // for writability when it takes no more. Runs from the shard's flusher (flushSoon()).
  void flush();
  // Beast's write ended (beastWriteDone): the frames it held up may go.
  void afterBeastWrite();

 private:
  // The Beast stream, restored first if it was released; null (and the socket finished) if
  // that failed.
  Stream* stream();
  void configure(Stream& ws);
  // Waits for the next message: on readability alone while Beast holds no buffered bytes.
  void read();
  void readMessage();
  void onRead(boost::beast::error_code ec, std::size_t bytes);
  // Queues this socket on its shard's flusher, which writes the sockets with frames one after
  // the other in slices of bounded time: a broadcast to thousands of sockets costs the handler
  // that sends it one queue push each, no system call, and other work runs between slices.
  // Frames queued meanwhile leave together, in one send per socket.
  void flushSoon();
  // After the queue drained: the close that waited for it.
  void drained();
  void finish(int code, std::string reason, bool wasClean, std::optional<std::string> error);
  // The runtime ends the socket for cause: a close frame with `code` goes out at once when no
  // frame is being written (the peer is not waiting for a handshake), then the socket closes.
  // The object hears webSocketClose(code, reason).
  void abort(int code, std::string reason);
  // Takes a complete pong at the head of the socket's bytes without waking the Beast stream,
  // so a hibernated socket answering our ping stays hibernated. False when anything else is there.
  bool consumePong();
  void ping();
  // Keeps reassemblyHeld_ equal to the buffer's capacity while a message is unfinished.
  bool accountReassembly();
  void releaseReassembly();

  boost::asio::ip::tcp::socket socket_;
  FrameCursor cursor_;
  std::optional<Stream> ws_;
  const config::Settings& settings_;
  ConnectionSlot slot_;
  boost::beast::flat_buffer buffer_;
  std::shared_ptr<WebSocketImpl> impl_;
  struct OutFrame {
    std::uint8_t opcode;  // RFC 6455: 1 text, 2 binary, 9 ping
    Payload data;
  };
  // Frames not yet wholly written; the front one may be partly on the wire (frontSent_).
  LazyQueue<OutFrame> queue_;
  std::size_t frontSent_ = 0;         // bytes of the front frame (header included) written
  std::size_t queuedBytes_ = 0;       // payload bytes in queue_, but for a frame partly written
  bool flushQueued_ = false;          // on the flusher's list
  bool waitingWritable_ = false;      // a wait for writability is pending
  Clock::time_point writeStarted_{};  // since when the peer took no whole frame (writing_)
  Clock::time_point lastHeard_ = Clock::now();
  Clock::time_point messageStarted_{};
  Clock::time_point pingSent_{};
  bool pinged_ = false;
  bool inMessage_ = false;             // a message's first bytes were read, not yet its end
  std::size_t reassemblyHeld_ = 0;     // bytes counted in the process-wide reassembly total
  bool overflowed_ = false;            // the send queue went past its bound: further frames dropped
  std::optional<std::pair<int, std::string>> runtimeClose_;  // what the object hears after abort()
  bool writing_ = false;  // frames wait for the peer to take them (the write timeout runs)
  bool open_ = false;
  bool closing_ = false;
  bool finished_ = false;
  bool waitingIdle_ = false;  // a wait for readability is pending, and no Beast read
  std::optional<std::pair<int, std::string>> closeWhenDrained_;
};

// Hands an upgraded connection to `server`, the accepted server end of a pair (accepted and
// shard set: the caller checks): moves the socket to that object's shard and completes the
// handshake there.
void adoptWebSocket(const std::shared_ptr<WebSocketImpl>& server, boost::asio::ip::tcp::socket socket,
                    boost::beast::http::request<boost::beast::http::string_body> request, SocketShard& from,
                    ConnectionSlot slot);

}  // namespace durable::detail
