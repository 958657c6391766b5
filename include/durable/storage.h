// durable/storage.h: an object's transactional key-value storage (state.storage in JS).
//
// Keys are UTF-8 strings ordered by their bytes. Every call applies at once to the object's
// cache and is visible to the next call; the writes of one turn (the code between two
// awaits that really suspend) are committed together in one transaction, and every reply
// or message the object sends afterwards is held until that commit is durable (the output
// gate). Reads are served from the object's cache, falling back to the database.
//
// Thread safety: a Storage belongs to its object and is used only from the object's shard,
// inside its handlers.
#pragma once

#include <durable/borrowed.h>
#include <durable/sql.h>
#include <durable/task.h>
#include <durable/value.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace durable {

// Limits, as Cloudflare's: each violation throws Error(kInvalidArgument) and changes nothing.
// A class created by a migration's new_classes (key-value backed on Cloudflare) takes values
// up to [durable] max_value_bytes (128 KiB by default, at most 2 MiB); one created by
// new_sqlite_classes takes a key and value of 2 MiB together, as SQLite-backed objects do.
// Keys are at most 2 KiB in both.
inline constexpr std::size_t kMaxKeyBytes = 2048;
inline constexpr std::size_t kDefaultMaxValueBytes = 128 * 1024;
inline constexpr std::size_t kMaxValueBytesCeiling = 2 * 1024 * 1024;
inline constexpr std::size_t kMaxSqliteKeyValueBytes = 2 * 1024 * 1024;
inline constexpr std::size_t kMaxKeysPerCall = 128;

// list() options. A key is listed when it is in [start, end) (or (startAfter, end)) and
// begins with prefix; all bounds are optional. The strings are borrowed: see
// durable/borrowed.h.
struct ListOptions {
  std::optional<BorrowedString> start;       // first key, inclusive
  std::optional<BorrowedString> startAfter;  // first key, exclusive; not with start
  std::optional<BorrowedString> end;         // last key, exclusive
  std::optional<BorrowedString> prefix;
  bool reverse = false;                      // descending key order; limit counts from the end
  std::optional<std::size_t> limit;
};
static_assert(std::is_trivially_destructible_v<ListOptions>, "see durable/borrowed.h");

// Entries in the order they were listed (key order, or reverse).
using Entries = std::vector<std::pair<std::string, Value>>;

namespace detail {
class ObjectHost;
class ObjectStore;
struct TxnOverlay;

template <class T>
struct IsAwaitable : std::false_type {};
template <class T>
struct IsAwaitable<Task<T>> : std::true_type {};
template <class T>
struct IsAwaitable<Future<T>> : std::true_type {};
template <class T>
struct IsAwaitable<StorageOp<T>> : std::true_type {};
}  // namespace detail

class Storage {
 public:
  // One key. The value converted to T (see Value::as), or nullopt when absent.
  template <class T = Value>
  StorageOp<std::optional<T>> get(std::string_view key) {
    if (mustLoad(key)) return StorageOp<std::optional<T>>(getLater<T>(std::string(key)));
    auto v = getValue(key);
    if (!v) return StorageOp<std::optional<T>>(std::nullopt);
    return StorageOp<std::optional<T>>(std::move(*v).template as<T>());
  }
  // Up to 128 keys; the found ones, in key order.
  StorageOp<Entries> get(std::span<const std::string> keys);
  StorageOp<Entries> get(std::initializer_list<std::string> keys) {
    return get(std::span<const std::string>(keys.begin(), keys.size()));
  }

  StorageOp<void> put(std::string_view key, Value value);
  // Up to 128 entries, atomically.
  StorageOp<void> put(std::span<const std::pair<std::string, Value>> entries);
  StorageOp<void> put(std::initializer_list<std::pair<std::string, Value>> entries) {
    return put(std::span<const std::pair<std::string, Value>>(entries.begin(), entries.size()));
  }

  // `delete` in JavaScript. Whether the key existed.
  StorageOp<bool> remove(std::string_view key);
  // Up to 128 keys; how many existed.
  StorageOp<std::size_t> remove(std::span<const std::string> keys);
  StorageOp<std::size_t> remove(std::initializer_list<std::string> keys) {
    return remove(std::span<const std::string>(keys.begin(), keys.size()));
  }

  StorageOp<Entries> list(const ListOptions& options = {});

  // Deletes every key (and, with alarms, the alarm).
  StorageOp<void> deleteAll();

  // Runs `fn` with a transaction whose reads see its own writes. When fn returns, its writes
  // apply atomically; when it throws, none of them do and the exception propagates. No other
  // event enters the object while fn runs.
  template <class F>
  Task<void> transaction(F&& fn) {
    detail::requireSafeCallable<F, TransactionFn>();
    return runTransaction(TransactionFn(std::forward<F>(fn)));
  }
  using TransactionFn = std::function<Task<void>(Storage& txn)>;

  // SQLite-backed objects (new_sqlite_classes): runs `fn` at once, synchronously, in a
  // transaction: when it returns, its SQL statements and key-value writes stand (and its
  // result is returned); when it throws, none of them do and the exception propagates. Calls
  // nest. Throws Error(kInvalidArgument) for a key-value backed class. `fn` cannot await: for
  // a transaction that does, use transaction().
  template <class F>
  std::invoke_result_t<F&> transactionSync(F&& fn) {
    using R = std::invoke_result_t<F&>;
    static_assert(!detail::IsAwaitable<R>::value,
                  "transactionSync() runs its function synchronously; use transaction() for one that awaits");
    beginTransactionSync();
    try {
      if constexpr (std::is_void_v<R>) {
        fn();
        endTransactionSync(true);
      } else {
        R result = fn();
        endTransactionSync(true);
        return result;
      }
    } catch (...) {
      endTransactionSync(false);
      throw;
    }
  }

  // The object's SQL database (durable/sql.h); throws Error(kInvalidArgument) for a class
  // that is not SQLite-backed.
  SqlStorage& sql();

  // Point-in-time recovery (SQLite-backed classes; the others throw Error(kInvalidArgument)).
  // A bookmark is an opaque string naming a state of the object's SQL database; bookmarks sort
  // in time order. History is kept for [durable] pitr_retention_ms (30 days by default).
  //
  // The state after every write made so far (once those are durable).
  Task<std::string> getCurrentBookmark();
  // The state at a time within the retention (a later time is taken as now).
  Task<std::string> getBookmarkForTime(std::int64_t epochMillis);
  Task<std::string> getBookmarkForTime(std::chrono::system_clock::time_point when) {
    return getBookmarkForTime(std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count());
  }
  // The next instance of the object starts from the state `bookmark` names (call
  // state().abort() to end this one). The restore is itself part of the history, so a later
  // bookmark undoes it. Returns the current bookmark, the way back. Throws
  // Error(kInvalidArgument) for a string that is not a bookmark of this object's kept history.
  // The key-value API's data is not part of it (see docs/sql-design.md).
  Task<std::string> onNextSessionRestoreBookmark(std::string bookmark);

  // Completes when every write made so far is durable.
  Future<void> sync();

  // Alarms: epoch milliseconds. One per object; setAlarm replaces it.
  StorageOp<std::optional<std::int64_t>> getAlarm();
  StorageOp<void> setAlarm(std::int64_t epochMillis);
  StorageOp<void> setAlarm(std::chrono::system_clock::time_point when) {
    return setAlarm(std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count());
  }
  StorageOp<void> deleteAlarm();

 private:
  // Made by the runtime for each object (and here, for a transaction).
  friend class detail::ObjectHost;
  explicit Storage(detail::ObjectStore* store, detail::TxnOverlay* txn = nullptr)
      : store_(store), txn_(txn), sql_(store) {}

  // The overlay this Storage's calls write into: its transaction()'s, else that of the
  // transactionSync() running now, else none (the store itself).
  detail::TxnOverlay* txn() const;
  void beginTransactionSync();
  // After fn threw (keep false), or returned: then it may throw itself (a retired flow).
  void endTransactionSync(bool keep);

  // The key checked, and whether the storage engine must be asked for it first (an engine
  // that answers later: storage/engine.h).
  bool mustLoad(std::string_view key);
  Task<void> load(std::vector<std::string> keys, bool alarm = false);
  // Once loaded, or when nothing had to be.
  std::optional<Value> getValue(std::string_view key);
  template <class T>
  Task<std::optional<T>> getLater(std::string key) {
    std::vector<std::string> keys(1, key);
    co_await load(std::move(keys));
    auto v = getValue(key);
    if (!v) co_return std::nullopt;
    co_return std::move(*v).template as<T>();
  }
  Entries getLoaded(std::span<const std::string> keys);
  std::size_t removeLoaded(std::span<const std::string> keys);

  Task<void> runTransaction(TransactionFn fn);

  detail::ObjectStore* store_;
  detail::TxnOverlay* txn_;
  SqlStorage sql_;
};

}  // namespace durable
