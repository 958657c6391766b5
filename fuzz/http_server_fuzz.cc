// The HTTP server, in process: each input is written as raw bytes to a fresh TCP connection
// to the seed's server (durable::testing::Env::serve), the client half-closes, and the harness
// reads until the server closes. The server must not crash, and must still answer afterwards.
#include "server_harness.h"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::uint16_t port = durable_fuzz::serverPort();
  bool closed;
  {
    durable_fuzz::Connection c(port);
    c.write(std::string_view(reinterpret_cast<const char*>(data), size));
    c.shutdownWrite();
    closed = c.readUntilClosed(durable_fuzz::kCloseTimeout);
  }
  durable_fuzz::afterRun(port, closed);
  return 0;
}
