// Helpers shared by the unit tests.
#pragma once

#include <durable/error.h>
#include <durable/testing.h>
#include <durable/value.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdint>

#include <optional>
#include <string>

namespace durable::test_support {

// The value of `key` for whichever object wrote it, read straight from the partition file with
// a separate SQLite connection: what is durable, not what a cache holds.
inline std::optional<Value> readFromDisk(const testing::Env& env, const std::string& key) {
  sqlite3* db = nullptr;
  auto file = env.dir() / "partitions" / "p0.sqlite";
  EXPECT_EQ(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  std::optional<Value> out;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT key, value FROM kv", -1, &s, nullptr) == SQLITE_OK) {
    while (sqlite3_step(s) == SQLITE_ROW) {
      std::string k(static_cast<const char*>(sqlite3_column_blob(s, 0)), sqlite3_column_bytes(s, 0));
      if (k != key) continue;
      std::string v(static_cast<const char*>(sqlite3_column_blob(s, 1)), sqlite3_column_bytes(s, 1));
      out = Value::decode(v);
    }
  } else {
    ADD_FAILURE() << sqlite3_errmsg(db);
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

// The code of the durable::Error `fn` throws; fails the test when it throws nothing or
// something else.
template <class F>
std::optional<ErrorCode> errorCodeOf(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.code();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-durable exception: " << e.what();
    return std::nullopt;
  }
  ADD_FAILURE() << "did not throw";
  return std::nullopt;
}

// One HTTP/1.1 request on a fresh connection to 127.0.0.1:port, answered as "status body";
// the Retry-After header goes to `retryAfter` when given.
inline std::string httpRoundTrip(std::uint16_t port, boost::beast::http::verb method, const std::string& target,
                                 std::string* retryAfter = nullptr) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  http::request<http::string_body> req(method, target, 11);
  req.set(http::field::host, "127.0.0.1");
  req.prepare_payload();
  http::write(socket, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(socket, buffer, res);
  if (retryAfter) *retryAfter = std::string(res[http::field::retry_after]);
  return std::to_string(res.result_int()) + " " + res.body();
}

}  // namespace durable::test_support
