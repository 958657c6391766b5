// A small synchronous WebSocket client for tests, over Boost.Beast.
//
// One connection, one private io_context, driven only from the calling thread. A read is kept
// in flight for the life of the connection, so every call (send, read, close) also collects
// the frames that arrived meanwhile into an inbox; a read that times out therefore never
// disturbs the connection. Every call is bounded by a timeout.
//
//   auto ws = durable_it::WsClient::connect("127.0.0.1", port, "/rooms/r/websocket?user=ann");
//   ws->send(R"({"type":"message","content":"hi"})");
//   std::string frame = ws->readText();          // throws on timeout or close
//   ws->close(1000, "bye");                      // the closing handshake
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace durable_it {

using namespace std::chrono_literals;

class WsError : public std::runtime_error {
 public:
  explicit WsError(const std::string& what, int httpStatus = 0, std::string httpBody = {})
      : std::runtime_error(what), status(httpStatus), body(std::move(httpBody)) {}
  // When the server refused the upgrade: its HTTP status and body.
  int status = 0;
  std::string body;
};

struct WsMessage {
  std::string data;
  bool binary = false;
};

// How the connection ended, as this client saw it.
struct WsClosed {
  int code = 0;             // the code of the server's close frame; 1006 when none came
  std::string reason;
  bool clean = false;       // a close frame arrived
  std::string error;        // the read error otherwise
};

class WsClient {
 public:
  struct Options {
    std::chrono::milliseconds timeout = 10s;  // connect and handshake
    std::map<std::string, std::string> headers;
    std::size_t readMessageMax = 64 * 1024 * 1024;
  };

  // Connects to host:port and upgrades `target`. Throws WsError; when the server answered
  // with something else than 101, the error carries its status and body.
  static std::unique_ptr<WsClient> connect(const std::string& host, std::uint16_t port, const std::string& target,
                                           const Options& options);
  static std::unique_ptr<WsClient> connect(const std::string& host, std::uint16_t port, const std::string& target) {
    return connect(host, port, target, Options{});
  }
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Sends one text (or binary) message; throws WsError when the write fails or times out.
  void send(const std::string& text, std::chrono::milliseconds timeout = 10s);
  void sendBinary(const std::string& data, std::chrono::milliseconds timeout = 10s);

  // The next message, or nullopt when none arrived within `timeout` or the connection ended.
  std::optional<WsMessage> read(std::chrono::milliseconds timeout);
  // The next message's text; throws WsError on timeout or close.
  std::string readText(std::chrono::milliseconds timeout = 10s);
  // Waits `quiet` and returns what arrived meanwhile (nothing, usually).
  std::deque<WsMessage> drain(std::chrono::milliseconds quiet);

  // Starts the closing handshake and waits until it completes (or `timeout`).
  void close(int code = 1000, const std::string& reason = {}, std::chrono::milliseconds timeout = 10s);
  // Waits until the server ends the connection; frames that arrive first are kept in the
  // inbox. Throws WsError if it is still open after `timeout`.
  WsClosed waitClosed(std::chrono::milliseconds timeout = 10s);
  // The end of the connection, if it ended.
  const std::optional<WsClosed>& closed() const;
  bool isOpen() const { return !closed().has_value(); }

  // Sends a protocol ping and waits for the matching pong; false when none came in time.
  bool ping(const std::string& payload = "p", std::chrono::milliseconds timeout = 5s);

  // Abrupt end: the TCP socket closes without a close frame (with an RST when `reset`).
  void drop(bool reset = false);
  // Writes raw bytes to the TCP connection, bypassing the WebSocket framing.
  void sendRaw(const std::string& bytes, std::chrono::milliseconds timeout = 10s);
  // A frame no server may accept: a masked frame with the reserved opcode 0x3.
  static std::string invalidFrame();

 private:
  WsClient();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One GET on a fresh connection (Connection: close), for tests that have no HttpConnection.
struct SimpleResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lowercased
};
SimpleResponse httpGet(const std::string& host, std::uint16_t port, const std::string& target,
                       const std::map<std::string, std::string>& headers = {}, std::chrono::milliseconds timeout = 10s);

}  // namespace durable_it
