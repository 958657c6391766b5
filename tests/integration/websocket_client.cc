#include "integration/websocket_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <cctype>
#include <functional>

namespace durable_it {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct WsClient::Impl {
  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws{ioc};
  beast::flat_buffer buffer;
  std::deque<WsMessage> inbox;
  std::optional<WsClosed> closed;
  bool reading = false;
  bool closing = false;  // our close() is under way: it decides how the connection ended
  std::deque<std::string> pongs;

  // Runs handlers until done() or the deadline; returns done().
  bool runUntil(const std::function<bool()>& done, Clock::time_point deadline) {
    ioc.restart();
    while (!done()) {
      auto now = Clock::now();
      if (now >= deadline) return false;
      std::size_t n = ioc.run_one_for(deadline - now);
      if (n == 0 && ioc.stopped()) return done();  // no work left: nothing more will happen
    }
    return true;
  }

  // Keeps one read in flight: every message lands in the inbox, the end in `closed`.
  void arm() {
    if (reading || closed) return;
    reading = true;
    ws.async_read(buffer, [this](beast::error_code ec, std::size_t) {
      reading = false;
      if (ec) {
        // Beast ends the pending read with operation_aborted while our close() runs.
        if (closing) return;
        WsClosed c;
        if (ec == websocket::error::closed) {
          c.clean = true;
          c.code = ws.reason().code ? static_cast<int>(ws.reason().code) : 1005;
          c.reason = std::string(ws.reason().reason.c_str());
        } else {
          c.code = 1006;
          c.error = ec.message();
          // Beast answers a protocol error of ours with a close frame before failing the read
          // only on its own side; what the server sent, if anything, is in reason().
          if (ws.reason().code) {
            c.code = static_cast<int>(ws.reason().code);
            c.reason = std::string(ws.reason().reason.c_str());
          }
        }
        closed = std::move(c);
        return;
      }
      inbox.push_back({beast::buffers_to_string(buffer.data()), ws.got_binary()});
      buffer.consume(buffer.size());
      arm();
    });
  }

  void write(const std::string& data, bool binary, std::chrono::milliseconds timeout) {
    if (closed) throw WsError("send on a closed WebSocket (" + std::to_string(closed->code) + ")");
    ws.binary(binary);
    bool done = false;
    beast::error_code result;
    ws.async_write(asio::buffer(data), [&](beast::error_code ec, std::size_t) {
      done = true;
      result = ec;
    });
    if (!runUntil([&] { return done; }, Clock::now() + timeout)) {
      beast::get_lowest_layer(ws).socket().close();
      runUntil([&] { return done; }, Clock::now() + 1s);
      throw WsError("send timed out");
    }
    if (result) throw WsError("send: " + result.message());
  }
};

WsClient::WsClient() : impl_(std::make_unique<Impl>()) {}

WsClient::~WsClient() {
  auto& d = *impl_;
  beast::error_code ignored;
  beast::get_lowest_layer(d.ws).socket().close(ignored);
  // Let the aborted operations finish while everything they reference is alive.
  d.runUntil([&] { return !d.reading; }, Clock::now() + 1s);
}

std::unique_ptr<WsClient> WsClient::connect(const std::string& host, std::uint16_t port, const std::string& target,
                                            const Options& options) {
  std::unique_ptr<WsClient> c(new WsClient());
  auto& d = *c->impl_;
  const auto deadline = Clock::now() + options.timeout;
  auto& tcpStream = beast::get_lowest_layer(d.ws);

  bool done = false;
  beast::error_code result;
  tcpStream.expires_after(options.timeout);
  tcpStream.async_connect(tcp::endpoint(asio::ip::make_address(host), port), [&](beast::error_code ec) {
    done = true;
    result = ec;
  });
  d.runUntil([&] { return done; }, deadline + 1s);
  if (!done || result) {
    throw WsError("connect to " + host + ":" + std::to_string(port) + ": " + (done ? result.message() : "timed out"));
  }
  tcpStream.expires_never();
  beast::error_code ignored;
  tcpStream.socket().set_option(tcp::no_delay(true), ignored);

  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = options.timeout;
  timeouts.idle_timeout = websocket::stream_base::none();
  timeouts.keep_alive_pings = false;
  d.ws.set_option(timeouts);
  d.ws.read_message_max(options.readMessageMax);
  d.ws.auto_fragment(false);
  d.ws.control_callback([&d](websocket::frame_type kind, beast::string_view payload) {
    if (kind == websocket::frame_type::pong) d.pongs.emplace_back(payload);
  });
  auto headers = options.headers;
  d.ws.set_option(websocket::stream_base::decorator([headers](websocket::request_type& req) {
    for (const auto& [k, v] : headers) req.set(k, v);
  }));

  websocket::response_type res;
  done = false;
  d.ws.async_handshake(res, host + ":" + std::to_string(port), target, [&](beast::error_code ec) {
    done = true;
    result = ec;
  });
  if (!d.runUntil([&] { return done; }, deadline + 1s)) {
    throw WsError("WebSocket handshake with " + target + " timed out");
  }
  if (result) {
    const int status = static_cast<int>(res.result_int());
    throw WsError("WebSocket handshake with " + target + ": " + result.message() + " (HTTP " +
                      std::to_string(status) + ")",
                  status, res.body());
  }
  d.arm();
  return c;
}

void WsClient::send(const std::string& text, std::chrono::milliseconds timeout) { impl_->write(text, false, timeout); }

void WsClient::sendBinary(const std::string& data, std::chrono::milliseconds timeout) {
  impl_->write(data, true, timeout);
}

std::optional<WsMessage> WsClient::read(std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  d.runUntil([&] { return !d.inbox.empty() || d.closed.has_value(); }, Clock::now() + timeout);
  if (d.inbox.empty()) return std::nullopt;
  WsMessage m = std::move(d.inbox.front());
  d.inbox.pop_front();
  return m;
}

std::string WsClient::readText(std::chrono::milliseconds timeout) {
  auto m = read(timeout);
  if (!m) {
    if (impl_->closed) {
      throw WsError("connection closed (" + std::to_string(impl_->closed->code) + " " + impl_->closed->reason +
                    impl_->closed->error + ") while waiting for a message");
    }
    throw WsError("no message within " + std::to_string(timeout.count()) + " ms");
  }
  return std::move(m->data);
}

std::deque<WsMessage> WsClient::drain(std::chrono::milliseconds quiet) {
  auto& d = *impl_;
  d.runUntil([] { return false; }, Clock::now() + quiet);
  return std::exchange(d.inbox, {});
}

void WsClient::close(int code, const std::string& reason, std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  if (d.closed) return;
  d.closing = true;
  bool done = false;
  beast::error_code result;
  websocket::close_reason cr(static_cast<websocket::close_code>(code), reason);
  d.ws.async_close(cr, [&](beast::error_code ec) {
    done = true;
    result = ec;
  });
  const bool finished = d.runUntil([&] { return done && !d.reading; }, Clock::now() + timeout);
  WsClosed c;
  c.clean = finished && !result;
  // The code the server answered with.
  c.code = d.ws.reason().code ? static_cast<int>(d.ws.reason().code) : (c.clean ? 1005 : 1006);
  c.reason = std::string(d.ws.reason().reason.c_str());
  c.error = finished ? result.message() : "timed out";
  if (c.clean) c.error.clear();
  d.closed = std::move(c);
  if (!finished) {
    beast::get_lowest_layer(d.ws).socket().close();
    d.runUntil([&] { return done && !d.reading; }, Clock::now() + 1s);
    throw WsError("the closing handshake did not complete within " + std::to_string(timeout.count()) + " ms");
  }
}

WsClosed WsClient::waitClosed(std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  if (!d.runUntil([&] { return d.closed.has_value(); }, Clock::now() + timeout)) {
    throw WsError("the server did not close the connection within " + std::to_string(timeout.count()) + " ms");
  }
  return *d.closed;
}

const std::optional<WsClosed>& WsClient::closed() const { return impl_->closed; }

bool WsClient::ping(const std::string& payload, std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  if (d.closed) return false;
  d.pongs.clear();
  bool done = false;
  beast::error_code result;
  d.ws.async_ping(websocket::ping_data(payload), [&](beast::error_code ec) {
    done = true;
    result = ec;
  });
  const auto deadline = Clock::now() + timeout;
  if (!d.runUntil([&] { return done; }, deadline) || result) return false;
  auto got = [&] { return std::find(d.pongs.begin(), d.pongs.end(), payload) != d.pongs.end(); };
  return d.runUntil([&] { return got() || d.closed.has_value(); }, deadline) && got();
}

void WsClient::drop(bool reset) {
  auto& d = *impl_;
  auto& socket = beast::get_lowest_layer(d.ws).socket();
  beast::error_code ignored;
  if (reset) socket.set_option(asio::socket_base::linger(true, 0), ignored);
  socket.close(ignored);
  d.runUntil([&] { return !d.reading; }, Clock::now() + 1s);
  if (!d.closed) d.closed = WsClosed{1006, "", false, "dropped"};
}

void WsClient::sendRaw(const std::string& bytes, std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  bool done = false;
  beast::error_code result;
  asio::async_write(beast::get_lowest_layer(d.ws).socket(), asio::buffer(bytes), [&](beast::error_code ec, std::size_t) {
    done = true;
    result = ec;
  });
  if (!d.runUntil([&] { return done; }, Clock::now() + timeout)) throw WsError("raw write timed out");
  if (result) throw WsError("raw write: " + result.message());
}

std::string WsClient::invalidFrame() {
  // FIN + reserved opcode 0x3; MASK bit with an empty payload; then the 4-byte masking key.
  return std::string("\x83\x80\x01\x02\x03\x04", 6);
}

SimpleResponse httpGet(const std::string& host, std::uint16_t port, const std::string& target,
                       const std::map<std::string, std::string>& headers, std::chrono::milliseconds timeout) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(timeout);
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, host + ":" + std::to_string(port));
  req.set(http::field::connection, "close");
  for (const auto& [k, v] : headers) req.set(k, v);
  http::response<http::string_body> res;
  beast::flat_buffer buffer;
  beast::error_code result;
  stream.async_connect(tcp::endpoint(asio::ip::make_address(host), port), [&](beast::error_code ec) {
    if (ec) {
      result = ec;
      return;
    }
    http::async_write(stream, req, [&](beast::error_code ec2, std::size_t) {
      if (ec2) {
        result = ec2;
        return;
      }
      http::async_read(stream, buffer, res, [&](beast::error_code ec3, std::size_t) { result = ec3; });
    });
  });
  ioc.run();
  if (result) throw WsError("GET " + target + ": " + result.message());
  SimpleResponse r;
  r.status = static_cast<int>(res.result_int());
  r.body = res.body();
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(field.value());
  }
  return r;
}

}  // namespace durable_it
