// The stored value codec (durable/value.h): Value::encode() and Value::decode() of an int64, a
// 100-byte string, a JSON object of 20 fields and 1 KiB of bytes.
//
// Ceilings: memcpy of the encoded size (tag byte included: 9, 101 and 1025 bytes) into a
// buffer allocated once; for the JSON object, boost::json::serialize() of the same object
// (encode) and boost::json::parse() of the same text (decode).
//
// put()'s check of a JSON value (UTF-8 of every string, a bound on the encoded size) on the
// seed ChatRoom's history of 1,000 messages, which it walks on every message; its ceiling is
// boost::json::serialize() of the same history, the encoding the check stands in for.
#include "micro.h"

#include "storage/value_codec.h"

#include <durable/value.h>

#include <boost/json.hpp>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace micro {
namespace {

boost::json::object jsonObject() {
  boost::json::object o;
  o["id"] = 123456;
  o["name"] = "Ada Lovelace";
  o["email"] = "ada@example.com";
  o["active"] = true;
  o["score"] = 98.25;
  o["age"] = 36;
  o["city"] = "London";
  o["country"] = "GB";
  o["tags"] = boost::json::array{"math", "poetry", "engines"};
  o["created"] = 1732600000000;
  o["updated"] = 1732686400000;
  o["visits"] = 4242;
  o["ratio"] = 0.125;
  o["plan"] = "pro";
  o["verified"] = false;
  o["lang"] = "en-GB";
  o["tz"] = "Europe/London";
  o["referrer"] = nullptr;
  o["bio"] = "Wrote the first published algorithm intended for a machine.";
  o["address"] = boost::json::object{{"street", "12 St James's Square"}, {"zip", "SW1Y 4JH"}};
  return o;
}

durable::Value sample(const std::string& kind) {
  if (kind == "int") return durable::Value(std::int64_t{1234567890123});
  if (kind == "string100") return durable::Value(std::string(100, 's'));
  if (kind == "json20") return durable::Value(jsonObject());
  if (kind == "bytes1k") return durable::Value(durable::Bytes{std::string(1024, '\xab')});
  throw std::runtime_error("unknown kind " + kind);
}

boost::json::array chatHistory() {
  boost::json::array history;
  for (int i = 0; i < 1000; ++i) {
    std::string content = "t=" + std::to_string(1733450000000000000LL + i) + ";";
    content.append(64 - content.size(), 'x');
    history.push_back(boost::json::object{{"type", "message"},
                                          {"user", "user-" + std::to_string(i % 100)},
                                          {"content", content},
                                          {"timestamp", 1733450000000LL + i}});
  }
  return history;
}

void putCheck(benchmark::State& st) {
  const durable::Value v(chatHistory());
  for (auto _ : st) {
    std::size_t bound = durable::detail::checkedEncodedBound(v);
    benchmark::DoNotOptimize(bound);
  }
  st.SetItemsProcessed(st.iterations());
}

void encode(benchmark::State& st, const std::string& kind) {
  const durable::Value v = sample(kind);
  const std::size_t n = v.encode().size();
  for (auto _ : st) {
    std::string e = v.encode();
    benchmark::DoNotOptimize(e);
  }
  st.SetItemsProcessed(st.iterations());
  st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(n));
}

void decode(benchmark::State& st, const std::string& kind) {
  const durable::Value v = sample(kind);
  const std::string e = v.encode();
  if (!(durable::Value::decode(e) == v)) throw std::runtime_error("decode: " + kind + " does not round-trip");
  for (auto _ : st) {
    durable::Value d = durable::Value::decode(e);
    benchmark::DoNotOptimize(d);
  }
  st.SetItemsProcessed(st.iterations());
  st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(e.size()));
}

void copy(benchmark::State& st, std::size_t n) {
  const std::string src(n, 'x');
  std::vector<char> dst(n);
  for (auto _ : st) {
    benchmark::DoNotOptimize(src.data());
    std::memcpy(dst.data(), src.data(), n);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations());
  st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(n));
}

void serialize(benchmark::State& st, const boost::json::value& v) {
  for (auto _ : st) {
    std::string s = boost::json::serialize(v);
    benchmark::DoNotOptimize(s);
  }
  st.SetItemsProcessed(st.iterations());
}

void parse(benchmark::State& st) {
  const std::string text = boost::json::serialize(boost::json::value(jsonObject()));
  for (auto _ : st) {
    boost::json::value v = boost::json::parse(text);
    benchmark::DoNotOptimize(v);
  }
  st.SetItemsProcessed(st.iterations());
}

}  // namespace

void registerCodec() {
  using benchmark::RegisterBenchmark;
  for (std::string kind : {"int", "string100", "json20", "bytes1k"}) {
    RegisterBenchmark(("codec/" + kind + "/encode").c_str(), encode, kind)->UseRealTime();
    RegisterBenchmark(("codec/" + kind + "/decode").c_str(), decode, kind)->UseRealTime();
  }
  for (std::size_t n : {9, 101, 1025}) {
    RegisterBenchmark(("codec/memcpy/" + std::to_string(n)).c_str(), copy, n)->UseRealTime();
  }
  RegisterBenchmark("codec/json20/boost_serialize", serialize, boost::json::value(jsonObject()))->UseRealTime();
  RegisterBenchmark("codec/json20/boost_parse", parse)->UseRealTime();
  RegisterBenchmark("codec/chat1000/put_check", putCheck)->UseRealTime();
  RegisterBenchmark("codec/chat1000/boost_serialize", serialize, boost::json::value(chatHistory()))->UseRealTime();
}

}  // namespace micro
