// WebSocket frames, well formed: like websocket_fuzz, but the input is cut into frames that
// are correctly framed and masked as a client must send them, so the fuzzer spends its time on
// opcodes, FIN bits, fragmentation, control frames and payloads (close codes, UTF-8, the
// room's JSON) rather than on the framing itself.
//
// Input, repeated until it runs out:
//   byte h        FIN = h & 0x80, opcode = h & 0x0f (reserved ones included)
//   byte l        payload length: l < 254 -> l; 254 -> next 2 bytes (big-endian); 255 -> next
//                 2 bytes too, but sent with the 64-bit length form
//   payload       that many bytes (or what is left), masked with a fixed key
// RSV bits are never set: they are a framing error, which websocket_fuzz covers.
#include "server_harness.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace {

std::string frames(const std::uint8_t* data, std::size_t size) {
  static constexpr std::uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};
  std::string out;
  std::size_t i = 0;
  while (i + 2 <= size) {
    const std::uint8_t h = data[i++];
    const std::uint8_t l = data[i++];
    std::size_t len = l;
    bool longForm = false;
    if (l >= 254) {
      len = 0;
      if (i + 2 <= size) {
        len = static_cast<std::size_t>(data[i]) << 8 | data[i + 1];
        i += 2;
      }
      longForm = l == 255;
    }
    if (len > size - i) len = size - i;
    out.push_back(static_cast<char>(h & 0x8f));
    if (len < 126 && !longForm) {
      out.push_back(static_cast<char>(0x80 | len));
    } else if (!longForm) {
      out.push_back(static_cast<char>(0x80 | 126));
      out.push_back(static_cast<char>(len >> 8));
      out.push_back(static_cast<char>(len & 0xff));
    } else {
      out.push_back(static_cast<char>(0x80 | 127));
      for (int b = 7; b >= 0; --b) out.push_back(static_cast<char>((static_cast<std::uint64_t>(len) >> (8 * b)) & 0xff));
    }
    for (std::uint8_t k : kMask) out.push_back(static_cast<char>(k));
    for (std::size_t k = 0; k < len; ++k) out.push_back(static_cast<char>(data[i + k] ^ kMask[k % 4]));
    i += len;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::uint16_t port = durable_fuzz::serverPort();
  const std::string bytes = frames(data, size);
  bool closed;
  {
    durable_fuzz::Connection c(port);
    durable_fuzz::upgradeWebSocket(c, "/hibernating/x/websocket");
    c.write(bytes);
    c.shutdownWrite();
    closed = c.readUntilClosed(durable_fuzz::kCloseTimeout);
  }
  durable_fuzz::afterRun(port, closed);
  return 0;
}
