#include "base/log.h"
#include "base/utf8.h"
#include "storage/object_store.h"
#include "storage/value_codec.h"

#include <durable/error.h>
#include <durable/storage.h>

#include <algorithm>

namespace durable {

namespace {
void checkCount(std::size_t n, std::string_view what) {
  if (n > kMaxKeysPerCall) {
    throw Error(ErrorCode::kInvalidArgument, std::string(what) + ": at most " + std::to_string(kMaxKeysPerCall) +
                                                 " keys per call (got " + std::to_string(n) + ")");
  }
}
// The key as it may appear in a message: cut short, and always text (a message can end up in
// a JSON error body).
std::string quoteKey(std::string_view key) {
  constexpr std::size_t kShown = 64;
  std::string shown = detail::toWellFormedUtf8(std::string(key.substr(0, kShown)));
  return "\"" + shown + (key.size() > kShown ? "...\"" : "\"");
}

std::string encodeFor(std::string_view key, const Value& value, std::size_t sizeHint = 0) {
  try {
    return detail::encodeSized(value, sizeHint);
  } catch (const Error& e) {
    throw Error(e.code(), "put(): the value for key " + quoteKey(key) + " cannot be stored: " + e.what());
  }
}

// A stored value that does not decode (written by something other than put(), or damaged on
// disk) must not take the object down with it: the error names the key, and the log says
// which object holds it so that an operator can delete or repair it.
//
// Text that is not UTF-8 (put() refuses it now, but builds before 2026-12-04 stored it from
// a URL's raw bytes) is read the way a Worker's TextDecoder reads it, each broken sequence
// as U+FFFD, so that a room poisoned by one such message comes back to life. Only the text
// is repaired, and the log says so; the stored bytes stay as they are until the next put().
Value decodeAt(const detail::ObjectStore& store, std::string_view key, std::string_view encoded) {
  try {
    return Value::decode(encoded);
  } catch (const Error& e) {
    if (auto repaired = detail::decodeRepairingText(encoded)) {
      detail::logWarn("storage: object ", store.id().toString(), ": key ", quoteKey(key),
                      " holds text that is not UTF-8; read with U+FFFD for each broken sequence");
      return std::move(*repaired);
    }
    detail::logError("storage: object ", store.id().toString(), ": key ", quoteKey(key), " cannot be read: ", e.what());
    throw Error(e.code(), "key " + quoteKey(key) + ": " + e.what());
  }
}
}  // namespace

detail::TxnOverlay* Storage::txn() const { return txn_ ? txn_ : store_->syncTxn(); }

bool Storage::mustLoad(std::string_view key) {
  if (!store_->readsMayWait()) return false;
  store_->checkKey(key);
  return store_->needsLoad(key, txn());
}

Task<void> Storage::load(std::vector<std::string> keys, bool alarm) { return store_->load(std::move(keys), alarm); }

std::optional<Value> Storage::getValue(std::string_view key) {
  store_->checkKey(key);
  // The caller gets its own value, which it may change without touching what is stored.
  if (auto cached = store_->takeDecoded(key, txn())) return cached;
  auto v = store_->read(key, txn());
  if (!v) return std::nullopt;
  Value value = decodeAt(*store_, key, *v);
  // Only a value that decoded as it is: a repaired one is logged on every read.
  if (value.type() == Value::Type::kJson && (store_->takenAndNotReturned(key, txn()) || value.encode() == *v)) {
    store_->rememberDecoded(key, txn(), value);
  }
  return value;
}

StorageOp<Entries> Storage::get(std::span<const std::string> keys) {
  checkCount(keys.size(), "get()");
  for (const auto& k : keys) store_->checkKey(k);
  std::vector<std::string> missing;
  for (const auto& k : keys) {
    if (store_->needsLoad(k, txn())) missing.push_back(k);
  }
  if (missing.empty()) return StorageOp<Entries>(getLoaded(keys));
  return StorageOp<Entries>([](Storage* self, std::vector<std::string> missing,
                               std::vector<std::string> keys) -> Task<Entries> {
    co_await self->load(std::move(missing));
    co_return self->getLoaded(keys);
  }(this, std::move(missing), std::vector<std::string>(keys.begin(), keys.end())));
}

Entries Storage::getLoaded(std::span<const std::string> keys) {
  std::vector<const std::string*> sorted;
  sorted.reserve(keys.size());
  for (const auto& k : keys) sorted.push_back(&k);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return *a < *b; });
  sorted.erase(std::unique(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return *a == *b; }), sorted.end());
  Entries out;
  for (const auto* k : sorted) {
    if (auto v = store_->read(*k, txn())) out.emplace_back(*k, decodeAt(*store_, *k, *v));
  }
  return out;
}

StorageOp<void> Storage::put(std::string_view key, Value value) {
  store_->checkWritable();
  store_->checkKey(key);
  // A key read since it was written is encoded now: the get() after this put() can then take
  // the value's tree instead of copying it (ObjectStore::takeDecoded).
  if (!txn() && value.type() == Value::Type::kJson && store_->encodesLater() && !store_->lendsAfterPut(key)) {
    std::size_t bound;
    try {
      bound = detail::checkedEncodedBound(value);
    } catch (const Error& e) {
      throw Error(e.code(), "put(): the value for key " + quoteKey(key) + " cannot be stored: " + e.what());
    }
    // Encoded once, when its batch is committed: consecutive puts of one key in a batch cost
    // one encoding. One that may not fit is encoded now, for the limit's exact error.
    if (store_->fits(key, bound)) {
      store_->writeDecoded(key, std::make_shared<Value>(std::move(value)));
      return {};
    }
  }
  std::string encoded = encodeFor(key, value, store_->encodedSize(key));
  store_->checkValue(key, encoded);
  std::shared_ptr<Value> decoded;
  if (!txn() && value.type() == Value::Type::kJson) decoded = std::make_shared<Value>(std::move(value));
  store_->write(key, std::move(encoded), txn(), std::move(decoded));
  return {};
}

StorageOp<void> Storage::put(std::span<const std::pair<std::string, Value>> entries) {
  store_->checkWritable();
  checkCount(entries.size(), "put()");
  // Validate everything before writing anything: a bad entry changes nothing.
  std::vector<std::string> encoded;
  encoded.reserve(entries.size());
  for (const auto& [k, v] : entries) {
    store_->checkKey(k);
    encoded.push_back(encodeFor(k, v));
    store_->checkValue(k, encoded.back());
  }
  if (auto* overlay = txn()) {
    for (std::size_t i = 0; i < entries.size(); ++i) store_->write(entries[i].first, std::move(encoded[i]), overlay);
    return {};
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> writes;
  writes.reserve(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) writes.emplace_back(entries[i].first, std::move(encoded[i]));
  store_->writeAll(std::move(writes));
  return {};
}

StorageOp<bool> Storage::remove(std::string_view key) {
  store_->checkWritable();
  store_->checkKey(key);
  if (store_->needsLoad(key, txn())) {
    return StorageOp<bool>([](Storage* self, std::string key) -> Task<bool> {
      std::vector<std::string> keys(1, key);
      co_await self->load(std::move(keys));
      co_return self->removeLoaded(std::span<const std::string>(&key, 1)) == 1;
    }(this, std::string(key)));
  }
  bool existed = store_->read(key, txn()).has_value();
  store_->write(key, std::nullopt, txn());
  return StorageOp<bool>(existed);
}

StorageOp<std::size_t> Storage::remove(std::span<const std::string> keys) {
  checkCount(keys.size(), "delete()");
  for (const auto& k : keys) store_->checkKey(k);
  std::vector<std::string> missing;
  for (const auto& k : keys) {
    if (store_->needsLoad(k, txn())) missing.push_back(k);
  }
  if (missing.empty()) return StorageOp<std::size_t>(removeLoaded(keys));
  return StorageOp<std::size_t>([](Storage* self, std::vector<std::string> missing,
                                   std::vector<std::string> keys) -> Task<std::size_t> {
    co_await self->load(std::move(missing));
    co_return self->removeLoaded(keys);
  }(this, std::move(missing), std::vector<std::string>(keys.begin(), keys.end())));
}

std::size_t Storage::removeLoaded(std::span<const std::string> keys) {
  store_->checkWritable();
  std::vector<std::pair<std::string, std::optional<std::string>>> removals;
  for (const auto& k : keys) {
    if (store_->read(k, txn()) && std::none_of(removals.begin(), removals.end(), [&](const auto& r) { return r.first == k; })) {
      removals.emplace_back(k, std::nullopt);
    }
  }
  const std::size_t n = removals.size();
  if (auto* overlay = txn()) {
    for (auto& [k, v] : removals) store_->write(k, std::nullopt, overlay);
  } else if (!removals.empty()) {
    store_->writeAll(std::move(removals));
  }
  return n;
}

// A value that does not decode is left out of list() and logged, rather than failing the
// whole call: list() is how an object reads its state back (a chat history, a queue), and
// one bad entry would otherwise make all the others unreachable for good, which nothing on
// Cloudflare does. get() of that key still throws, naming it. Left-out entries do not count
// against `limit`, so a page is as full as the data allows.
namespace {
// Collects what list() takes, leaving out (and logging) what does not decode.
detail::ObjectStore::Accept collectInto(const detail::ObjectStore& store, Entries& out) {
  return [&store, &out](std::string_view k, std::string_view v) {
    try {
      out.emplace_back(std::string(k), decodeAt(store, k, v));
      return true;
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kInternal) throw;
      return false;
    }
  };
}
}  // namespace

StorageOp<Entries> Storage::list(const ListOptions& options) {
  auto plan = store_->planList(options, txn());
  if (!store_->readsMayWait()) {
    Entries out;
    store_->list(plan, collectInto(*store_, out));
    return StorageOp<Entries>(std::move(out));
  }
  return StorageOp<Entries>([](detail::ObjectStore* store, detail::ObjectStore::ListPlan plan) -> Task<Entries> {
    Entries out;
    co_await store->listLater(std::move(plan), collectInto(*store, out));
    co_return out;
  }(store_, std::move(plan)));
}

StorageOp<void> Storage::deleteAll() {
  store_->checkWritable();
  // Its SQL tables go too; inside a transaction, within its savepoint.
  if (store_->sqliteBacked()) store_->wipeSql();
  store_->removeAll(txn());
  return {};
}

Task<void> Storage::runTransaction(TransactionFn fn) {
  if (txn_) throw Error(ErrorCode::kInvalidArgument, "transaction(): nested transactions are not supported");
  // No other event enters while the transaction waits on its own storage.
  detail::InputGate::Lock lock;
  const std::uint64_t flow = detail::currentContext().flow;
  if (flow != 0) lock = store_->inputGate().lock(flow);
  detail::TxnOverlay overlay;
  Storage txn(store_, &overlay);
  std::exception_ptr error;
  store_->beginSqlSavepoint();
  try {
    co_await fn(txn);
  } catch (...) {
    // Rolled back: nothing of the overlay is applied, and the caller gets what fn threw.
    error = std::current_exception();
  }
  if (!error) {
    try {
      store_->checkWritable();
      store_->apply(std::move(overlay));
    } catch (...) {
      error = std::current_exception();
    }
  }
  store_->endSqlSavepoint(!error);
  lock.release();
  if (error) std::rethrow_exception(error);
}

Future<void> Storage::sync() { return store_->waitDurable(); }

StorageOp<std::optional<std::int64_t>> Storage::getAlarm() {
  if (store_->needsAlarmLoad(txn())) {
    return StorageOp<std::optional<std::int64_t>>([](Storage* self) -> Task<std::optional<std::int64_t>> {
      std::vector<std::string> none;
      co_await self->load(std::move(none), true);
      co_return self->store_->alarm(self->txn());
    }(this));
  }
  return StorageOp<std::optional<std::int64_t>>(store_->alarm(txn()));
}

StorageOp<void> Storage::setAlarm(std::int64_t epochMillis) {
  store_->checkWritable();
  store_->setAlarm(epochMillis, txn());
  return {};
}

StorageOp<void> Storage::deleteAlarm() {
  store_->checkWritable();
  store_->setAlarm(std::nullopt, txn());
  return {};
}

}  // namespace durable
