// ObjectStore's cache entries and their JSON values kept decoded beside their bytes
// (storage/object_store.h, Entry): writes into the cache, a put() whose encoding waits for its
// batch, a get() that copies the tree or takes it from a key that is read, changed and put back,
// and the back-off when a taken tree does not come back.
#include "storage/object_store.h"

#include "storage/value_codec.h"

#include <algorithm>
#include <cassert>
#include <utility>

namespace durable::detail {

std::optional<Value> ObjectStore::takeDecoded(std::string_view key, const TxnOverlay* txn) {
  if (txn && (txn->deleteAll || txn->writes.contains(key))) return std::nullopt;
  auto it = cache_.find(key);
  if (it == cache_.end() || !it->second.decoded) return std::nullopt;
  Entry& e = it->second;
  e.readSinceWrite = true;
  // A copy of a large tree is thousands of allocations on the shard, and its release as many
  // frees. lendOnGet is set only by cacheWrite(), whose tree is the put()'s own and whose bytes
  // are here to fall back on: only writeDecoded()'s trees (encodePending) go to a batch.
  if (e.lendOnGet && !txn) {
    assert(!e.encodePending && e.value && e.decoded.use_count() == 1);
    Value taken = std::move(*e.decoded);
    e.decoded.reset();
    e.lent = true;
    return taken;
  }
  return Value(*e.decoded);
}

void ObjectStore::rememberDecoded(std::string_view key, const TxnOverlay* txn, const Value& value) {
  if (value.type() != Value::Type::kJson) return;
  if (txn && (txn->deleteAll || txn->writes.contains(key))) return;
  if (auto it = cache_.find(key); it != cache_.end() && it->second.value) {
    Entry& e = it->second;
    e.decoded = std::make_shared<Value>(value);
    e.readSinceWrite = true;
    if (std::exchange(e.lent, false)) {
      // A get() took the tree and no put() brought it back (a read between writes: a join's
      // history, a /history request): each miss costs a parse, so the key's next writes leave
      // the tree in the cache, twice as many after each miss in a row.
      e.lendOnGet = false;
      e.lendPenalty = static_cast<std::uint8_t>(std::min(2 * e.lendPenalty + 1, 63));
      e.lendSkip = e.lendPenalty;
    }
  }
}

bool ObjectStore::lendsAfterPut(std::string_view key) const {
  auto it = cache_.find(key);
  return it != cache_.end() && it->second.readSinceWrite && it->second.lendSkip == 0;
}

bool ObjectStore::takenAndNotReturned(std::string_view key, const TxnOverlay* txn) const {
  if (txn && (txn->deleteAll || txn->writes.contains(key))) return false;
  auto it = cache_.find(key);
  return it != cache_.end() && it->second.lent && it->second.value;
}

std::size_t ObjectStore::encodedSize(std::string_view key) const {
  auto it = cache_.find(key);
  return it != cache_.end() && it->second.value ? it->second.value->size() : 0;
}

void ObjectStore::retire(Entry& e) {
  if (e.decoded) retired_.push_back(std::move(e.decoded));
}

void ObjectStore::noteWrite(Entry& e, bool canLend) {
  if (e.lent) e.lendPenalty /= 2;  // written since its tree was taken: most likely brought back
  const bool read = std::exchange(e.readSinceWrite, false);
  e.lendOnGet = canLend && read && e.lendSkip == 0;
  if (read && e.lendSkip > 0) --e.lendSkip;
  e.lent = false;
}

void ObjectStore::writeDecoded(std::string_view key, std::shared_ptr<Value> decoded) {
  // A SQLite-backed object's database must be fresh for a write, as for write().
  if (sqlConfig_) sqlForStatement();
  auto [it, inserted] = cache_.try_emplace(std::string(key));
  retire(it->second);
  noteWrite(it->second, false);
  it->second.value.reset();
  it->second.encodePending = true;
  it->second.decoded = std::move(decoded);
  it->second.sqlPending = sqlConfig_.has_value();
  sqlKvPending_ = sqlKvPending_ || sqlConfig_.has_value();
  markOpen(it->first, it->second);
  touch();
}

const std::optional<std::string>& ObjectStore::encoded(Entry& e) {
  if (e.encodePending) {
    // Its text was checked when it was put, so this cannot throw.
    detail::encodeChecked(*e.decoded, e.value.emplace());
    e.encodePending = false;
  }
  return e.value;
}

void ObjectStore::cacheWrite(std::string_view key, std::optional<std::string> encoded,
                             std::shared_ptr<Value> decoded, bool sqlPending) {
  auto [it, inserted] = cache_.try_emplace(std::string(key));
  retire(it->second);
  noteWrite(it->second, decoded != nullptr);
  it->second.value = std::move(encoded);
  it->second.encodePending = false;
  it->second.decoded = decoded && decoded->type() == Value::Type::kJson ? std::move(decoded) : nullptr;
  it->second.sqlPending = sqlPending;
  sqlKvPending_ = sqlKvPending_ || sqlPending;
  markOpen(it->first, it->second);
  touch();
}

}  // namespace durable::detail
