// fuzz/server_harness.h: the real server in process, and a raw-socket client for it.
//
// The server fuzzers start one durable::testing::Env serving the seed's Worker on 127.0.0.1
// (once per process) and talk to it over fresh TCP connections with plain POSIX sockets, so
// no client library stands between the fuzz input and the server's parser.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace durable_fuzz {

// The port of the seed's server, started on first use with the seed's classes bound as in
// examples/seed/wrangler.toml. Lives until the process exits.
std::uint16_t serverPort();

class Connection {
 public:
  // Connects to 127.0.0.1:port; aborts if that fails (the server is gone).
  explicit Connection(std::uint16_t port);
  ~Connection();  // closes with a reset, so no TIME_WAIT piles up over millions of runs
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Writes everything it can; false when the server closed or reset first.
  bool write(std::string_view bytes);
  // Half-closes: the server reads end of stream after what was written.
  void shutdownWrite();
  // Reads until `marker` has been seen (true) or the connection ends or `timeout` passes.
  bool readUntil(std::string_view marker, std::chrono::milliseconds timeout);
  // Reads until the server closes (true) or `timeout` passes (false); keeps at most `max`
  // bytes of what arrived.
  bool readUntilClosed(std::chrono::milliseconds timeout, std::size_t max = 1 << 20);

  std::string received;

 private:
  int fd_ = -1;
};

// Writes a valid WebSocket upgrade for `target` and reads the response's headers; aborts
// unless the server answers 101.
void upgradeWebSocket(Connection& c, std::string_view target);

// Aborts (a crash for libFuzzer) unless the server answers GET /health with 200 in time:
// the check that an input left it able to serve.
void requireServerAlive(std::uint16_t port, const char* after);

// The bounded wait for the server to end a connection after the client's end of stream.
// A connection still open then is counted and triggers requireServerAlive.
constexpr std::chrono::milliseconds kCloseTimeout{3000};

// Called after each run with whether the server closed in time; every 256 runs, and after
// any run it did not, checks the server is alive.
void afterRun(std::uint16_t port, bool closed);

}  // namespace durable_fuzz
