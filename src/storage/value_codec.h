#pragma once

#include <durable/value.h>

#include <optional>
#include <string>
#include <string_view>

namespace durable::detail {

// For a stored string or JSON value that fails to decode only because its text is not UTF-8:
// the value with each broken sequence read as U+FFFD, as a Worker's TextDecoder would.
// nullopt for any other encoding, or when the value is damaged in some other way too.
std::optional<Value> decodeRepairingText(std::string_view encoded);

// For a JSON value: checks what encode() checks of it, throwing the same error, and returns a
// bound that encode().size() never exceeds, at a fraction of the cost of encoding.
std::size_t checkedEncodedBound(const Value& value);

// encode() of a value whose text checkedEncodedBound() has already checked, into `out` (its
// capacity reused): the engine's thread encodes each put once, and need not walk it twice.
void encodeChecked(const Value& value, std::string& out);

// encode(), written into a string of about `sizeHint` bytes (the key's last encoding), so that a
// large value is not copied as its text grows.
std::string encodeSized(const Value& value, std::size_t sizeHint);

}  // namespace durable::detail
