#include "cluster/membership.h"

#include "base/log.h"
#include "storage/postgres_engine.h"

#include <durable/error.h>

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <optional>

namespace durable::detail {

namespace {

constexpr const char* kRoutesChannel = "durable_routes";

// Rendezvous hashing: every node computes the same owner for a slot from the same live set,
// and a node joining or leaving moves only the slots it wins or held.
std::uint64_t score(const std::string& node, int slot) {
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  for (unsigned char c : node) mix(c);
  for (int i = 0; i < 4; ++i) mix(static_cast<unsigned char>((static_cast<unsigned>(slot) >> (8 * i)) & 0xff));
  // FNV's low bits mix poorly for short inputs: finish with a multiply-xorshift.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

// The membership's connection. A claim round cut off mid-transaction must not hold slot rows
// locked past the lease, and a claim acknowledged must survive a crash of PostgreSQL (an epoch
// that went back would let a stale owner's commit pass the fence).
std::unique_ptr<PgBlocking> connectFor(const ClusterOptions& options) {
  auto db = std::make_unique<PgBlocking>(options.url);
  db->run("SET idle_in_transaction_session_timeout = " +
          std::to_string(std::max<std::int64_t>(options.lease.count() / 2, 100)));
  db->run("SET synchronous_commit = on");
  return db;
}

}  // namespace

bool validNodeName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

ClusterMembership::ClusterMembership(ClusterOptions options) : options_(std::move(options)) {
  if (!validNodeName(options_.node)) {
    throw Error(ErrorCode::kInvalidArgument,
                "cluster node name \"" + options_.node + "\" is not 1-64 of the characters A-Z a-z 0-9 . _ -");
  }
  db_ = connectFor(options_);
  const auto record = ensurePostgresSchema(*db_, options_.slots);
  const int slots = record.slots;
  slots_ = std::make_shared<SlotTable>(slots);
  // A secret from the config (every node's the same) keeps node-to-node requests out of reach of
  // whoever can only read the database; without one, the cluster's own.
  slots_->secret = options_.secret.empty() ? record.secret : options_.secret;
  slots_->lease = options_.lease;

  const auto sentAt = std::chrono::steady_clock::now();
  // A previous process under this name may still run (a restart that did not wait for its
  // end): what is left of its lease, by PostgreSQL's clock, is read under the row's lock, so
  // that a renewal of it in flight is waited for and counted.
  std::chrono::milliseconds previousLeft{0};
  PgResult r;
  db_->script("BEGIN");
  try {
    auto old = db_->run(
        "SELECT greatest(0, ceil(extract(epoch FROM lease_until - clock_timestamp()) * 1000))::int8 FROM durable_nodes "
        "WHERE name = $1::text FOR UPDATE",
        PgParams().bytes(options_.node));
    if (PQntuples(old.get()) == 1) previousLeft = std::chrono::milliseconds(pgInt8(old.get(), 0, 0));
    r = db_->run(
        "INSERT INTO durable_nodes(name, address, lease_until) VALUES($1::text, $2::text, clock_timestamp() + "
        "$3::int8 * interval '1 millisecond') ON CONFLICT (name) DO UPDATE SET address = excluded.address, "
        "lease_until = excluded.lease_until, incarnation = durable_nodes.incarnation + 1, leaving = false "
        "RETURNING incarnation",
        PgParams().bytes(options_.node).bytes(options_.address).int8(options_.lease.count()));
    db_->script("COMMIT");
  } catch (...) {
    PQclear(PQexec(db_->raw(), "ROLLBACK"));
    throw;
  }
  incarnation_ = pgInt8(r.get(), 0, 0);
  ownNameFrom_ = sentAt + previousLeft;
  if (previousLeft.count() > 0) {
    logWarn("cluster: node ", options_.node, " was still registered by a process whose lease runs ",
            previousLeft.count(), " ms more: its slots are claimed once it has run out");
  }
  slots_->renewed(sentAt, trustedFor());
  const auto claimed = claim();
  logInfo("cluster: node ", options_.node, " (incarnation ", incarnation_, ") holds ", claimed.size(), " of ", slots,
          " slots");
}

ClusterMembership::~ClusterMembership() { stop(); }

std::chrono::milliseconds ClusterMembership::trustedFor() const {
  // The margin covers the two clocks' rates differing and the renewal's own latency.
  const auto margin = std::max(options_.lease / 10, std::chrono::milliseconds(100));
  return options_.lease - margin;
}

void ClusterMembership::start(std::function<void(const std::vector<int>&)> claimed,
                              std::function<bool(const std::vector<int>&)> quiet) {
  claimed_ = std::move(claimed);
  quiet_ = std::move(quiet);
  wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_ >= 0) listener_ = std::thread([this] { listen(); });
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "cluster-lease");
    // A round at once: the server took a while to start since the constructor's renewal.
    do {
      try {
        tick();
      } catch (const std::exception& e) {
        logWarn("cluster: lease renewal failed: ", e.what());
      }
    } while (slots_->awaitRefresh(options_.lease / 4));
  });
}

void ClusterMembership::listen() {
  pthread_setname_np(pthread_self(), "cluster-notify");
  for (int failures = 0;; ++failures) {
    // PgBlocking: a connect that cannot finish gives up after its timeout (2 s), so stop()
    // waits at most that long.
    std::unique_ptr<PgBlocking> db;
    try {
      db = std::make_unique<PgBlocking>(options_.url);
      db->script(std::string("LISTEN ") + kRoutesChannel);
      failures = 0;
      // Announcements sent while this node did not listen: the round reads them all.
      slots_->requestRefresh();
    } catch (const std::exception& e) {
      if (failures == 0) logWarn("cluster: cannot listen for other nodes' slot changes (trying again): ", e.what());
      db.reset();
    }
    PGconn* conn = db ? db->raw() : nullptr;
    while (conn && PQstatus(conn) == CONNECTION_OK) {
      pollfd fds[2] = {{PQsocket(conn), POLLIN, 0}, {wake_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
      if (fds[1].revents) break;
      if (!fds[0].revents) continue;
      if (!PQconsumeInput(conn)) break;
      bool other = false;
      while (PGnotify* n = PQnotifies(conn)) {
        other = other || options_.node != n->extra;
        PQfreemem(n);
      }
      if (other) slots_->requestRefresh();
    }
    db.reset();
    // Stopped, or the connection failed: try again after a pause that stop() can cut short.
    pollfd stop = {wake_, POLLIN, 0};
    const int pause = std::min(100 << std::min(failures, 5), 2000);
    if (::poll(&stop, 1, pause) > 0) return;
  }
}

void ClusterMembership::advertise(const std::string& address) {
  options_.address = address;
  db_->run("UPDATE durable_nodes SET address = $2::text WHERE name = $1::text AND incarnation = $3::int8",
           PgParams().bytes(options_.node).bytes(address).int8(incarnation_));
}

void ClusterMembership::tick() {
  if (!db_ || !db_->ok()) db_ = connectFor(options_);
  renew();
  if (leaving_ && !leavingRecorded_) {
    db_->run("UPDATE durable_nodes SET leaving = true WHERE name = $1::text AND incarnation = $2::int8",
             PgParams().bytes(options_.node).int8(incarnation_));
    leavingRecorded_ = true;
    announce();  // the others stop targeting this node at once
  }
  auto claimed = claim();
  if (!claimed.empty() && claimed_) claimed_(claimed);
  handOff();
}

void ClusterMembership::handOff() {
  if (!releasing_.empty()) {
    std::vector<int> slots;
    std::vector<std::int64_t> epochs;
    for (const auto& [slot, epoch] : releasing_) {
      slots.push_back(slot);
      epochs.push_back(epoch);
    }
    const bool quiet = !quiet_ || quiet_(slots);
    if (!quiet && std::chrono::steady_clock::now() < drainUntil_) {
      ++busyRounds_;
      return;  // next round; the lease is renewed meanwhile
    }
    if (!quiet && !endedLate_) {
      // Dropped here first: the shards end what still runs, and the release waits a round for
      // that, so that no event here overlaps the new owner's.
      logWarn("cluster: node ", options_.node, " hands slots over with events still running after ",
              slots_->handOffLimit().count(), " ms: they are ended");
      for (const auto& [slot, epoch] : releasing_) slots_->dropIfAt(slot, epoch);
      endedLate_ = true;
      return;
    }
    db_->script("BEGIN");
    try {
      db_->run("SELECT set_config('lock_timeout', $1::text, true)",
               PgParams().bytes(std::to_string(std::max<std::int64_t>(options_.lease.count() / 4, 1)) + "ms"));
      db_->run(
          "UPDATE durable_slots s SET owner = NULL FROM unnest($2::int[], $3::bigint[]) AS r(slot, epoch) "
          "WHERE s.slot = r.slot AND s.epoch = r.epoch AND s.owner = $1::text",
          PgParams().bytes(options_.node).text(pgArray(slots)).text(pgArray(epochs)));
      db_->script("COMMIT");
    } catch (...) {
      PQclear(PQexec(db_->raw(), "ROLLBACK"));
      throw;  // kept in releasing_: tried again next round
    }
    // Dropped here once released: until then the slots stay draining, and a request waiting for
    // the hand-off goes on only when another node can claim them.
    for (const auto& [slot, epoch] : releasing_) slots_->dropIfAt(slot, epoch);
    endedLate_ = false;
    logInfo("cluster: node ", options_.node, " handed ", releasing_.size(), " slots to ",
            leaving_ ? "the other nodes, leaving (" : "the nodes that joined (", busyRounds_,
            " rounds waiting for the events running there)");
    busyRounds_ = 0;
    announce();
    releasing_.clear();
    slots_->requestRefresh();  // the new owners' claims show in the next read of the routes
  }
  const bool leaving = leavingRecorded_;
  if (!leaving && std::find(liveNodes_.begin(), liveNodes_.end(), options_.node) == liveNodes_.end()) return;
  for (int s = 0; s < slots_->count(); ++s) {
    const auto epoch = slots_->epoch(s);
    if (epoch == 0 || (!leaving && targetOf(s) == options_.node)) continue;
    releasing_.emplace_back(s, epoch);
    slots_->drain(s);
  }
  if (!releasing_.empty()) drainUntil_ = std::chrono::steady_clock::now() + slots_->handOffLimit();
}

const std::string& ClusterMembership::targetOf(int slot) const {
  const std::string* best = &liveNodes_.front();
  std::uint64_t bestScore = score(*best, slot);
  for (const auto& n : liveNodes_) {
    const auto sc = score(n, slot);
    if (sc > bestScore) {
      best = &n;
      bestScore = sc;
    }
  }
  return *best;
}

void ClusterMembership::renew() {
  const auto sentAt = std::chrono::steady_clock::now();
  if (!slots_->leaseTrusted(sentAt)) {
    // The lease may have lapsed (a pause, a partition, PostgreSQL away): any slot may have
    // been claimed meanwhile. Forget them all; claim() takes back, at new epochs, those still
    // ours, and objects loaded under the old epochs load again (ObjectHost::fencedOut).
    for (int s = 0; s < slots_->count(); ++s) slots_->drop(s);
  }
  // Whether the lease was still running when this renewal reached PostgreSQL, read in the same
  // statement: a renewal sent in time may still arrive late.
  auto r = db_->run(
      "WITH old AS (SELECT lease_until > clock_timestamp() AS live FROM durable_nodes WHERE name = $1::text AND "
      "incarnation = $3::int8 FOR UPDATE) "
      "UPDATE durable_nodes n SET lease_until = clock_timestamp() + $2::int8 * interval '1 millisecond' FROM old "
      "WHERE n.name = $1::text AND n.incarnation = $3::int8 RETURNING old.live",
      PgParams().bytes(options_.node).int8(options_.lease.count()).int8(incarnation_));
  if (PQntuples(r.get()) == 0) {
    // Another process registered under this name: it claims our slots with new epochs.
    for (int s = 0; s < slots_->count(); ++s) slots_->drop(s);
    throw Error(ErrorCode::kUnavailable, "node " + options_.node + " was registered again by another process");
  }
  if (pgBytes(r.get(), 0, 0)[0] == 0) {
    // It had run out: any slot may have been claimed meanwhile. Forgotten before the lease is
    // trusted again, so no event runs at an epoch another node may have replaced.
    for (int s = 0; s < slots_->count(); ++s) slots_->drop(s);
  }
  slots_->renewed(sentAt, trustedFor());
}

std::vector<int> ClusterMembership::claim() {
  // Every slot with its owner's standing, in one read: slots taken from this node while it
  // did not look (claimed by a node that found its lease expired) are forgotten, so they can
  // be claimed back; slots whose owner is alive are left alone without a write.
  auto all = db_->run(
      "SELECT s.slot::int8, s.epoch, s.owner = $1::text, s.owner IS NULL OR s.owner = $1::text OR n.name IS NULL, "
      "n.address FROM durable_slots s LEFT JOIN durable_nodes n ON n.name = s.owner AND n.lease_until > "
      "clock_timestamp()",
      PgParams().bytes(options_.node));
  std::vector<std::int64_t> mine(static_cast<std::size_t>(slots_->count()), 0);
  std::vector<bool> free(static_cast<std::size_t>(slots_->count()), false);
  std::vector<bool> leftByName(static_cast<std::size_t>(slots_->count()), false);
  // Slots this node is handing off (dropped already when their events outran the drain): not
  // to be taken back.
  std::vector<bool> releasing(static_cast<std::size_t>(slots_->count()), false);
  for (const auto& [slot, epoch] : releasing_) releasing[static_cast<std::size_t>(slot)] = true;
  std::vector<std::optional<SlotTable::Route>> routes(static_cast<std::size_t>(slots_->count()));
  for (int i = 0; i < PQntuples(all.get()); ++i) {
    const auto slot = pgInt8(all.get(), i, 0);
    if (slot < 0 || slot >= slots_->count()) continue;
    const auto at = static_cast<std::size_t>(slot);
    // Binary booleans are one byte; a NULL owner makes the comparison NULL.
    const bool ownName = !pgNull(all.get(), i, 2) && pgBytes(all.get(), i, 2)[0];
    if (ownName) mine[at] = pgInt8(all.get(), i, 1);
    free[at] = pgBytes(all.get(), i, 3)[0] != 0;
    // Owned by this name but not held here: a previous process's, left alone while its lease
    // may still run (it serves reads from its caches until it learns otherwise).
    if (ownName && slots_->epoch(static_cast<int>(slot)) == 0) {
      if (std::chrono::steady_clock::now() < ownNameFrom_ || releasing[at]) free[at] = false;
      leftByName[at] = !releasing[at];
    }
    if (!pgNull(all.get(), i, 4)) {
      routes[at] = SlotTable::Route{std::string(pgBytes(all.get(), i, 4)), pgInt8(all.get(), i, 1)};
    }
  }
  for (int s = 0; s < slots_->count(); ++s) {
    const auto held = slots_->epoch(s);
    if (held != 0 && held != mine[static_cast<std::size_t>(s)]) slots_->drop(s);
  }

  // The nodes slots may go to: live, and not leaving.
  auto live = db_->run(
      "SELECT name FROM durable_nodes WHERE lease_until > clock_timestamp() AND NOT leaving ORDER BY name");
  liveNodes_.clear();
  for (int i = 0; i < PQntuples(live.get()); ++i) liveNodes_.emplace_back(pgBytes(live.get(), i, 0));
  if (std::find(liveNodes_.begin(), liveNodes_.end(), options_.node) == liveNodes_.end()) {
    slots_->setRoutes(std::move(routes));
    return {};
  }
  std::vector<int> wanted;
  for (int s = 0; s < slots_->count(); ++s) {
    if (slots_->epoch(s) != 0 || !free[static_cast<std::size_t>(s)]) continue;
    // A slot this name was left holding is taken whatever its target: the other nodes see it
    // owned by a live node and would never claim it. The next hand-off passes it on.
    if (targetOf(s) == options_.node || leftByName[static_cast<std::size_t>(s)]) wanted.push_back(s);
  }
  if (wanted.empty()) {
    slots_->setRoutes(std::move(routes));
    return {};
  }
  db_->script("BEGIN");
  std::vector<int> claimed;
  try {
    // A commit stalled while holding a slot's row (its node paused mid-send) must not stall
    // the lease thread past the next renewal.
    db_->run("SELECT set_config('lock_timeout', $1::text, true)",
             PgParams().bytes(std::to_string(std::max<std::int64_t>(options_.lease.count() / 4, 1)) + "ms"));
    auto me = db_->run(
        "SELECT 1 FROM durable_nodes WHERE name = $1::text AND incarnation = $2::int8 AND lease_until > "
        "clock_timestamp() FOR SHARE",
        PgParams().bytes(options_.node).int8(incarnation_));
    if (PQntuples(me.get()) == 0) {
      db_->script("ROLLBACK");
      return {};
    }
    // A slot whose row a commit still holds (a transaction that passed its fence and is stuck
    // on the server: its node paused, or cut off) is skipped, not waited for: it is claimed at a
    // later round, and the others now.
    auto lockedRows = db_->run(
        "SELECT slot::int8 FROM durable_slots WHERE slot = ANY($1::int[]) ORDER BY slot FOR UPDATE SKIP LOCKED",
        PgParams().text(pgArray(wanted)));
    std::vector<int> lockable;
    for (int i = 0; i < PQntuples(lockedRows.get()); ++i) {
      lockable.push_back(static_cast<int>(pgInt8(lockedRows.get(), i, 0)));
    }
    const auto list = pgArray(lockable);
    auto r = db_->run(
        "UPDATE durable_slots s SET owner = $2::text, epoch = s.epoch + 1 WHERE s.slot = ANY($1::int[]) AND "
        "(s.owner IS NULL OR s.owner = $2::text OR NOT EXISTS (SELECT 1 FROM durable_nodes n WHERE n.name = s.owner "
        "AND n.lease_until > clock_timestamp())) RETURNING s.slot::int8, s.epoch",
        PgParams().text(list).bytes(options_.node));
    db_->script("COMMIT");
    if (PQntuples(r.get()) > 0) announce();
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      const int slot = static_cast<int>(pgInt8(r.get(), i, 0));
      slots_->hold(slot, pgInt8(r.get(), i, 1));
      routes[static_cast<std::size_t>(slot)] = SlotTable::Route{options_.address, pgInt8(r.get(), i, 1)};
      claimed.push_back(slot);
    }
    slots_->setRoutes(std::move(routes));
  } catch (...) {
    PQclear(PQexec(db_->raw(), "ROLLBACK"));
    throw;
  }
  return claimed;
}

void ClusterMembership::announce() {
  try {
    db_->run("SELECT pg_notify($1::text, $2::text)", PgParams().bytes(kRoutesChannel).bytes(options_.node));
  } catch (const std::exception& e) {
    logWarn("cluster: could not announce a change of slots (others see it at their next round): ", e.what());
  }
}

void ClusterMembership::leave() {
  leaving_ = true;
  slots_->requestRefresh();  // a round now: the lease thread records it and starts the hand-off
}

void ClusterMembership::stop() {
  slots_->stopWaiting();
  if (thread_.joinable()) thread_.join();
  if (wake_ >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_, &one, sizeof one);
    if (listener_.joinable()) listener_.join();
    ::close(wake_);
    wake_ = -1;
  }
  if (std::exchange(released_, true)) return;
  try {
    if (!db_ || !db_->ok()) db_ = connectFor(options_);
    db_->run(
        "UPDATE durable_slots SET owner = NULL WHERE owner = $1::text AND EXISTS (SELECT 1 FROM durable_nodes WHERE "
        "name = $1::text AND incarnation = $2::int8)",
        PgParams().bytes(options_.node).int8(incarnation_));
    db_->run("UPDATE durable_nodes SET lease_until = clock_timestamp() WHERE name = $1::text AND incarnation = $2::int8",
             PgParams().bytes(options_.node).int8(incarnation_));
    for (int s = 0; s < slots_->count(); ++s) slots_->drop(s);
    announce();
  } catch (const std::exception& e) {
    logWarn("cluster: could not release the slots of ", options_.node, ": ", e.what(),
            "; other nodes claim them when its lease expires");
  }
}

}  // namespace durable::detail
