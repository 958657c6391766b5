#include "ids/id_codec.h"

#include <durable/error.h>

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <unordered_set>

namespace durable::detail {
namespace {

NamespaceKey keyOf(std::uint8_t fill) {
  NamespaceKey k;
  k.fill(fill);
  return k;
}

// Expects parseId to throw Error(kInvalidArgument) whose message contains `fragment`.
void expectRejected(const NamespaceKey& key, std::string_view jurisdiction, const std::string& hex,
                    const std::string& fragment) {
  try {
    parseId(key, jurisdiction, hex);
    FAIL() << "accepted " << hex;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("Invalid Durable Object ID: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  }
}

TEST(IdCodec, NamedIdsAreDeterministic) {
  const NamespaceKey key = keyOf(7);
  const ObjectId a = makeNamedId(key, "", "alice");
  const ObjectId b = makeNamedId(key, "", "alice");
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.toString(), b.toString());
  EXPECT_EQ(a.hash(), b.hash());
  ASSERT_TRUE(a.name().has_value());
  EXPECT_EQ(*a.name(), "alice");
  EXPECT_EQ(a.jurisdiction(), "");
}

TEST(IdCodec, NamesKeysAndJurisdictionsAllMatter) {
  const NamespaceKey k1 = keyOf(1), k2 = keyOf(2);
  const ObjectId base = makeNamedId(k1, "", "alice");
  EXPECT_NE(base, makeNamedId(k1, "", "bob"));
  EXPECT_NE(base, makeNamedId(k2, "", "alice"));
  EXPECT_NE(base, makeNamedId(k1, "eu", "alice"));
  EXPECT_NE(makeNamedId(k1, "eu", "alice"), makeNamedId(k1, "fedramp", "alice"));
  EXPECT_NE(base, makeNamedId(k1, "", ""));
  EXPECT_EQ(makeNamedId(k1, "eu", "alice").jurisdiction(), "eu");
  EXPECT_EQ(makeNamedId(k1, "fedramp", "alice").jurisdiction(), "fedramp");
  // Names are bytes: embedded NULs and long names are distinct names.
  EXPECT_NE(makeNamedId(k1, "", std::string("a\0b", 3)), makeNamedId(k1, "", "a"));
  EXPECT_NE(makeNamedId(k1, "", std::string(10000, 'x')), makeNamedId(k1, "", std::string(10001, 'x')));
}

TEST(IdCodec, ToStringIs64LowercaseHex) {
  const std::string s = makeNamedId(keyOf(3), "", "x").toString();
  ASSERT_EQ(s.size(), 64u);
  for (char c : s) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << s;
  EXPECT_EQ(ObjectId().toString(), std::string(64, '0'));
}

TEST(IdCodec, RoundTripsThroughParse) {
  const NamespaceKey key = keyOf(4);
  for (const char* j : {"", "eu", "fedramp"}) {
    const ObjectId named = makeNamedId(key, j, "room-1");
    const ObjectId parsed = parseId(key, j, named.toString());
    EXPECT_EQ(parsed, named);
    EXPECT_EQ(parsed.jurisdiction(), j);
    EXPECT_FALSE(parsed.name().has_value());
    // An unrestricted namespace accepts IDs of any jurisdiction.
    EXPECT_EQ(parseId(key, "", named.toString()), named);

    const ObjectId unique = makeUniqueId(key, j);
    EXPECT_EQ(parseId(key, j, unique.toString()), unique);
  }
}

TEST(IdCodec, ParseAcceptsUppercase) {
  const NamespaceKey key = keyOf(5);
  const ObjectId id = makeNamedId(key, "", "upper");
  std::string s = id.toString();
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(parseId(key, "", s), id);
}

TEST(IdCodec, ParseRejectsWrongLength) {
  const NamespaceKey key = keyOf(6);
  const std::string s = makeNamedId(key, "", "x").toString();
  expectRejected(key, "", "", "got 0 characters");
  expectRejected(key, "", s.substr(0, 63), "got 63 characters");
  expectRejected(key, "", s + "0", "got 65 characters");
}

TEST(IdCodec, ParseRejectsNonHex) {
  const NamespaceKey key = keyOf(6);
  std::string s = makeNamedId(key, "", "x").toString();
  s[10] = 'g';
  expectRejected(key, "", s, "non-hex character at position 10");
  s[10] = ' ';
  expectRejected(key, "", s, "non-hex");
}

TEST(IdCodec, ParseRejectsIdFromAnotherKey) {
  const ObjectId foreign = makeNamedId(keyOf(8), "", "alice");
  expectRejected(keyOf(9), "", foreign.toString(), "not an ID made for this");
  expectRejected(keyOf(9), "", makeUniqueId(keyOf(8), "").toString(), "not an ID made for this");
}

TEST(IdCodec, ParseRejectsAnyFlippedBit) {
  const NamespaceKey key = keyOf(10);
  const ObjectId id = makeNamedId(key, "", "alice");
  for (std::size_t bit = 0; bit < ObjectId::kBytes * 8; ++bit) {
    ObjectId::Raw raw = id.raw();
    raw[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    std::string hex;
    for (std::uint8_t b : raw) hex += "0123456789abcdef"[b >> 4], hex += "0123456789abcdef"[b & 0xf];
    EXPECT_THROW(parseId(key, "", hex), Error) << "bit " << bit;
  }
}

TEST(IdCodec, ParseRejectsWrongJurisdiction) {
  const NamespaceKey key = keyOf(11);
  expectRejected(key, "eu", makeNamedId(key, "", "a").toString(), "has no jurisdiction");
  expectRejected(key, "eu", makeNamedId(key, "fedramp", "a").toString(), "jurisdiction \"fedramp\"");
  expectRejected(key, "fedramp", makeUniqueId(key, "eu").toString(), "restricted to jurisdiction \"fedramp\"");
}

TEST(IdCodec, UniqueIdsDifferAndCarryJurisdiction) {
  const NamespaceKey key = keyOf(12);
  std::unordered_set<ObjectId> seen;
  for (int i = 0; i < 1000; ++i) {
    const ObjectId id = makeUniqueId(key, i % 2 ? "eu" : "");
    EXPECT_TRUE(seen.insert(id).second);
    EXPECT_FALSE(id.name().has_value());
    EXPECT_EQ(id.jurisdiction(), i % 2 ? "eu" : "");
  }
}

TEST(IdCodec, UnknownJurisdictionThrows) {
  EXPECT_EQ(jurisdictionCode(""), 0);
  EXPECT_EQ(jurisdictionCode("eu"), 1);
  EXPECT_EQ(jurisdictionCode("fedramp"), 2);
  for (auto call : {+[] { jurisdictionCode("mars"); }, +[] { makeNamedId(keyOf(1), "EU", "a"); },
                    +[] { makeUniqueId(keyOf(1), "us"); }, +[] { parseId(keyOf(1), "mars", std::string(64, '0')); }}) {
    try {
      call();
      ADD_FAILURE() << "no throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("unknown jurisdiction: "), std::string::npos) << e.what();
    }
  }
}

TEST(IdCodec, RandomKeysDiffer) {
  EXPECT_NE(randomNamespaceKey(), randomNamespaceKey());
}

TEST(IdCodec, HashUsesLeadingBytes) {
  const NamespaceKey key = keyOf(13);
  EXPECT_NE(makeNamedId(key, "", "a").hash(), makeNamedId(key, "", "b").hash());
  EXPECT_EQ(std::hash<ObjectId>{}(makeNamedId(key, "", "a")), makeNamedId(key, "", "a").hash());
}

}  // namespace
}  // namespace durable::detail
