// How long a node takes to claim a dead node's slots and load their alarms: the slots of a
// cluster of 1,365 slots (a third of 4,096: what each of three nodes holds), all of them held
// by a node whose lease has run out, with 100,000 alarms pending in them. A new node then
// registers and claims every one (ClusterMembership's constructor: the schema check, its
// registration, the claim transaction), and its one partition reads their alarms
// (PostgresEngine::loadAlarms, as a shard does when it starts or claims).
//
//   build/claim_bench [SLOTS] [ALARMS]     (defaults 1365 and 100000)
//
// PostgreSQL is a fresh server in a temporary directory (tests/support/postgres_server.h).
#include "cluster/membership.h"
#include "storage/pg_connection.h"
#include "storage/postgres_engine.h"
#include "support/postgres_server.h"

#include <durable/task.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>

using namespace std::chrono;

int main(int argc, char** argv) {
  const int slots = argc > 1 ? std::stoi(argv[1]) : 1365;
  const int alarms = argc > 2 ? std::stoi(argv[2]) : 100000;
  durable_test::PostgresServer pg;
  const std::string url = pg.connectionString();
  durable::detail::ClusterOptions dead;
  dead.url = url;
  dead.node = "dead";
  dead.lease = milliseconds(200);
  dead.slots = slots;
  // Leaked on purpose: a dead node neither renews nor releases (its destructor would).
  new durable::detail::ClusterMembership(dead);
  durable::detail::PgBlocking db(url);
  db.run(
      "INSERT INTO durable_alarms(ns, obj, time, slot) SELECT 1, sha256(i::text::bytea), "
      "(extract(epoch FROM now()) * 1000)::int8 + 3600000 + i, i % $1::int8 FROM generate_series(1, $2::int8) AS i",
      durable::detail::PgParams().int8(slots).int8(alarms));
  db.run("ANALYZE durable_alarms");
  std::this_thread::sleep_for(milliseconds(300));  // its 200 ms lease is over by PostgreSQL's clock

  durable::detail::ClusterOptions heir;
  heir.url = url;
  heir.node = "heir";
  heir.slots = slots;
  const auto t0 = steady_clock::now();
  durable::detail::ClusterMembership claimer(heir);
  const auto t1 = steady_clock::now();
  boost::asio::io_context shard;
  durable::detail::PostgresEngine engine(0, 1, url, "heir", claimer.slots(), shard);
  // As a serving node reads them after a claim: pipelined on the shard's loop (readAlarms).
  std::size_t loaded = 0;
  bool done = false;
  durable::spawn(durable::detail::answerOf(engine.readAlarms()),
                 std::function<void(durable::Result<std::vector<durable::detail::StoredAlarm>>)>(
                     [&](durable::Result<std::vector<durable::detail::StoredAlarm>> r) {
                       if (r.ok()) loaded = r.value().size();
                       done = true;
                     }));
  while (!done) shard.run_one();
  const auto t2 = steady_clock::now();
  std::printf("slots %d, alarms %d: claimed %d slots in %.1f ms; loaded %zu alarms in %.1f ms; total %.1f ms\n",
              slots, alarms, claimer.slots()->held(), duration<double, std::milli>(t1 - t0).count(), loaded,
              duration<double, std::milli>(t2 - t1).count(), duration<double, std::milli>(t2 - t0).count());
  return claimer.slots()->held() == slots && loaded == static_cast<std::size_t>(alarms) ? 0 : 1;
}
