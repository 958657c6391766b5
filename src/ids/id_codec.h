// ids/id_codec.h: making, checking and parsing ObjectIds under a namespace's secret key.
//
// The byte layout is documented in id_codec.cc; it is part of the on-disk format, because
// objects' storage is keyed by their IDs.
#pragma once

#include <durable/id.h>

#include <array>
#include <cstdint>
#include <string_view>

namespace durable::detail {

using NamespaceKey = std::array<std::uint8_t, 32>;

// A fresh key from OpenSSL's CSPRNG; made once per class, when its migration creates it.
NamespaceKey randomNamespaceKey();

// "" -> 0, "eu" -> 1, "fedramp" -> 2. Throws Error(kInvalidArgument) for anything else.
std::uint8_t jurisdictionCode(std::string_view name);

// Deterministic: the same key, jurisdiction and name always give the same ID. name() is set.
ObjectId makeNamedId(const NamespaceKey& key, std::string_view jurisdiction, std::string_view name);

// A random ID carrying `jurisdiction`.
ObjectId makeUniqueId(const NamespaceKey& key, std::string_view jurisdiction);

// Accepts only 64 hex digits (either case) whose MAC verifies under `key`; when
// `requiredJurisdiction` is non-empty the ID must carry it. Throws
// Error(kInvalidArgument, "Invalid Durable Object ID: <reason>") otherwise.
ObjectId parseId(const NamespaceKey& key, std::string_view requiredJurisdiction, std::string_view hex);

// Whether `id` was made or parsed under `key` in this process, so its MAC need not be
// checked again.
bool verifiedUnder(const ObjectId& id, const NamespaceKey& key);

struct IdAccess {
  static void markVerified(ObjectId& id, const NamespaceKey& key);
  static std::uint64_t verifiedBy(const ObjectId& id);
};

}  // namespace durable::detail
