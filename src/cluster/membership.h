// A node's membership in a cluster on PostgreSQL (docs/cluster.md): its row in durable_nodes,
// the lease it renews there by PostgreSQL's clock, and the slots it claims.
//
// - Lease: every lease/4 the node sets lease_until = clock_timestamp() + lease. It trusts its
//   own lease until the moment it sent the last successful renewal plus lease minus a margin
//   (its monotonic clock; SlotTable::leaseTrusted), so a pause or a partition stops it from
//   serving before any other node may claim its slots.
// - Claims: a slot's target owner is the live node that rendezvous hashing picks. A node
//   claims its targets whose owner is absent or whose lease expired, bumping the epoch
//   (UPDATE ... epoch = epoch + 1), in one transaction that locks the slot rows in slot order.
//   Every commit of the old owner is fenced by that epoch (storage/postgres_engine.h).
// - A restart of the same node name bumps its incarnation and claims its slots again with new
//   epochs: the old process, if it still runs, is fenced like any other node.
// - A claim or a release is announced (NOTIFY durable_routes, sent with its commit): the other
//   nodes LISTEN and run a round at once, so a released slot is claimed, and a moved slot's
//   route is known, without waiting for the next round. The table stays the authority: a lost
//   notification only costs that wait.
#pragma once

#include "storage/pg_connection.h"
#include "storage/slot_table.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace durable::detail {

struct ClusterOptions {
  std::string url;      // libpq connection string or postgres:// URL
  std::string node;     // this node's name, unique in the cluster
  std::string address;  // where other nodes reach it (host:port)
  std::chrono::milliseconds lease{5000};
  int slots = 4096;     // used when the cluster is created; an existing one keeps its count
  std::string secret;   // node-to-node requests' secret; empty: the one stored in PostgreSQL
};

// Accepted node names: 1-64 of [A-Za-z0-9._-].
bool validNodeName(const std::string& name);

class ClusterMembership {
 public:
  // Connects, creates the schema if needed, registers the node and claims its share of the
  // slots. Throws Error(kUnavailable) when PostgreSQL cannot be reached.
  explicit ClusterMembership(ClusterOptions options);
  ~ClusterMembership();  // stop()s

  const std::shared_ptr<SlotTable>& slots() const { return slots_; }
  const ClusterOptions& options() const { return options_; }

  // Renews the lease and claims slots on a thread of its own; `claimed` runs there with the
  // slots newly claimed after start-up (their alarms must be loaded). `quiet` answers there
  // whether no object of the given slots runs an event or has writes in flight (hand-off
  // waits for that, up to kDrainLimit; none given: it does not wait).
  void start(std::function<void(const std::vector<int>&)> claimed = {},
             std::function<bool(const std::vector<int>&)> quiet = {});
  // Starts leaving the cluster (SIGTERM): the node is marked leaving, so no node targets it any
  // more, and it hands every slot off as to a joining node (drain, then release); it keeps its
  // lease meanwhile. Any thread; slots()->held() reaches 0 once every slot is released.
  void leave();
  // Releases every slot this node holds and ends its lease now, so that others claim at once.
  void stop();

  // Records where other nodes reach this one (when it was not known at construction: a
  // listener on port 0). Before start().
  void advertise(const std::string& address);

  // One renewal and claim round, as the thread does (tests).
  void tick();

 private:
  void renew();
  std::vector<int> claim();
  // Slots held here whose rendezvous target is another live node (one that joined) go to it.
  // In one round they are set draining: they admit no new event, but the events already
  // running finish, commit and answer under the slot's epoch. In a later round, once their
  // objects are quiet (or after the drain limit: what still runs then is ended and fenced),
  // they are dropped here and released in PostgreSQL for the new owner to claim.
  void handOff();
  // NOTIFY durable_routes: this node claimed or released slots (after the commit).
  void announce();
  // The slot's owner by rendezvous hashing over liveNodes_ (not empty).
  const std::string& targetOf(int slot) const;
  std::chrono::milliseconds trustedFor() const;

  ClusterOptions options_;
  std::shared_ptr<SlotTable> slots_;
  std::unique_ptr<PgBlocking> db_;
  std::int64_t incarnation_ = 0;
  // Slots still owned by this name (a previous process's) are claimed from then on: once the
  // previous incarnation's lease has run out, so that it has stopped serving them.
  std::chrono::steady_clock::time_point ownNameFrom_;
  std::vector<std::string> liveNodes_;             // as the last claim() read them
  std::vector<std::pair<int, std::int64_t>> releasing_;  // draining here, to release
  std::chrono::steady_clock::time_point drainUntil_;
  int busyRounds_ = 0;
  bool endedLate_ = false;  // past the drain limit, dropped here; released next round
  std::atomic<bool> leaving_{false};
  bool leavingRecorded_ = false;  // lease thread
  std::function<void(const std::vector<int>&)> claimed_;
  std::function<bool(const std::vector<int>&)> quiet_;
  bool released_ = false;
  std::thread thread_;
  // Waits for other nodes' announcements on a connection of its own and asks for a round.
  void listen();
  std::thread listener_;
  int wake_ = -1;  // an eventfd that ends listen()
};

}  // namespace durable::detail
