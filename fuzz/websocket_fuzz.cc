// WebSocket frames, raw: each run upgrades a fresh connection to the seed's
// /hibernating/x/websocket (a HibernatingRoom, accepted through the hibernation API), then
// writes the input as raw bytes after the handshake, half-closes, and reads until the server
// closes. The server must not crash, and must still answer afterwards.
#include "server_harness.h"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::uint16_t port = durable_fuzz::serverPort();
  bool closed;
  {
    durable_fuzz::Connection c(port);
    durable_fuzz::upgradeWebSocket(c, "/hibernating/x/websocket");
    c.write(std::string_view(reinterpret_cast<const char*>(data), size));
    c.shutdownWrite();
    closed = c.readUntilClosed(durable_fuzz::kCloseTimeout);
  }
  durable_fuzz::afterRun(port, closed);
  return 0;
}
