// durable/id.h: the identity of one object in one namespace.
//
// An ObjectId is 32 bytes shown as 64 lowercase hex digits. It names exactly one object,
// forever: the same name in the same namespace always gives the same ID, and an ID made by
// one namespace is rejected by every other (its last bytes are a MAC under the namespace's
// key). IDs are plain values, safe to copy between threads.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace durable {

namespace detail {
struct IdAccess;
}

class ObjectId {
 public:
  static constexpr std::size_t kBytes = 32;
  using Raw = std::array<std::uint8_t, kBytes>;

  ObjectId() = default;
  ObjectId(const Raw& raw, std::optional<std::string> name) : raw_(raw), name_(std::move(name)) {}

  // 64 lowercase hex digits.
  std::string toString() const;
  // The name it was made from by idFromName; nullopt for unique IDs and IDs from strings.
  const std::optional<std::string>& name() const { return name_; }
  // "" or the jurisdiction it was made for ("eu", "fedramp").
  std::string jurisdiction() const;

  const Raw& raw() const { return raw_; }
  bool operator==(const ObjectId& o) const { return raw_ == o.raw_; }
  std::size_t hash() const;

 private:
  friend struct detail::IdAccess;
  Raw raw_{};
  std::optional<std::string> name_;
  // Which namespace key already verified this ID's MAC (0: none), so that get(idFromName(x))
  // does not verify twice. A copy keeps it; it never leaves the process.
  std::uint64_t verifiedBy_ = 0;
};

}  // namespace durable

template <>
struct std::hash<durable::ObjectId> {
  std::size_t operator()(const durable::ObjectId& id) const noexcept { return id.hash(); }
};
