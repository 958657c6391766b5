// Byte strings as text: base64 (RFC 4648, padded) and lowercase hex.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace durable::detail {

std::string base64(std::string_view bytes);
std::string toHex(std::string_view bytes);
// The bytes of `hex` (either case), or nullopt when it is not an even number of hex digits.
std::optional<std::string> fromHex(std::string_view hex);

}  // namespace durable::detail
