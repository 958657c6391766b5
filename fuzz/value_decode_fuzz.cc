// The stored-value codec: durable::Value::decode on arbitrary bytes.
//
// A decode either throws Error(kInternal) ("corrupt stored value") or gives a Value whose
// encoding decodes again to an equal encoding (encode is canonical after one round), and
// whose accessors do not misbehave.
#include <durable/error.h>
#include <durable/json.h>
#include <durable/value.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant failed: %s\n", what);
    std::abort();
  }
}

template <class T>
void tryAs(const durable::Value& v) {
  try {
    (void)v.as<T>();
  } catch (const durable::Error& e) {
    check(e.code() == durable::ErrorCode::kInvalidArgument, "as<T>() threw another code");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  durable::Value v;
  try {
    v = durable::Value::decode(in);
  } catch (const durable::Error& e) {
    check(e.code() == durable::ErrorCode::kInternal, "decode threw another code");
    return 0;
  }
  const std::string once = v.encode();
  durable::Value again = durable::Value::decode(once);
  check(again.type() == v.type(), "type changed in a round trip");
  check(again.encode() == once, "encoding not stable in a round trip");
  // Anything but JSON text (which is re-serialized) is kept byte for byte.
  if (in.front() != 0x07) check(once == in, "scalar encoding changed");

  (void)v.toJson();
  tryAs<bool>(v);
  tryAs<std::int64_t>(v);
  tryAs<int>(v);
  tryAs<double>(v);
  tryAs<std::string>(v);
  tryAs<durable::Bytes>(v);
  tryAs<std::vector<std::int64_t>>(v);
  return 0;
}
