// A SQLite-backed object's own database read from outside the object (the admin API and the
// CLI): a read-only connection that sees what the file has committed, never what the object
// holds in its open transaction, and that never wakes or changes the object.
#pragma once

#include "storage/engine.h"

#include <durable/value.h>

#include <sqlite3.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace durable::detail {

class ObjectSqlReader {
 public:
  // A missing file reads as an empty database. Throws Error(kUnavailable) when it cannot open.
  explicit ObjectSqlReader(const std::filesystem::path& file);
  ~ObjectSqlReader();
  ObjectSqlReader(const ObjectSqlReader&) = delete;
  ObjectSqlReader& operator=(const ObjectSqlReader&) = delete;

  // How many keys the key-value API holds, and their bytes (keys and encoded values).
  std::pair<std::size_t, std::uint64_t> kvSize();
  // The file's bytes on disk, its write-ahead log included.
  static std::uint64_t bytesOnDisk(const std::filesystem::path& file);
  // The key-value API's rows (_cf_KV) in [lower, upper), ascending, at most `limit`.
  Rows kv(std::string_view lower, bool lowerInclusive, const std::optional<std::string>& upper, std::size_t limit);

  struct Result {
    std::vector<std::string> columns;
    std::vector<std::vector<Value>> rows;
    bool truncated = false;  // more than maxRows rows
  };
  // One statement that only reads; anything else (a write, a second statement, a PRAGMA that
  // changes something, ATTACH) throws Error(kInvalidArgument) with the reason.
  // One that runs past `limit` is stopped (kInvalidArgument, saying so).
  Result query(std::string_view sql, std::size_t maxRows, std::chrono::milliseconds limit = std::chrono::seconds(5));

 private:
  sqlite3* db_ = nullptr;  // null: no file
};

}  // namespace durable::detail
