#include "net/peer_channel.h"

#include "base/exec_context.h"
#include "net/error_response.h"

#include <durable/error.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <cstring>
#include <optional>
#include <unordered_map>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace durable::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

constexpr std::uint8_t kRequest = 1;
constexpr std::uint8_t kResponse = 2;
constexpr std::size_t kChunk = 64 * 1024;

void putU32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void putU64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void putStr(std::string& out, std::string_view s) {
  putU32(out, static_cast<std::uint32_t>(s.size()));
  out += s;
}

// Appends one frame: its length is written once the payload is.
template <class Payload>
void putFrame(std::string& out, std::uint64_t id, std::uint8_t kind, Payload payload) {
  const std::size_t at = out.size();
  putU32(out, 0);
  putU64(out, id);
  out.push_back(static_cast<char>(kind));
  payload(out);
  const auto length = static_cast<std::uint32_t>(out.size() - at - 4);
  for (int i = 0; i < 4; ++i) out[at + static_cast<std::size_t>(i)] = static_cast<char>(length >> (8 * i));
}

void putHeaders(std::string& out, const Headers& headers) {
  const auto& entries = headers.entries();
  putU32(out, static_cast<std::uint32_t>(entries.size()));
  for (const auto& [name, value] : entries) {
    putStr(out, name);
    putStr(out, value);
  }
}

// Reads a frame's payload; any read past its end throws, and the connection is dropped.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  std::uint32_t u32() {
    need(4);
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in_[at_ + static_cast<std::size_t>(i)])) << (8 * i);
    at_ += 4;
    return v;
  }
  std::uint64_t u64() {
    const std::uint64_t lo = u32();
    return lo | (static_cast<std::uint64_t>(u32()) << 32);
  }
  std::uint8_t u8() {
    need(1);
    return static_cast<std::uint8_t>(in_[at_++]);
  }
  std::string_view str() {
    const std::size_t n = u32();
    need(n);
    const auto s = in_.substr(at_, n);
    at_ += n;
    return s;
  }

 private:
  void need(std::size_t n) const {
    if (in_.size() - at_ < n) throw std::runtime_error("a truncated frame");
  }
  std::string_view in_;
  std::size_t at_ = 0;
};

// Splits the complete frames at the front of `in` off to `onFrame(id, kind, payload)`; false
// when a frame is larger than `maxFrame` (the peer is not one of ours, or broken).
template <class OnFrame>
bool takeFrames(std::string& in, std::size_t maxFrame, OnFrame onFrame) {
  std::size_t at = 0;
  while (in.size() - at >= 4) {
    std::uint32_t length = 0;
    for (int i = 0; i < 4; ++i) length |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[at + static_cast<std::size_t>(i)])) << (8 * i);
    if (length > maxFrame || length < 9) return false;
    if (in.size() - at - 4 < length) break;
    Reader r(std::string_view(in).substr(at + 4, length));
    const std::uint64_t id = r.u64();
    const std::uint8_t kind = r.u8();
    onFrame(id, kind, r);
    at += 4 + length;
  }
  in.erase(0, at);
  return true;
}

Error unavailable(const std::string& why) { return Error(ErrorCode::kUnavailable, why); }

}  // namespace

void keepAliveBetweenNodes(tcp::socket& socket) {
  const int fd = socket.native_handle();
  const int on = 1, idle = 10, interval = 5, count = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

// ---------------------------------------------------------------------------------------------
// The sender's side.

struct PeerChannels::Connection : std::enable_shared_from_this<Connection> {
  Connection(asio::io_context& context, std::string address, std::chrono::milliseconds timeout, std::size_t maxFrame)
      : address(std::move(address)), timeout(timeout), maxFrame(maxFrame), resolver(context), socket(context),
        sweep(context), opened(std::chrono::steady_clock::now()) {}

  struct Waiter {
    Promise<Response> answer;
    std::chrono::steady_clock::time_point deadline;
  };

  const std::string address;
  const std::chrono::milliseconds timeout;
  const std::size_t maxFrame;
  tcp::resolver resolver;
  tcp::socket socket;
  asio::steady_timer sweep;
  const std::chrono::steady_clock::time_point opened;
  bool open = false;
  bool dead = false;
  bool writing = false;
  std::string pending;  // frames queued while a write is on the wire
  std::string wire;     // the frames of that write
  std::string in;
  std::array<char, kChunk> chunk{};
  std::unordered_map<std::uint64_t, Waiter> waiting;
  std::uint64_t nextId = 1;

  void start(const std::string& secret) {
    const auto colon = address.rfind(':');
    std::string host = colon == std::string::npos ? address : address.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    const std::string port = colon == std::string::npos ? "" : address.substr(colon + 1);
    std::string head = "GET " + std::string(kPath) + " HTTP/1.1\r\nHost: " + address +
                       "\r\nConnection: Upgrade\r\nUpgrade: " + std::string(kProtocol) +
                       "\r\nx-durable-cluster-secret: " + secret + "\r\n\r\n";
    armSweep();
    resolver.async_resolve(host, port, [self = shared_from_this(), head = std::move(head)](
                                           error_code ec, tcp::resolver::results_type endpoints) mutable {
      if (ec) return self->fail("cannot resolve the node " + self->address + ": " + ec.message());
      if (self->dead) return;
      asio::async_connect(self->socket, endpoints, [self, head = std::move(head)](error_code cec, const tcp::endpoint&) mutable {
        if (cec) return self->fail("cannot connect to the node " + self->address + ": " + cec.message());
        if (self->dead) return;
        error_code ignored;
        self->socket.set_option(tcp::no_delay(true), ignored);
        // Every request waiting on a silent peer has its own deadline meanwhile.
        keepAliveBetweenNodes(self->socket);
        self->wire = std::move(head);
        asio::async_write(self->socket, asio::buffer(self->wire), [self](error_code wec, std::size_t) {
          if (wec) return self->fail("the node " + self->address + " refused the channel: " + wec.message());
          self->wire.clear();
          asio::async_read_until(self->socket, asio::dynamic_buffer(self->in), "\r\n\r\n",
                                 [self](error_code rec, std::size_t headEnd) {
                                   if (rec) return self->fail("the node " + self->address + " did not open the channel: " + rec.message());
                                   if (self->in.rfind("HTTP/1.1 101", 0) != 0) {
                                     return self->fail("the node " + self->address + " refused the channel: " +
                                                       self->in.substr(0, self->in.find('\r')));
                                   }
                                   self->in.erase(0, headEnd);
                                   self->open = true;
                                   self->flush();
                                   self->read();
                                 });
        });
      });
    });
  }

  void flush() {
    if (!open || dead || writing || pending.empty()) return;
    writing = true;
    wire.swap(pending);
    asio::async_write(socket, asio::buffer(wire), [self = shared_from_this()](error_code ec, std::size_t) {
      self->writing = false;
      self->wire.clear();
      if (ec) return self->fail("the connection to the node " + self->address + " failed: " + ec.message());
      self->flush();
    });
  }

  void read() {
    socket.async_read_some(asio::buffer(chunk), [self = shared_from_this()](error_code ec, std::size_t n) {
      if (ec) return self->fail("the connection to the node " + self->address + " ended: " + ec.message());
      self->in.append(self->chunk.data(), n);
      bool ok = true;
      try {
        ok = takeFrames(self->in, self->maxFrame, [&](std::uint64_t id, std::uint8_t kind, Reader& r) {
          if (kind != kResponse) throw std::runtime_error("a frame that is not a response");
          const int status = static_cast<int>(r.u32());
          const std::string statusText(r.str());
          Headers headers;
          for (std::uint32_t i = 0, n = r.u32(); i < n; ++i) {
            const auto name = r.str();
            headers.append(name, r.str());
          }
          Response response(std::string(r.str()), {.status = status, .statusText = statusText});
          response.headers() = std::move(headers);
          auto it = self->waiting.find(id);
          if (it == self->waiting.end()) return;  // it timed out
          auto answer = std::move(it->second.answer);
          self->waiting.erase(it);
          answer.setValue(std::move(response));
        });
      } catch (const std::exception&) {
        ok = false;
      }
      if (!ok) return self->fail("the node " + self->address + " sent a malformed answer");
      self->read();
    });
  }

  void armSweep() {
    sweep.expires_after(std::min<std::chrono::milliseconds>(timeout / 4 + std::chrono::milliseconds(1),
                                                            std::chrono::milliseconds(1000)));
    sweep.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->dead) return;
      const auto now = std::chrono::steady_clock::now();
      if (!self->open && now - self->opened > self->timeout) {
        return self->fail("connecting to the node " + self->address + " took longer than " +
                          std::to_string(self->timeout.count()) + " ms");
      }
      for (auto it = self->waiting.begin(); it != self->waiting.end();) {
        if (it->second.deadline <= now) {
          it->second.answer.setError(std::make_exception_ptr(
              unavailable("the node " + self->address + " did not answer within " + std::to_string(self->timeout.count()) + " ms")));
          it = self->waiting.erase(it);
        } else {
          ++it;
        }
      }
      self->armSweep();
    });
  }

  // Every request still waiting fails: those written may have run on the node.
  void fail(const std::string& why) {
    if (std::exchange(dead, true)) return;
    error_code ignored;
    resolver.cancel();
    socket.close(ignored);
    sweep.cancel();
    auto failed = std::move(waiting);
    waiting.clear();
    // Before the channel opened nothing was written: those requests never reached the node.
    for (auto& [id, w] : failed) {
      w.answer.setError(open ? std::make_exception_ptr(unavailable(why)) : std::make_exception_ptr(NotDelivered(why)));
    }
  }
};

PeerChannels::PeerChannels(asio::io_context& context, std::string secret, std::chrono::milliseconds timeout,
                           std::size_t maxFrameBytes)
    : context_(context), secret_(std::move(secret)), timeout_(timeout), maxFrameBytes_(maxFrameBytes) {}

PeerChannels::~PeerChannels() {
  for (auto& [address, c] : connections_) c->fail("this node is stopping");
}

Task<Response> PeerChannels::send(const std::string& address, const Request& request) {
  auto& slot = connections_[address];
  if (!slot || slot->dead) {
    slot = std::make_shared<Connection>(context_, address, timeout_, maxFrameBytes_);
    slot->start(secret_);
  }
  std::shared_ptr<Connection> c = slot;
  const std::uint64_t id = c->nextId++;
  Promise<Response> answer;
  auto answered = answer.future();
  c->waiting.emplace(id, Connection::Waiter{std::move(answer), std::chrono::steady_clock::now() + timeout_});
  putFrame(c->pending, id, kRequest, [&](std::string& out) {
    putStr(out, request.method());
    putStr(out, request.urlString());
    putHeaders(out, request.headers());
    out.push_back(static_cast<char>(request.hasBody() ? 1 : 0));
    putStr(out, request.text());
  });
  c->flush();
  co_return co_await std::move(answered);
}

// ---------------------------------------------------------------------------------------------
// The owner's side.

namespace {

class ChannelServer : public std::enable_shared_from_this<ChannelServer> {
 public:
  ChannelServer(tcp::socket socket, ConnectionSlot slot, std::size_t maxFrame,
                std::function<Task<Response>(Request)> handle)
      : socket_(std::move(socket)), slot_(std::move(slot)), maxFrame_(maxFrame), handle_(std::move(handle)) {}

  void start(std::string early) {
    error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    pending_ = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + std::string(PeerChannels::kProtocol) +
               "\r\n\r\n";
    flush();
    in_ = std::move(early);
    if (takeAll()) read();
  }

 private:
  void read() {
    socket_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](error_code ec, std::size_t n) {
      if (ec) return self->close();
      self->in_.append(self->chunk_.data(), n);
      if (self->takeAll()) self->read();
    });
  }

  // Serves every whole request in in_; false (and the connection closed) on a malformed one.
  bool takeAll() {
    bool ok = true;
    try {
      ok = takeFrames(in_, maxFrame_, [&](std::uint64_t id, std::uint8_t kind, Reader& r) {
        if (kind != kRequest) throw std::runtime_error("a frame that is not a request");
        const std::string method(r.str());
        const std::string url(r.str());
        Headers headers;
        for (std::uint32_t i = 0, count = r.u32(); i < count; ++i) {
          const auto name = r.str();
          headers.append(name, r.str());
        }
        const bool hasBody = r.u8() != 0;
        const std::string body(r.str());
        serve(id, method, url, std::move(headers), hasBody ? &body : nullptr);
      });
    } catch (const std::exception&) {
      ok = false;
    }
    if (!ok) close();
    return ok;
  }

  void serve(std::uint64_t id, const std::string& method, const std::string& url, Headers headers, const std::string* body) {
    std::optional<Request> request;
    try {
      RequestInit init{.method = method};
      if (body) init.body = *body;
      request.emplace(url, init);
      request->headers() = std::move(headers);
    } catch (...) {
      return answer(id, errorResponse(std::current_exception()));
    }
    // A request of its own: no object's context, no other request's id.
    ContextScope scope({});
    spawn(handle_(std::move(*request)), std::function<void(Result<Response>)>([self = shared_from_this(), id](Result<Response> r) {
            if (r.ok()) {
              self->answer(id, std::move(r).value());
            } else {
              self->answer(id, errorResponse(r.error()));
            }
          }));
  }

  void answer(std::uint64_t id, const Response& response) {
    if (closed_) return;
    putFrame(pending_, id, kResponse, [&](std::string& out) {
      putU32(out, static_cast<std::uint32_t>(response.status()));
      putStr(out, response.statusText());
      putHeaders(out, response.headers());
      putStr(out, response.text());
    });
    flush();
  }

  void flush() {
    if (closed_ || writing_ || pending_.empty()) return;
    writing_ = true;
    wire_.swap(pending_);
    asio::async_write(socket_, asio::buffer(wire_), [self = shared_from_this()](error_code ec, std::size_t) {
      self->writing_ = false;
      self->wire_.clear();
      if (ec) return self->close();
      self->flush();
    });
  }

  void close() {
    if (std::exchange(closed_, true)) return;
    error_code ignored;
    socket_.close(ignored);
    slot_.release();
  }

  tcp::socket socket_;
  ConnectionSlot slot_;
  const std::size_t maxFrame_;
  std::function<Task<Response>(Request)> handle_;
  std::array<char, kChunk> chunk_{};
  std::string in_;
  std::string pending_;
  std::string wire_;
  bool writing_ = false;
  bool closed_ = false;
};

}  // namespace

void servePeerChannel(tcp::socket socket, ConnectionSlot slot, std::string early, std::size_t maxFrameBytes,
                      std::function<Task<Response>(Request)> handle) {
  std::make_shared<ChannelServer>(std::move(socket), std::move(slot), maxFrameBytes, std::move(handle))
      ->start(std::move(early));
}

}  // namespace durable::detail
