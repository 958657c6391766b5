#include <durable/id.h>

#include <cstring>

namespace durable {

std::string ObjectId::toString() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(kBytes * 2, '\0');
  for (std::size_t i = 0; i < kBytes; ++i) {
    out[2 * i] = kDigits[raw_[i] >> 4];
    out[2 * i + 1] = kDigits[raw_[i] & 0xf];
  }
  return out;
}

std::string ObjectId::jurisdiction() const {
  // Byte 22 is the jurisdiction code; see the layout in ids/id_codec.cc.
  switch (raw_[22]) {
    case 1: return "eu";
    case 2: return "fedramp";
    default: return "";
  }
}

std::size_t ObjectId::hash() const {
  // The leading bytes are HMAC output or random, so they are already uniform.
  std::size_t h;
  std::memcpy(&h, raw_.data(), sizeof h);
  return h;
}

}  // namespace durable
