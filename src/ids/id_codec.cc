// ids/id_codec.cc: the ObjectId byte layout, part of the on-disk format.
//
// An ObjectId is 32 bytes:
//
//   bytes  0..21  named IDs:  HMAC-SHA256(key, 0x01 || jurisdictionCode || name)[0..22)
//                 unique IDs: 22 random bytes
//   byte   22     the jurisdiction code (0 = none, 1 = "eu", 2 = "fedramp")
//   bytes 23..31  HMAC-SHA256(key, 0x02 || bytes[0..23))[0..9)
//
// `key` is the class's 32-byte namespace key, made once by the migration that created the
// class and kept across renames. The trailing MAC makes IDs unforgeable: a client cannot
// invent an ID that idFromString accepts, and an ID minted by one namespace fails the MAC
// check in every other. The domain-separation bytes 0x01/0x02 keep the two HMAC uses from
// ever producing each other's outputs. Changing any of this orphans every stored object.
#include "ids/id_codec.h"

#include <durable/error.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <cstring>
#include <string>

namespace durable::detail {
namespace {

constexpr std::size_t kBodyBytes = 22;
constexpr std::size_t kJurisdictionByte = 22;
constexpr std::size_t kMacOffset = 23;
constexpr std::size_t kMacBytes = ObjectId::kBytes - kMacOffset;
static_assert(kMacBytes == 9);

constexpr std::uint8_t kNameDomain = 0x01;
constexpr std::uint8_t kMacDomain = 0x02;

// makeNamedId runs on every request, so each thread keeps one HMAC context and re-keys it per
// call: EVP_MAC_init with a new key reuses the context's memory, where the one-shot HMAC()
// would fetch the algorithm and allocate a context every time.
class HmacContext {
 public:
  HmacContext() {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);
    if (mac == nullptr) fail("EVP_MAC_fetch(HMAC)");
    ctx_ = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);  // the context holds its own reference
    if (ctx_ == nullptr) fail("EVP_MAC_CTX_new");
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(ctx_, params) != 1) fail("EVP_MAC_CTX_set_params");
  }
  ~HmacContext() { EVP_MAC_CTX_free(ctx_); }
  HmacContext(const HmacContext&) = delete;
  HmacContext& operator=(const HmacContext&) = delete;

  // HMAC-SHA256(key, prefix || a || b), all 32 bytes.
  void compute(const NamespaceKey& key, std::uint8_t domain, std::string_view a, std::string_view b,
               std::uint8_t (&out)[32]) {
    if (EVP_MAC_init(ctx_, key.data(), key.size(), nullptr) != 1) fail("EVP_MAC_init");
    if (EVP_MAC_update(ctx_, &domain, 1) != 1 || !update(a) || !update(b)) fail("EVP_MAC_update");
    std::size_t len = 0;
    if (EVP_MAC_final(ctx_, out, &len, sizeof out) != 1 || len != sizeof out) fail("EVP_MAC_final");
  }

 private:
  bool update(std::string_view data) {
    return data.empty() ||
           EVP_MAC_update(ctx_, reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  }
  [[noreturn]] static void fail(const char* what) {
    throw Error(ErrorCode::kInternal, std::string("OpenSSL ") + what + " failed");
  }

  EVP_MAC_CTX* ctx_ = nullptr;
};

HmacContext& threadHmac() {
  thread_local HmacContext ctx;
  return ctx;
}

std::string_view asChars(const std::uint8_t* p, std::size_t n) {
  return {reinterpret_cast<const char*>(p), n};
}

void computeMac(const NamespaceKey& key, const ObjectId::Raw& raw, std::uint8_t (&out)[32]) {
  threadHmac().compute(key, kMacDomain, asChars(raw.data(), kMacOffset), {}, out);
}

ObjectId::Raw seal(const NamespaceKey& key, ObjectId::Raw raw) {
  std::uint8_t mac[32];
  computeMac(key, raw, mac);
  std::memcpy(raw.data() + kMacOffset, mac, kMacBytes);
  return raw;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

const char* jurisdictionName(std::uint8_t code) {
  switch (code) {
    case 0: return "";
    case 1: return "eu";
    case 2: return "fedramp";
    default: return nullptr;
  }
}

[[noreturn]] void invalid(const std::string& reason) {
  throw Error(ErrorCode::kInvalidArgument, "Invalid Durable Object ID: " + reason);
}

}  // namespace

namespace {
std::uint64_t keyTag(const NamespaceKey& key) {
  std::uint64_t tag;
  std::memcpy(&tag, key.data(), sizeof tag);
  return tag | 1;
}
}  // namespace

bool verifiedUnder(const ObjectId& id, const NamespaceKey& key) {
  return IdAccess::verifiedBy(id) == keyTag(key);
}

void IdAccess::markVerified(ObjectId& id, const NamespaceKey& key) { id.verifiedBy_ = keyTag(key); }
std::uint64_t IdAccess::verifiedBy(const ObjectId& id) { return id.verifiedBy_; }

NamespaceKey randomNamespaceKey() {
  NamespaceKey key;
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) {
    throw Error(ErrorCode::kInternal, "OpenSSL RAND_bytes failed");
  }
  return key;
}

std::uint8_t jurisdictionCode(std::string_view name) {
  if (name.empty()) return 0;
  if (name == "eu") return 1;
  if (name == "fedramp") return 2;
  throw Error(ErrorCode::kInvalidArgument, "unknown jurisdiction: " + std::string(name));
}

ObjectId makeNamedId(const NamespaceKey& key, std::string_view jurisdiction, std::string_view name) {
  const std::uint8_t code = jurisdictionCode(jurisdiction);
  std::uint8_t digest[32];
  threadHmac().compute(key, kNameDomain, asChars(&code, 1), name, digest);
  ObjectId::Raw raw;
  std::memcpy(raw.data(), digest, kBodyBytes);
  raw[kJurisdictionByte] = code;
  ObjectId id(seal(key, raw), std::string(name));
  IdAccess::markVerified(id, key);
  return id;
}

ObjectId makeUniqueId(const NamespaceKey& key, std::string_view jurisdiction) {
  const std::uint8_t code = jurisdictionCode(jurisdiction);
  ObjectId::Raw raw;
  if (RAND_bytes(raw.data(), static_cast<int>(kBodyBytes)) != 1) {
    throw Error(ErrorCode::kInternal, "OpenSSL RAND_bytes failed");
  }
  raw[kJurisdictionByte] = code;
  ObjectId id(seal(key, raw), std::nullopt);
  IdAccess::markVerified(id, key);
  return id;
}

ObjectId parseId(const NamespaceKey& key, std::string_view requiredJurisdiction, std::string_view hex) {
  // Validated first so a misconfigured caller gets its own error, not a misleading ID error.
  const std::uint8_t required = jurisdictionCode(requiredJurisdiction);
  if (hex.size() != ObjectId::kBytes * 2) {
    invalid("expected 64 hex digits, got " + std::to_string(hex.size()) + " characters");
  }
  ObjectId::Raw raw;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const int hi = hexValue(hex[2 * i]);
    const int lo = hexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      invalid("non-hex character at position " + std::to_string(hi < 0 ? 2 * i : 2 * i + 1));
    }
    raw[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  std::uint8_t mac[32];
  computeMac(key, raw, mac);
  // Constant-time, so response timing does not help anyone forge a MAC byte by byte.
  if (CRYPTO_memcmp(mac, raw.data() + kMacOffset, kMacBytes) != 0) {
    invalid("not an ID made for this Durable Object namespace");
  }
  const char* carried = jurisdictionName(raw[kJurisdictionByte]);
  if (carried == nullptr) invalid("unknown jurisdiction code");  // only a format change gets here
  if (required != 0 && raw[kJurisdictionByte] != required) {
    const std::string has = *carried ? std::string("jurisdiction \"") + carried + "\"" : "no jurisdiction";
    invalid("the ID has " + has + ", but this namespace is restricted to jurisdiction \"" +
            std::string(requiredJurisdiction) + "\"");
  }
  ObjectId id(raw, std::nullopt);
  IdAccess::markVerified(id, key);
  return id;
}

}  // namespace durable::detail
