#include <durable/error.h>
#include <durable/value.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace durable {
namespace {

Value roundTrip(const Value& v) { return Value::decode(v.encode()); }

template <class F>
void expectError(ErrorCode code, F&& f) {
  try {
    f();
    ADD_FAILURE() << "expected durable::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
  }
}

TEST(ValueCodecTest, NullRoundTrip) {
  Value v;
  EXPECT_EQ(v.encode(), std::string(1, '\0'));
  Value back = roundTrip(v);
  EXPECT_TRUE(back.isNull());
  EXPECT_EQ(back, v);
  EXPECT_TRUE(roundTrip(Value(nullptr)).isNull());
}

TEST(ValueCodecTest, BoolRoundTrip) {
  EXPECT_EQ(Value(false).encode(), std::string(1, '\x01'));
  EXPECT_EQ(Value(true).encode(), std::string(1, '\x02'));
  EXPECT_EQ(roundTrip(Value(true)).as<bool>(), true);
  EXPECT_EQ(roundTrip(Value(false)).as<bool>(), false);
  EXPECT_EQ(roundTrip(Value(true)).type(), Value::Type::kBool);
}

TEST(ValueCodecTest, IntIsLittleEndian) {
  std::string e = Value(0x0102).encode();
  ASSERT_EQ(e.size(), 9u);
  EXPECT_EQ(e[0], '\x03');
  EXPECT_EQ(e[1], '\x02');
  EXPECT_EQ(e[2], '\x01');
  EXPECT_EQ(e.substr(3), std::string(6, '\0'));
  EXPECT_EQ(Value(-1).encode(), std::string("\x03") + std::string(8, '\xff'));
}

TEST(ValueCodecTest, IntRoundTripIncludingLimits) {
  for (std::int64_t i : {std::int64_t{0}, std::int64_t{1}, std::int64_t{-1}, std::int64_t{42},
                         std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max()}) {
    Value back = roundTrip(Value(i));
    EXPECT_EQ(back.type(), Value::Type::kInt);
    EXPECT_EQ(back.as<std::int64_t>(), i);
  }
}

TEST(ValueCodecTest, DoubleRoundTrip) {
  for (double d : {0.1, 1e300, -2.5, 1.0, std::numeric_limits<double>::infinity(),
                   std::numeric_limits<double>::denorm_min()}) {
    Value back = roundTrip(Value(d));
    EXPECT_EQ(back.type(), Value::Type::kDouble);
    EXPECT_EQ(back.as<double>(), d);
  }
  EXPECT_EQ(Value(0.1).encode().size(), 9u);
  EXPECT_EQ(Value(0.1).encode()[0], '\x04');
}

TEST(ValueCodecTest, NegativeZeroKeepsItsSign) {
  Value back = roundTrip(Value(-0.0));
  EXPECT_EQ(back.type(), Value::Type::kDouble);
  EXPECT_TRUE(std::signbit(back.as<double>()));
}

TEST(ValueCodecTest, NanRoundTrip) {
  Value back = roundTrip(Value(std::nan("")));
  EXPECT_TRUE(std::isnan(back.as<double>()));
}

TEST(ValueCodecTest, StringRoundTrip) {
  for (std::string s : {std::string(), std::string("hello"), std::string("h\xc3\xa9llo \xe2\x9c\x93"),
                        std::string("nul\0inside", 10)}) {
    Value back = roundTrip(Value(s));
    EXPECT_EQ(back.type(), Value::Type::kString);
    EXPECT_EQ(back.as<std::string>(), s);
  }
  EXPECT_EQ(Value("").encode(), std::string(1, '\x05'));
}

TEST(ValueCodecTest, BytesRoundTripWithNulBytes) {
  Bytes b{std::string("\0\x01\xff\0x", 5)};
  Value back = roundTrip(Value(b));
  EXPECT_EQ(back.type(), Value::Type::kBytes);
  EXPECT_EQ(back.as<Bytes>(), b);
  EXPECT_EQ(roundTrip(Value(Bytes{})).as<Bytes>(), Bytes{});
  EXPECT_EQ(Value(b).encode(), std::string("\x06") + b.data);
}

TEST(ValueCodecTest, NestedJsonRoundTrip) {
  Json j = boost::json::parse(R"({"a":[1,2,{"b":null,"c":[true,"x",-3.5]}],"d":{},"e":[]})");
  Value v(j);
  EXPECT_EQ(v.type(), Value::Type::kJson);
  Value back = roundTrip(v);
  EXPECT_EQ(back.type(), Value::Type::kJson);
  EXPECT_EQ(back.toJson(), j);
  EXPECT_EQ(back, v);

  Value arr(boost::json::array{1, "two", boost::json::array{3}});
  EXPECT_EQ(roundTrip(arr).toJson(), arr.toJson());
  Value obj(boost::json::object{{"k", boost::json::object{{"n", 1}}}});
  EXPECT_EQ(roundTrip(obj).toJson(), obj.toJson());
}

TEST(ValueCodecTest, JsonScalarsBecomeScalars) {
  EXPECT_EQ(Value(Json(nullptr)).type(), Value::Type::kNull);
  EXPECT_EQ(Value(Json(true)).type(), Value::Type::kBool);
  EXPECT_EQ(Value(Json(std::int64_t{5})).type(), Value::Type::kInt);
  EXPECT_EQ(Value(Json(std::uint64_t{7})).as<std::int64_t>(), 7);
  EXPECT_EQ(Value(Json(std::uint64_t{7})).type(), Value::Type::kInt);
  EXPECT_EQ(Value(Json(std::numeric_limits<std::uint64_t>::max())).type(), Value::Type::kDouble);
  EXPECT_EQ(Value(Json(1.5)).type(), Value::Type::kDouble);
  EXPECT_EQ(Value(Json("s")).type(), Value::Type::kString);
  EXPECT_EQ(Value(Json("s")).as<std::string>(), "s");
}

TEST(ValueCodecTest, CorruptInputThrowsInternal) {
  expectError(ErrorCode::kInternal, [] { Value::decode(""); });
  expectError(ErrorCode::kInternal, [] { Value::decode(std::string(1, '\x08')); });
  expectError(ErrorCode::kInternal, [] { Value::decode(std::string(1, '\xff')); });
  expectError(ErrorCode::kInternal, [] { Value::decode(std::string("\x03") + std::string(7, '\0')); });
  expectError(ErrorCode::kInternal, [] { Value::decode(std::string("\x04") + std::string(9, '\0')); });
  expectError(ErrorCode::kInternal, [] { Value::decode(std::string(1, '\0') + "x"); });
  expectError(ErrorCode::kInternal, [] { Value::decode("\x02x"); });
  expectError(ErrorCode::kInternal, [] { Value::decode("\x07{not json"); });
  expectError(ErrorCode::kInternal, [] { Value::decode("\x07"); });
}

TEST(ValueAsTest, IntAndDoubleConvertWhenExact) {
  EXPECT_EQ(Value(3).as<double>(), 3.0);
  EXPECT_EQ(Value(4.0).as<std::int64_t>(), 4);
  EXPECT_EQ(Value(-4.0).as<int>(), -4);
  EXPECT_EQ(Value(7).as<int>(), 7);
  EXPECT_EQ(Value(7).as<float>(), 7.0f);
}

TEST(ValueAsTest, InexactDoubleToIntThrows) {
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value(1.5).as<std::int64_t>(); });
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value(1e300).as<std::int64_t>(); });
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value(9223372036854775808.0).as<std::int64_t>(); });
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value(std::nan("")).as<std::int64_t>(); });
  EXPECT_EQ(Value(-9223372036854775808.0).as<std::int64_t>(), std::numeric_limits<std::int64_t>::min());
}

TEST(ValueAsTest, WrongTypeThrowsInvalidArgument) {
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value("5").as<std::int64_t>(); });
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value("5").as<double>(); });
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value().as<std::int64_t>(); });
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value(1).as<bool>(); });
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value(1).as<std::string>(); });
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value("x").as<Bytes>(); });
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value(Bytes{"x"}).as<std::string>(); });
  try {
    (void)Value(true).as<double>();
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "stored value is not a number");
  }
}

TEST(ValueAsTest, AsValueAndAsJson) {
  Value v("abc");
  EXPECT_EQ(v.as<Value>(), v);
  EXPECT_EQ(v.as<Json>(), Json("abc"));
}

TEST(ValueAsTest, VectorOfIntsViaBoostJson) {
  Value v(std::vector<std::int64_t>{1, -2, 3});
  EXPECT_EQ(v.type(), Value::Type::kJson);
  Value back = roundTrip(v);
  EXPECT_EQ(back.as<std::vector<std::int64_t>>(), (std::vector<std::int64_t>{1, -2, 3}));
  expectError(ErrorCode::kInvalidArgument, [] { (void)Value(5).as<std::vector<std::int64_t>>(); });
  expectError(ErrorCode::kInvalidArgument,
              [] { (void)Value(boost::json::array{"a"}).as<std::vector<std::int64_t>>(); });
}

TEST(ValueAsTest, MapViaBoostJson) {
  std::map<std::string, std::string> m{{"a", "x"}, {"b", "y"}};
  Value back = roundTrip(Value(m));
  EXPECT_EQ(back.type(), Value::Type::kJson);
  EXPECT_EQ((back.as<std::map<std::string, std::string>>()), m);
}

TEST(ValueToJsonTest, ScalarsAreNatural) {
  EXPECT_TRUE(Value().toJson().is_null());
  EXPECT_EQ(Value(true).toJson(), Json(true));
  EXPECT_EQ(Value(12).toJson(), Json(std::int64_t{12}));
  EXPECT_EQ(Value(0.5).toJson(), Json(0.5));
  EXPECT_EQ(Value("s").toJson(), Json("s"));
}

TEST(ValueToJsonTest, BytesBecomeArrayOfByteValues) {
  Json j = Value(Bytes{std::string("\0\x7f\xff", 3)}).toJson();
  EXPECT_EQ(j, Json(boost::json::array{0, 127, 255}));
}

}  // namespace
}  // namespace durable
