// NetSocket's send path: the bounded queue, the per-thread flusher that writes each socket's
// frames in one gathered send, in slices, and the hand-over with Beast's own writes.
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

namespace durable::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

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
  impl_->shard->metrics().websocketMessagesOut.add();
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

}  // namespace durable::detail
