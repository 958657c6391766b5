// Storing text with arbitrary bytes (issue 18, item 1): a string, a JSON string or a JSON
// object key holding any bytes is either refused by encode() with Error(kInvalidArgument),
// exactly when some piece is not UTF-8, or reads back from its encoding equal to what was put.
// Every few inputs the same value goes through a real object's storage().put() and get(): a
// refused put leaves the key as it was.
//
// UTF-8 validity is judged here by a decoder of its own (Unicode 15, table 3-7), not by the
// library's, so the two are checked against each other. The repair used for text stored by
// older builds (toWellFormedUtf8) must give valid UTF-8 and leave valid text alone.
#include <durable/error.h>
#include <durable/json.h>
#include <durable/object.h>
#include <durable/storage.h>
#include <durable/testing.h>
#include <durable/value.h>
#include <fuzzer/FuzzedDataProvider.h>

#include "base/utf8.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant failed: %s\n", what);
    std::abort();
  }
}

// Decodes one scalar value at a time and rejects overlong forms, surrogates and anything past
// U+10FFFF by their code point, where the library works from the ranges of each byte.
bool referenceUtf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int extra;
    std::uint32_t cp;
    std::uint32_t least;
    if (b0 < 0x80) {
      ++i;
      continue;
    } else if ((b0 & 0xE0) == 0xC0) {
      extra = 1, cp = b0 & 0x1F, least = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      extra = 2, cp = b0 & 0x0F, least = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      extra = 3, cp = b0 & 0x07, least = 0x10000;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < least || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

// The values the fuzzer builds, and whether each text piece in them is UTF-8.
struct Built {
  durable::Value value;
  bool allText = true;
};

Built build(FuzzedDataProvider& in) {
  std::vector<std::string> pieces;
  const int shape = in.ConsumeIntegralInRange<int>(0, 4);
  const int count = shape == 0 || shape == 1 ? 1 : 3;
  for (int i = 0; i < count; ++i) pieces.push_back(in.ConsumeRandomLengthString(64));
  Built out;
  for (const auto& p : pieces) out.allText = out.allText && referenceUtf8(p);
  switch (shape) {
    case 0:
      out.value = durable::Value(pieces[0]);
      break;
    case 1:
      out.value = durable::Value(durable::Json(boost::json::string(pieces[0])));
      break;
    case 2:
      out.value = durable::Value(boost::json::array{durable::Json(pieces[0]), 7, durable::Json(pieces[1]),
                                                    boost::json::array{durable::Json(pieces[2])}});
      break;
    case 3: {
      boost::json::object inner;
      inner[pieces[2]] = pieces[1];
      boost::json::object o;
      o[pieces[0]] = std::move(inner);
      out.value = durable::Value(std::move(o));
      break;
    }
    default: {
      // Deep nesting, the keys and strings in a list as a chat history holds them.
      boost::json::array history;
      for (const auto& p : pieces) history.push_back(boost::json::object{{"user", p}, {"text", "hi"}});
      boost::json::object o;
      o[pieces[1]] = std::move(history);
      out.value = durable::Value(std::move(o));
      break;
    }
  }
  return out;
}

class Holder : public durable::DurableObject {
 public:
  Holder(durable::State& s, durable::Env& e) : DurableObject(s, e) {}
};

struct World {
  durable::testing::Env env{durable::testing::EnvOptions{.durability = "relaxed"}};
  const durable::Namespace& ns = env.exportClass<Holder>("HOLDER");
  durable::Stub stub = ns.get(ns.idFromName("fuzz"));
};

World& world() {
  static auto* w = new World();  // never destroyed: libFuzzer exits without unwinding
  return *w;
}

void throughStorage(const Built& b) {
  auto value = std::make_shared<durable::Value>(b.value);
  const bool allText = b.allText;
  world().env.runInObject(world().stub, [value, allText](durable::DurableObject&, durable::State& state)
                                            -> durable::Task<void> {
    auto& storage = state.storage();
    co_await storage.put("k", durable::Value("before"));
    bool refused = false;
    try {
      co_await storage.put("k", *value);
    } catch (const durable::Error& e) {
      check(e.code() == durable::ErrorCode::kInvalidArgument, "put threw another code");
      refused = true;
    }
    check(refused == !allText, "put refused valid text or stored invalid text");
    const std::optional<durable::Value> back = co_await storage.get<durable::Value>("k");
    check(back.has_value(), "the key vanished");
    check(refused ? *back == durable::Value("before") : *back == *value, "get did not return what was put");
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const bool viaStorage = in.ConsumeIntegral<std::uint8_t>() < 16;
  const Built b = build(in);

  std::optional<std::string> encoded;
  try {
    encoded = b.value.encode();
  } catch (const durable::Error& e) {
    check(e.code() == durable::ErrorCode::kInvalidArgument, "encode threw another code");
  }
  check(encoded.has_value() == b.allText, "encode disagrees with the reference UTF-8 decoder");
  if (encoded) {
    const durable::Value back = durable::Value::decode(*encoded);
    check(back == b.value, "a value did not read back as it was put");
    check(back.encode() == *encoded, "encoding not stable in a round trip");
  }

  const std::string raw = in.ConsumeRemainingBytesAsString();
  const std::string repaired = durable::detail::toWellFormedUtf8(raw);
  check(referenceUtf8(repaired), "the repair gave text that is not UTF-8");
  check(durable::detail::validUtf8(raw) == referenceUtf8(raw), "validUtf8 disagrees with the reference");
  if (referenceUtf8(raw)) check(repaired == raw, "the repair changed valid text");

  if (viaStorage) throughStorage(b);
  return 0;
}
