// The storage cache keeps JSON values decoded (issue 19: the ChatRoom parsed its whole history
// on every message). What a caller gets is its own: changing it must not change what is
// stored, in this event, in the next one (served from the cache) or after a restart (read from
// the partition's SQLite file). A JSON put outside a transaction is encoded only when its batch
// is committed (or its bytes are read): what is committed and read back is still exactly the
// last value put, and the limits and the UTF-8 check still refuse at put(). A key that is read,
// changed and put back is encoded at put() instead, and the next read takes the cache's tree
// rather than copying it; a read before the next put() then parses the bytes.
//
// g++ 12: named values, not braced temporaries, inside co_await expressions.
#include <durable/object.h>
#include <durable/storage.h>
#include <durable/testing.h>
#include <durable/value.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <algorithm>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

namespace {

using durable::State;
using durable::Storage;
using durable::Task;
namespace dt = durable::testing;
namespace json = boost::json;

class Box : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
};

using Body = std::function<Task<void>(Storage&)>;

class DecodedCacheTest : public ::testing::Test {
 protected:
  DecodedCacheTest() { ns_ = &env_.exportClass<Box>("BOX"); }
  void in(const Body& body) {
    env_.runInDurableObject<Box>(ns_->getByName("box"),
                                 [&body](Box&, State& state) -> Task<void> { return body(state.storage()); });
  }
  dt::Env env_;
  const durable::Namespace* ns_;
};

json::array history(int n) {
  json::array a;
  for (int i = 0; i < n; ++i) a.push_back(json::object{{"type", "message"}, {"n", i}});
  return a;
}

TEST_F(DecodedCacheTest, AChangedCopyFromGetLeavesTheStoredValueAlone) {
  in([](Storage& s) -> Task<void> {
    json::array h = history(3);
    co_await s.put("history", h);
    h.push_back(json::string("after put"));  // the caller's array, not the stored one
    auto first = (co_await s.get<json::array>("history")).value();
    EXPECT_EQ(first.size(), 3u);
    first.clear();
    first.push_back(json::string("changed"));
    auto second = (co_await s.get<json::array>("history")).value();
    EXPECT_EQ(second, history(3));
    // The untyped form too.
    auto value = (co_await s.get("history")).value();
    EXPECT_EQ(value.as<json::array>(), history(3));
  });
  in([](Storage& s) -> Task<void> {
    auto h = (co_await s.get<json::array>("history")).value();
    EXPECT_EQ(h, history(3));
    h.erase(h.begin());
    auto again = (co_await s.get<json::array>("history")).value();
    EXPECT_EQ(again, history(3));
  });
}

TEST_F(DecodedCacheTest, EachTurnSeesTheLastPutAndARestartReadsWhatWasCommitted) {
  // The ChatRoom's pattern: read, append, write back, many times.
  for (int turn = 0; turn < 50; ++turn) {
    in([turn](Storage& s) -> Task<void> {
      auto h = (co_await s.get<json::array>("history")).value_or(json::array{});
      EXPECT_EQ(h.size(), static_cast<std::size_t>(turn));
      h.push_back(json::object{{"type", "message"}, {"n", turn}});
      co_await s.put("history", h);
    });
  }
  env_.restart();
  in([](Storage& s) -> Task<void> {
    auto h = (co_await s.get<json::array>("history")).value();
    EXPECT_EQ(h, history(50));
    h.push_back(json::string("not stored"));
    // A value read from SQLite is cached decoded as well: the copy is still the caller's.
    EXPECT_EQ((co_await s.get<json::array>("history")).value(), history(50));
  });
  env_.restart();
  in([](Storage& s) -> Task<void> { EXPECT_EQ((co_await s.get<json::array>("history")).value(), history(50)); });
}

TEST_F(DecodedCacheTest, OverwritesRemovalsAndTransactionsAreNeverHiddenByTheCache) {
  in([](Storage& s) -> Task<void> {
    json::object o{{"a", 1}};
    co_await s.put("k", o);
    EXPECT_EQ((co_await s.get<json::object>("k")).value(), o);
    co_await s.put("k", "text now");
    EXPECT_EQ((co_await s.get<std::string>("k")).value(), "text now");
    json::array a{1, 2};
    co_await s.put("k", a);
    EXPECT_EQ((co_await s.get<json::array>("k")).value(), a);
    EXPECT_TRUE(co_await s.remove("k"));
    EXPECT_EQ(co_await s.get("k"), std::nullopt);
    co_await s.put("k", a);
    co_await s.transaction([](Storage& txn) -> Task<void> {
      json::array inside{3};
      co_await txn.put("k", inside);
      EXPECT_EQ((co_await txn.get<json::array>("k")).value(), inside);
    });
    json::array three{3};
    EXPECT_EQ((co_await s.get<json::array>("k")).value(), three);
    co_await s.deleteAll();
    EXPECT_EQ(co_await s.get("k"), std::nullopt);
  });
  env_.restart();
  in([](Storage& s) -> Task<void> { EXPECT_EQ(co_await s.get("k"), std::nullopt); });
}

TEST_F(DecodedCacheTest, ManyPutsOfOneKeyInOneTurnCommitTheLastOne) {
  in([](Storage& s) -> Task<void> {
    for (int n = 1; n <= 100; ++n) {
      json::array h = history(n);
      co_await s.put("history", h);
      if (n % 25 == 0) {
        // list() hands out the encoded bytes: they must be there and decode to this put.
        auto page = co_await s.list();
        EXPECT_EQ(page.size(), 1u);
        EXPECT_EQ(page.at(0).second.as<json::array>(), history(n));
      }
    }
  });
  env_.restart();
  in([](Storage& s) -> Task<void> { EXPECT_EQ((co_await s.get<json::array>("history")).value(), history(100)); });
}

TEST_F(DecodedCacheTest, TextTheSerializerEscapesAndEveryNumberComeBackExactly) {
  json::object tricky{{"quote\"back\\slash", "line\nbreak\ttab\x01\x1f \"q\" \\"},
                      {"unicode", "\xc3\xa9 \xf0\x9f\x98\x80"},
                      {"numbers", json::array{0.1, 1e300, -2.2250738585072014e-308, -0.0, 9007199254740993LL,
                                              -9223372036854775807LL - 1, 18446744073709551615ULL}},
                      {"nested", json::array{json::object{{"", json::array{}}}, nullptr, true, false}}};
  in([&tricky](Storage& s) -> Task<void> {
    co_await s.put("t", tricky);
    EXPECT_EQ((co_await s.get<json::object>("t")).value(), tricky);
  });
  env_.restart();
  in([&tricky](Storage& s) -> Task<void> { EXPECT_EQ((co_await s.get<json::object>("t")).value(), tricky); });
}

// What a read hands out is the reader's own: it outlives the stored value being replaced and
// committed (the engine's thread may release the old one last), and it grows and is freed on its
// own. Under ASan a node shared with the stored value is a use after free here.
TEST_F(DecodedCacheTest, WhatAReadHandsOutIsTheReadersOwnAfterTheStoredValueIsReplaced) {
  in([](Storage& s) -> Task<void> {
    json::array h = history(50);
    co_await s.put("history", h);
    json::object o{{"k", json::array{1, 2, json::object{{"deep", "text that is longer than a short string"}}}}};
    co_await s.put("o", o);
    const json::value asValue = h;
    co_await s.put("v", asValue);

    auto array = (co_await s.get<json::array>("history")).value();
    auto object = (co_await s.get<json::object>("o")).value();
    auto value = (co_await s.get("v")).value();
    const json::value asJson = value.as<json::value>();
    const json::array fromConstValue = value.as<json::array>();
    const durable::Value copied = value;
    EXPECT_EQ(fromConstValue, history(50));

    // Replace every stored value; the old ones are released once committed.
    for (int i = 0; i < 3; ++i) {
      json::array other = history(i);
      co_await s.put("history", other);
      co_await s.put("o", other);
      co_await s.put("v", other);
      co_await s.sync();
    }
    for (int i = 0; i < 2000; ++i) array.push_back(json::string(std::string(40, 'x')));
    array.erase(array.begin(), array.begin() + 1000);
    object["k"].as_array().push_back(json::string(std::string(100, 'y')));
    EXPECT_EQ(array.size(), 1050u);
    EXPECT_EQ(object.at("k").as_array().at(2).at("deep"), "text that is longer than a short string");
    EXPECT_EQ(asJson, json::value(history(50)));
    EXPECT_EQ(copied.as<json::array>(), history(50));
  });
}

// The engine's thread encodes a JSON put; a number JSON cannot hold is written as null, as
// JSON.stringify writes it.
TEST_F(DecodedCacheTest, ANumberJsonCannotHoldIsStoredAsNull) {
  in([](Storage& s) -> Task<void> {
    json::array a{1.5, std::numeric_limits<double>::quiet_NaN(), json::string(std::string(30, 'z'))};
    co_await s.put("a", a);
    co_await s.sync();
  });
  env_.restart();
  in([](Storage& s) -> Task<void> {
    const json::array want{1.5, nullptr, json::string(std::string(30, 'z'))};
    EXPECT_EQ((co_await s.get<json::array>("a")).value(), want);
  });
}

TEST(DecodedCacheLimits, AValueOverTheLimitOrNotUtf8IsStillRefusedAtPutAndChangesNothing) {
  dt::Env env(dt::EnvOptions{.maxValueBytes = 1000});
  const auto& ns = env.exportClass<Box>("BOX");
  env.runInDurableObject<Box>(ns.getByName("b"), [](Box&, State& state) -> Task<void> {
    Storage& s = state.storage();
    // ["a...a"]: 994 bytes encoded, under the limit.
    json::array fits{json::string(990, 'a')};
    co_await s.put("k", fits);
    // Control characters are written as \u00XX: 150 of them take 900 bytes.
    json::array escaped{json::string(150, '\x01')};
    co_await s.put("e", escaped);
    json::array over{json::string(1010, 'a')};
    try {
      co_await s.put("k", over);
      ADD_FAILURE() << "a value over the limit was accepted";
    } catch (const durable::Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot be larger than 1000 bytes"), std::string::npos) << e.what();
    }
    json::array escapedOver{json::string(200, '\x01')};
    EXPECT_THROW(co_await s.put("e", escapedOver), durable::Error);
    json::array broken{1, json::string("\xff")};
    try {
      co_await s.put("k", broken);
      ADD_FAILURE() << "a JSON string that is not UTF-8 was accepted";
    } catch (const durable::Error& e) {
      EXPECT_NE(std::string(e.what()).find("at /1 is not valid UTF-8"), std::string::npos) << e.what();
    }
    EXPECT_EQ((co_await s.get<json::array>("k")).value(), fits);
    EXPECT_EQ((co_await s.get<json::array>("e")).value(), escaped);
  });
  env.restart();
  env.runInDurableObject<Box>(ns.getByName("b"), [](Box&, State& state) -> Task<void> {
    json::array fits{json::string(990, 'a')};
    json::array escaped{json::string(150, '\x01')};
    EXPECT_EQ((co_await state.storage().get<json::array>("k")).value(), fits);
    EXPECT_EQ((co_await state.storage().get<json::array>("e")).value(), escaped);
  });
}

// Read, change, put back: the ChatRoom's pattern. From the second round on, a read hands out
// the tree the last put() stored (no copy: the same element buffer); what the reader does with
// it is still its own business until it puts it back.
class TakenTreeTest : public ::testing::TestWithParam<bool> {
 protected:
  TakenTreeTest() : env_(dt::EnvOptions{.sqliteBacked = GetParam()}) { ns_ = &env_.exportClass<Box>("BOX"); }
  void in(const Body& body) {
    env_.runInDurableObject<Box>(ns_->getByName("box"),
                                 [&body](Box&, State& state) -> Task<void> { return body(state.storage()); });
  }
  dt::Env env_;
  const durable::Namespace* ns_;
};

TEST_P(TakenTreeTest, AValueReadChangedAndPutBackIsHandedToTheNextReadWithoutACopy) {
  auto stored = std::make_shared<const json::value*>(nullptr);
  in([stored](Storage& s) -> Task<void> {
    json::array h = history(3);
    co_await s.put("history", h);
    for (int round = 0; round < 4; ++round) {
      auto read = (co_await s.get<json::array>("history")).value();
      EXPECT_EQ(read.size(), 3u + round);
      // Rounds 1 on: the put() before this read followed a read, so this read takes its tree.
      if (round >= 1) EXPECT_EQ(read.data(), *stored) << "round " << round;
      read.push_back(json::object{{"type", "message"}, {"n", 3 + round}});
      *stored = read.data();
      co_await s.put("history", std::move(read));
    }
  });
  in([stored](Storage& s) -> Task<void> {
    // A new event: still handed over, and still the value of the last put.
    auto read = (co_await s.get<json::array>("history")).value();
    EXPECT_EQ(read.data(), *stored);
    EXPECT_EQ(read, history(7));
    co_await s.put("history", std::move(read));
  });
  env_.restart();
  in([](Storage& s) -> Task<void> { EXPECT_EQ((co_await s.get<json::array>("history")).value(), history(7)); });
}

TEST_P(TakenTreeTest, AReadBeforeTheTakenTreeIsPutBackGetsTheStoredValue) {
  in([](Storage& s) -> Task<void> {
    json::array h = history(2);
    co_await s.put("history", h);
    auto first = (co_await s.get<json::array>("history")).value();
    first.push_back(json::object{{"type", "message"}, {"n", 2}});
    co_await s.put("history", std::move(first));  // read, changed, put back

    auto taken = (co_await s.get<json::array>("history")).value();  // the cache's tree
    taken.clear();
    taken.push_back(json::string("changed, never put"));
    // The cache parses its bytes for these: the taken tree is the first reader's.
    EXPECT_EQ((co_await s.get<json::array>("history")).value(), history(3));
    EXPECT_EQ((co_await s.get("history")).value().as<json::array>(), history(3));
    auto page = co_await s.list();
    EXPECT_EQ(page.size(), 1u);
    if (!page.empty()) EXPECT_EQ(page.at(0).second.as<json::array>(), history(3));
  });
  in([](Storage& s) -> Task<void> {
    // The loan was not returned: reads copy now, and a copy is the reader's own.
    auto a = (co_await s.get<json::array>("history")).value();
    auto b = (co_await s.get<json::array>("history")).value();
    EXPECT_NE(a.data(), b.data());
    a.clear();
    EXPECT_EQ(b, history(3));
    EXPECT_EQ((co_await s.get<json::array>("history")).value(), history(3));
    // A put of the changed copy makes it a read-modify-write key again.
    b.push_back(json::object{{"type", "message"}, {"n", 3}});
    co_await s.put("history", std::move(b));
    auto c = (co_await s.get<json::array>("history")).value();
    EXPECT_EQ(c, history(4));
    c.push_back(json::object{{"type", "message"}, {"n", 4}});
    co_await s.put("history", c);
  });
  env_.restart();
  in([](Storage& s) -> Task<void> { EXPECT_EQ((co_await s.get<json::array>("history")).value(), history(5)); });
}

TEST_P(TakenTreeTest, ATakenTreeNeverReachesATransactionOrOutlivesARemoval) {
  in([](Storage& s) -> Task<void> {
    json::array h = history(1);
    co_await s.put("k", h);
    auto r = (co_await s.get<json::array>("k")).value();
    r.push_back(json::object{{"type", "message"}, {"n", 1}});
    co_await s.put("k", std::move(r));
    co_await s.transaction([](Storage& txn) -> Task<void> {
      auto inside = (co_await txn.get<json::array>("k")).value();
      EXPECT_EQ(inside, history(2));
      inside.clear();
      EXPECT_EQ((co_await txn.get<json::array>("k")).value(), history(2));
    });
    auto taken = (co_await s.get<json::array>("k")).value();
    EXPECT_EQ(taken, history(2));
    EXPECT_TRUE(co_await s.remove("k"));
    EXPECT_EQ(co_await s.get("k"), std::nullopt);
    // Put back after the removal: the reader's put wins, as any put after a remove does.
    co_await s.put("k", std::move(taken));
    EXPECT_EQ((co_await s.get<json::array>("k")).value(), history(2));
  });
  env_.restart();
  in([](Storage& s) -> Task<void> { EXPECT_EQ((co_await s.get<json::array>("k")).value(), history(2)); });
}

TEST_P(TakenTreeTest, APutAfterAReadStillRefusesWhatIsNotUtf8OrTooLargeAndChangesNothing) {
  in([](Storage& s) -> Task<void> {
    json::array h = history(2);
    co_await s.put("k", h);
    auto read = (co_await s.get<json::array>("k")).value();
    read.push_back(json::object{{"bad \xff key", 1}});
    read.back().as_object()["\xc3"] = 2;  // a key that is a lone lead byte
    try {
      co_await s.put("k", read);
      ADD_FAILURE() << "a JSON key that is not UTF-8 was accepted";
    } catch (const durable::Error& e) {
      EXPECT_NE(std::string(e.what()).find("a JSON object key at /2/ is not valid UTF-8"), std::string::npos)
          << e.what();
    }
    auto again = (co_await s.get<json::array>("k")).value();
    again.push_back(json::string(3 * 1024 * 1024, 'a'));
    EXPECT_THROW(co_await s.put("k", again), durable::Error);
    EXPECT_EQ((co_await s.get<json::array>("k")).value(), history(2));
  });
  env_.restart();
  in([](Storage& s) -> Task<void> { EXPECT_EQ((co_await s.get<json::array>("k")).value(), history(2)); });
}

TEST_P(TakenTreeTest, APutAfterAReadWritesANumberJsonCannotHoldAsNullAndEscapesText) {
  in([](Storage& s) -> Task<void> {
    json::array h = history(1);
    co_await s.put("k", h);
    auto read = (co_await s.get<json::array>("k")).value();
    read.push_back(std::numeric_limits<double>::infinity());
    read.push_back(json::string("quote\" back\\ \x01 \xc3\xa9"));
    co_await s.put("k", std::move(read));
  });
  env_.restart();
  in([](Storage& s) -> Task<void> {
    json::array want = history(1);
    want.push_back(nullptr);
    want.push_back(json::string("quote\" back\\ \x01 \xc3\xa9"));
    EXPECT_EQ((co_await s.get<json::array>("k")).value(), want);
  });
}

// A read between writes that keeps what it took (a join reading the history, a /history
// request) costs the next read a parse: a key whose trees keep not coming back is handed out
// less and less often, and as often as before once they come back again.
TEST_P(TakenTreeTest, AKeyWhoseTakenTreesDoNotComeBackIsHandedOutLessOften) {
  in([](Storage& s) -> Task<void> {
    json::array h = history(1);
    co_await s.put("history", h);
    int n = 1;
    int taken = 0;
    for (int round = 0; round < 20; ++round) {
      auto read = (co_await s.get<json::array>("history")).value();
      EXPECT_EQ(read, history(n));
      read.push_back(json::object{{"type", "message"}, {"n", n++}});
      const json::value* put = read.data();
      co_await s.put("history", std::move(read));
      auto peek = (co_await s.get<json::array>("history")).value();  // kept, never put back
      EXPECT_EQ(peek, history(n));
      if (peek.data() == put) ++taken;
    }
    // Rounds 0, 2, 6 and 14: the skips after each miss are 1, 3, 7 (and 15) writes.
    EXPECT_EQ(taken, 4);
    // Read, change, put back only: handed out again within the last penalty's writes, and on
    // every read once the trees come back.
    const json::value* last = nullptr;
    int inARow = 0;
    for (int round = 0; round < 40; ++round) {
      auto read = (co_await s.get<json::array>("history")).value();
      inARow = read.data() == last ? inARow + 1 : 0;
      read.push_back(json::object{{"type", "message"}, {"n", n++}});
      last = read.data();
      co_await s.put("history", std::move(read));
    }
    EXPECT_GE(inARow, 20);
    EXPECT_EQ((co_await s.get<json::array>("history")).value(), history(n));
  });
  env_.restart();
  in([](Storage& s) -> Task<void> { EXPECT_EQ((co_await s.get<json::array>("history")).value().size(), 61u); });
}

TEST_P(TakenTreeTest, AFailedPutOfATakenTreeLeavesTheStoredValueForTheNextRead) {
  in([](Storage& s) -> Task<void> {
    json::array h = history(1);
    co_await s.put("k", h);
    for (int n = 1; n <= 2; ++n) {
      auto read = (co_await s.get<json::array>("k")).value();
      read.push_back(json::object{{"type", "message"}, {"n", n}});
      co_await s.put("k", std::move(read));
    }
    auto taken = (co_await s.get<json::array>("k")).value();  // the cache's own tree
    taken.push_back(json::string("\xff"));
    EXPECT_THROW(co_await s.put("k", taken), durable::Error);
    EXPECT_EQ((co_await s.get<json::array>("k")).value(), history(3));
    const std::vector<std::string> keys{"k"};
    auto entries = co_await s.get(keys);
    EXPECT_EQ(entries.size(), 1u);
    if (!entries.empty()) EXPECT_EQ(entries.at(0).second.as<json::array>(), history(3));
  });
  env_.restart();
  in([](Storage& s) -> Task<void> { EXPECT_EQ((co_await s.get<json::array>("k")).value(), history(3)); });
}

INSTANTIATE_TEST_SUITE_P(KeyValueAndSqliteBacked, TakenTreeTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "SqliteBacked" : "KeyValue"; });

// The ChatRoom's pattern under load: each request reads the whole history, appends to it and
// puts it back, and its reply waits for that write to be durable.
class Log : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  Task<durable::Response> fetch(durable::Request) override {
    auto h = (co_await state().storage().get<json::array>("history")).value_or(json::array{});
    const auto n = static_cast<std::int64_t>(h.size());
    h.push_back(n);
    co_await state().storage().put("history", h);
    co_return durable::Response(std::to_string(n));
  }
};

TEST(DecodedCacheBatching, RequestsThatArriveDuringACommitShareABatchAndEachKeepsItsPlace) {
  dt::Env env;
  const auto& ns = env.exportClass<Log>("LOG");
  const durable::Stub stub = ns.getByName("log");
  constexpr int kRequests = 300;
  auto replies = env.run([](durable::Stub stub) -> Task<std::vector<std::string>> {
    auto results = std::make_shared<std::vector<std::string>>();
    durable::Promise<void> all;
    durable::Future<void> done = all.future();
    for (int i = 0; i < kRequests; ++i) {
      durable::spawn<durable::Response>(stub.fetch("http://do/append"),
                                        [results, all](durable::Result<durable::Response> r) mutable {
                                          results->push_back(r.ok() ? r.value().text() : std::string("error"));
                                          if (results->size() == kRequests) all.setValue();
                                        });
    }
    co_await done;
    co_return std::move(*results);
  }(stub));
  // Every request appended once, at its own place, and got its reply only once durable.
  std::vector<std::int64_t> got;
  for (const auto& r : replies) got.push_back(r == "error" ? -1 : std::stoll(r));
  std::sort(got.begin(), got.end());
  std::vector<std::int64_t> want(kRequests);
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(got, want);
  // They arrived together: far fewer commits than requests carried them.
  EXPECT_LT(env.commits(), static_cast<std::uint64_t>(kRequests) / 3);
  json::array expected;
  for (int i = 0; i < kRequests; ++i) expected.push_back(i);
  env.restart();
  env.runInDurableObject<Log>(stub, [&expected](Log&, State& state) -> Task<void> {
    EXPECT_EQ((co_await state.storage().get<json::array>("history")).value(), expected);
  });
}

}  // namespace
