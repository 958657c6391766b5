// Text from a request stays text, and storage holds only what it can read back (issue 18,
// item 1): `?user=%ff` once made a room's history answer 500 for good. Query and path
// parameters decode bytes that are not UTF-8 to U+FFFD as a Worker's URLSearchParams does;
// put() refuses strings that are not UTF-8; a value that does not decode (written behind the
// runtime's back) fails only the reads of its own key.
#include <durable/error.h>
#include <durable/http.h>
#include <durable/namespace.h>
#include <durable/object.h>
#include <durable/storage.h>
#include <durable/testing.h>
#include <durable/value.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "base/utf8.h"
#include "storage/value_codec.h"

#include <boost/json.hpp>

#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using durable::Bytes;
using durable::Entries;
using durable::Error;
using durable::ErrorCode;
using durable::Json;
using durable::SearchParams;
using durable::State;
using durable::Storage;
using durable::Task;
using durable::Value;
using durable::detail::toWellFormedUtf8;
namespace dt = durable::testing;

const std::string kFffd = "\xEF\xBF\xBD";

std::string times(int n, const std::string& s) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// ---------------------------------------------------------------- decoding

// The WHATWG UTF-8 decoder's replacement: one U+FFFD per maximal ill-formed subpart.
TEST(Utf8Replace, MatchesWhatwgDecoder) {
  EXPECT_EQ(toWellFormedUtf8("plain"), "plain");
  EXPECT_EQ(toWellFormedUtf8("\xC3\xBF\xE2\x82\xAC\xF0\x9F\x98\x80"), "\xC3\xBF\xE2\x82\xAC\xF0\x9F\x98\x80");
  EXPECT_EQ(toWellFormedUtf8("\xFF"), kFffd);
  EXPECT_EQ(toWellFormedUtf8("a\xC3"), "a" + kFffd);                      // truncated at the end
  EXPECT_EQ(toWellFormedUtf8("\xF0\x9F\x98" "A"), kFffd + "A");           // truncated, then ASCII
  EXPECT_EQ(toWellFormedUtf8("\xE2\x82\xE2\x82\xAC"), kFffd + "\xE2\x82\xAC");  // broken by a new lead
  EXPECT_EQ(toWellFormedUtf8("\xC0\xAF"), times(2, kFffd));               // overlong: C0 never leads
  EXPECT_EQ(toWellFormedUtf8("\xE0\x80\x80"), times(3, kFffd));           // overlong three-byte form
  EXPECT_EQ(toWellFormedUtf8("\xED\xA0\x80"), times(3, kFffd));           // a UTF-16 surrogate
  EXPECT_EQ(toWellFormedUtf8("\xF4\x90\x80\x80"), times(4, kFffd));       // past U+10FFFF
  EXPECT_EQ(toWellFormedUtf8("\x80\xBF"), times(2, kFffd));               // lone continuations
  EXPECT_EQ(toWellFormedUtf8(std::string("a\0b", 3)), std::string("a\0b", 3));
  // Whatever goes in, what comes out is UTF-8.
  for (int b = 0x80; b <= 0xFF; ++b) {
    std::string in = "x" + std::string(1, static_cast<char>(b)) + "\x80" + "y";
    EXPECT_TRUE(durable::detail::validUtf8(toWellFormedUtf8(in))) << b;
  }
}

// validUtf8 and put()'s bound walk eight ASCII bytes at a time: a broken sequence, an escape or
// a control character at any offset, after any run of ASCII, must be seen exactly as a byte-wise
// walk sees it. Boost.JSON's parser (which checks UTF-8 in strings) is the oracle for validity;
// the encoding itself for the bound, which must never be under it.
TEST(Utf8FastPath, EveryOffsetAfterAnyRunOfAsciiIsCheckedAndCountedLikeAByteWiseWalk) {
  const std::vector<std::string> pieces = {"a",        "Z",        "~",        " ",        "\"",       "\\",
                                           "\x01",     "\x1f",     "\n",       "\x7f",     "\xc3\xa9", "\xe2\x82\xac",
                                           "\xf0\x9f\x98\x80", "\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf", "\x80"};
  std::mt19937 rng(19);
  int checked = 0;
  for (int round = 0; round < 4000; ++round) {
    std::string s(static_cast<std::size_t>(rng() % 40), 'x');  // a run of ASCII first
    const int extra = static_cast<int>(rng() % 4);
    for (int i = 0; i < extra; ++i) {
      const auto at = s.empty() ? 0 : rng() % (s.size() + 1);
      s.insert(at, pieces[rng() % pieces.size()]);
    }
    std::string escapedForParse;
    for (unsigned char c : s) {
      if (c < 0x20 || c == '"' || c == '\\') {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        escapedForParse += buf;
      } else {
        escapedForParse += static_cast<char>(c);
      }
    }
    boost::system::error_code ec;
    boost::json::parse("\"" + escapedForParse + "\"", ec);
    const bool utf8 = !ec;
    EXPECT_EQ(durable::detail::validUtf8(s), utf8) << testing::PrintToString(s);
    const boost::json::array tree{boost::json::string(s), boost::json::object{{s, 1}}};
    if (!utf8) {
      EXPECT_THROW(durable::detail::checkedEncodedBound(Value(tree)), Error) << testing::PrintToString(s);
      continue;
    }
    const std::size_t bound = durable::detail::checkedEncodedBound(Value(tree));
    EXPECT_GE(bound, Value(tree).encode().size()) << testing::PrintToString(s);
    ++checked;
  }
  EXPECT_GT(checked, 1000);  // the valid strings were not all skipped
}

TEST(Utf8Replace, QueryParametersAreText) {
  EXPECT_EQ(SearchParams("user=%ff").get("user"), kFffd);
  EXPECT_EQ(SearchParams("?user=%ff%fe").get("user"), times(2, kFffd));
  EXPECT_EQ(SearchParams("user=%C3%A9+x").get("user"), "\xC3\xA9 x");
  EXPECT_EQ(SearchParams("user=a%E2%82").get("user"), "a" + kFffd);
  // Raw bytes in the query, not only escapes, and names as well as values.
  EXPECT_EQ(SearchParams("user=\xFF").get("user"), kFffd);
  EXPECT_EQ(SearchParams("%FF=1").get(kFffd), "1");
  EXPECT_EQ(SearchParams("u=%ff&u=ok").getAll("u"), (std::vector<std::string>{kFffd, "ok"}));
  durable::URL url("http://localhost/rooms/p/websocket?user=%ff");
  EXPECT_EQ(url.searchParams().get("user"), kFffd);
}

// ---------------------------------------------------------------- storage

class Box : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
};

using Body = std::function<Task<void>(Storage&)>;

class Utf8StorageTest : public ::testing::Test {
 protected:
  Utf8StorageTest() { ns_ = &env_.exportClass<Box>("BOX"); }

  void in(const Body& body) {
    env_.runInDurableObject<Box>(ns_->getByName("box"),
                                 [&body](Box&, State& state) -> Task<void> { return body(state.storage()); });
  }

  // Replaces the stored bytes of `key` straight in the partition file: how a value that does
  // not decode could get there (an older build, a hand edit, a damaged disk).
  void writeRawOnDisk(const std::string& key, const std::string& encoded) {
    sqlite3* db = nullptr;
    const auto file = env_.dir() / "partitions" / "p0.sqlite";
    ASSERT_EQ(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* s = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "UPDATE kv SET value = ?1 WHERE key = ?2", -1, &s, nullptr), SQLITE_OK);
    sqlite3_bind_blob(s, 1, encoded.data(), static_cast<int>(encoded.size()), SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 2, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(s), SQLITE_DONE) << sqlite3_errmsg(db);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_finalize(s);
    sqlite3_close(db);
  }

  dt::Env env_;
  const durable::Namespace* ns_;
};

// What put() threw, as code and message; kInternal with "nothing thrown" when it did not throw.
struct Refusal {
  ErrorCode code = ErrorCode::kInternal;
  std::string message = "nothing thrown";
};

TEST_F(Utf8StorageTest, PutRefusesStringsThatAreNotUtf8AndChangesNothing) {
  Json badString = boost::json::object{{"user", "\xFF"}, {"text", "hi"}};
  Json nested = boost::json::object{{"a", boost::json::array{"ok", "x\xC3"}}};
  Json badKey = boost::json::object{{"\xFE", 1}};
  std::vector<Refusal> refusals(5);
  in([&](Storage& s) -> Task<void> {
    co_await s.put("k", "before");
    auto attempt = [&](std::size_t i, Value v) -> Task<void> {
      try {
        co_await s.put("k", std::move(v));
      } catch (const Error& e) {
        refusals[i] = {e.code(), e.what()};
      }
    };
    const std::vector<Value> bad{Value(std::string("\xFF")), Value(badString), Value(nested), Value(badKey)};
    for (std::size_t i = 0; i < bad.size(); ++i) co_await attempt(i, bad[i]);
    // Many at once: the good entry before the bad one is not written either.
    try {
      const std::vector<std::pair<std::string, Value>> many{{"fresh", Value("ok")},
                                                            {"k", Value(std::string("a\xC3"))}};
      co_await s.put(many);
    } catch (const Error& e) {
      refusals[4] = {e.code(), e.what()};
    }
    EXPECT_EQ(co_await s.get<std::string>("k"), "before");
    EXPECT_EQ(co_await s.get("fresh"), std::nullopt);
    // Bytes are not text: any byte is fine there, and so is text that is UTF-8.
    const Bytes raw{std::string("\xFF\xFE\x00", 3)};
    co_await s.put("bytes", raw);
    const std::string text = kFffd + "\xC3\xBF";
    co_await s.put("text", text);
  });
  for (std::size_t i = 0; i < refusals.size(); ++i) {
    EXPECT_EQ(refusals[i].code, ErrorCode::kInvalidArgument) << i << ": " << refusals[i].message;
    EXPECT_NE(refusals[i].message.find("UTF-8"), std::string::npos) << refusals[i].message;
    EXPECT_NE(refusals[i].message.find("\"k\""), std::string::npos) << refusals[i].message;
    // The message itself is text: it may become a JSON error body.
    EXPECT_TRUE(durable::detail::validUtf8(refusals[i].message)) << i;
  }
  EXPECT_NE(refusals[1].message.find("/user"), std::string::npos) << refusals[1].message;
  EXPECT_NE(refusals[2].message.find("/a/1"), std::string::npos) << refusals[2].message;
  EXPECT_NE(refusals[3].message.find("object key"), std::string::npos) << refusals[3].message;
  env_.restart();
  in([&](Storage& s) -> Task<void> {
    EXPECT_EQ(co_await s.get<std::string>("k"), "before");
    EXPECT_EQ(co_await s.get("fresh"), std::nullopt);
    const Bytes raw{std::string("\xFF\xFE\x00", 3)};
    EXPECT_EQ(co_await s.get<Bytes>("bytes"), raw);
    const std::string text = kFffd + "\xC3\xBF";
    EXPECT_EQ(co_await s.get<std::string>("text"), text);
  });
}

// A value that cannot be decoded fails the reads of its key, with the key in the error and in
// the log; every other key still reads, and list() leaves it out rather than failing.
// What builds before 2026-12-04 stored from a URL's raw bytes: text that is not UTF-8. It
// reads back as a Worker's TextDecoder would read it, each broken sequence as U+FFFD, with a
// warning naming the key; the stored bytes stay as they are until the next put().
TEST_F(Utf8StorageTest, TextThatIsNotUtf8ReadsBackWithReplacementCharacters) {
  in([](Storage& s) -> Task<void> {
    std::vector<std::pair<std::string, Value>> kv{
        {"history", Value(Json(boost::json::array{boost::json::object{{"user", "a"}}}))}, {"str", Value("text")}};
    co_await s.put(kv);
  });
  env_.restart();
  writeRawOnDisk("history", std::string("\x07[{\"user\":\"\xFF\xFE\"},{\"user\":\"x\xC3\"}]"));
  writeRawOnDisk("str", std::string("\x05" "a\xC3"));
  env_.restart();

  std::optional<Json> history;
  std::optional<std::string> str;
  Entries listed;
  ::testing::internal::CaptureStderr();
  in([&](Storage& s) -> Task<void> {
    history = co_await s.get<Json>("history");
    str = co_await s.get<std::string>("str");
    listed = co_await s.list();
  });
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(history.has_value());
  ASSERT_EQ(history->as_array().size(), 2u);
  EXPECT_EQ(history->as_array()[0].at("user").as_string(), kFffd + kFffd);
  EXPECT_EQ(history->as_array()[1].at("user").as_string(), "x" + kFffd);
  EXPECT_EQ(str, "a" + kFffd);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].first, "history");
  EXPECT_EQ(listed[1].second, Value("a" + kFffd));
  EXPECT_NE(log.find("\"history\" holds text that is not UTF-8"), std::string::npos) << log;
  EXPECT_NE(log.find("\"str\" holds text that is not UTF-8"), std::string::npos) << log;
  EXPECT_EQ(log.find("cannot be read"), std::string::npos) << log;
}

// A value damaged in any other way fails get() of its own key only, with the key named, and
// is left out of list(); other keys stay readable, and a put() of the key repairs it.
TEST_F(Utf8StorageTest, UndecodableValueFailsOnlyItsOwnKey) {
  in([](Storage& s) -> Task<void> {
    std::vector<std::pair<std::string, Value>> kv{
        {"msg:1", Value(Json(boost::json::object{{"user", "a"}}))},
        {"msg:2", Value(Json(boost::json::object{{"user", "b"}}))},
        {"msg:3", Value(Json(boost::json::object{{"user", "c"}}))},
        {"name", Value("room")},
        {"num", Value(std::int64_t{7})}};
    co_await s.put(kv);
  });
  env_.restart();
  // Cut short (and with a byte that is not UTF-8, so repairing the text cannot save it), and
  // a number of 2 bytes instead of 8.
  writeRawOnDisk("msg:2", std::string("\x07{\"user\":\"\xFF"));
  writeRawOnDisk("num", std::string("\x03\x01\x02", 3));
  env_.restart();

  std::vector<std::string> errors;
  Entries listed, page, reversed;
  ::testing::internal::CaptureStderr();
  in([&](Storage& s) -> Task<void> {
    for (const char* key : {"msg:2", "num"}) {
      try {
        auto v = co_await s.get(key);
        errors.push_back("nothing thrown");
        (void)v;
      } catch (const Error& e) {
        errors.push_back(e.what());
      }
    }
    try {
      std::vector<std::string> keys{"msg:1", "msg:2"};
      auto v = co_await s.get(keys);
      errors.push_back("nothing thrown");
      (void)v;
    } catch (const Error& e) {
      errors.push_back(e.what());
    }
    const std::optional<Json> first = co_await s.get<Json>("msg:1");
    EXPECT_TRUE(first && first->at("user").as_string() == "a");
    EXPECT_EQ(co_await s.get<std::string>("name"), "room");
    listed = co_await s.list();
    durable::ListOptions two;
    two.prefix = "msg:";
    two.limit = 2;
    page = co_await s.list(two);
    durable::ListOptions back;
    back.prefix = "msg:";
    back.reverse = true;
    reversed = co_await s.list(back);
    // The object stays writable, and a fresh put of the key replaces the bad value.
    const Value replacement(Json(boost::json::object{{"user", kFffd}}));
    co_await s.put("msg:2", replacement);
  });
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_NE(errors[0].find("\"msg:2\""), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("invalid JSON"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("\"num\""), std::string::npos) << errors[1];
  EXPECT_NE(errors[1].find("number payload of 2 bytes"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("\"msg:2\""), std::string::npos) << errors[2];
  EXPECT_NE(log.find("\"msg:2\" cannot be read"), std::string::npos) << log;
  EXPECT_NE(log.find("\"num\" cannot be read"), std::string::npos) << log;

  std::vector<std::string> keys;
  for (const auto& e : listed) keys.push_back(e.first);
  EXPECT_EQ(keys, (std::vector<std::string>{"msg:1", "msg:3", "name"}));
  // Left-out entries do not count against the limit.
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].first, "msg:1");
  EXPECT_EQ(page[1].first, "msg:3");
  ASSERT_EQ(reversed.size(), 2u);
  EXPECT_EQ(reversed[0].first, "msg:3");

  env_.restart();
  in([](Storage& s) -> Task<void> {
    const std::optional<Json> fixed = co_await s.get<Json>("msg:2");
    EXPECT_TRUE(fixed && fixed->at("user").as_string() == kFffd);
    const Entries all = co_await s.list();
    EXPECT_EQ(all.size(), 4u);  // "num" is still left out
  });
}

}  // namespace
