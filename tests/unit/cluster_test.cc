// Cluster mode's ownership on a real PostgreSQL (cluster/membership.h, storage/postgres_engine.h):
// slots claimed with epochs, every commit fenced by them in its own transaction, a node that
// lost a slot or whose lease may have lapsed refusing to serve, and claims ordered after the
// commits that checked the old epoch.
#include <durable/error.h>
#include <durable/namespace.h>
#include <durable/object.h>
#include <durable/testing.h>
#include <durable/timer.h>
#include <durable/value.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cluster/membership.h"
#include "storage/pg_connection.h"
#include "storage/slot_table.h"
#include "support/postgres_server.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include <signal.h>
#include <unistd.h>
#include <sys/socket.h>
#include <poll.h>
#include <netinet/in.h>
#include <arpa/inet.h>

namespace {

using durable::detail::ClusterMembership;
using durable::detail::ClusterOptions;
using durable::detail::PgBlocking;
using durable::detail::PgParams;
using durable_test::PostgresServer;
using namespace std::chrono_literals;

class Tally : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<durable::Response> fetch(durable::Request request) override {
    auto n = (co_await storage().get<std::int64_t>("n")).value_or(0);
    if (request.url().pathname() == "/add") {
      ++n;
      co_await storage().put("n", n);
      co_await storage().put("copy", n);
    }
    co_return durable::Response(std::to_string(n));
  }
};

// Sets its alarm `ms` ahead on /set?ms=; its alarm keeps the run's retryCount.
class Waker : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<durable::Response> fetch(durable::Request request) override {
    if (request.url().pathname() == "/set") {
      co_await storage().setAlarm(durable::now() + std::stoll(request.url().searchParams().get("ms").value_or("0")));
      co_return durable::Response("set");
    }
    auto fired = (co_await storage().get<std::int64_t>("fired")).value_or(0);
    auto retry = (co_await storage().get<std::int64_t>("retry")).value_or(-1);
    co_return durable::Response(std::to_string(fired) + "/" + std::to_string(retry));
  }
  durable::Task<void> alarm(durable::AlarmInfo info) override {
    auto fired = (co_await storage().get<std::int64_t>("fired")).value_or(0);
    co_await storage().put("fired", fired + 1);
    co_await storage().put("retry", static_cast<std::int64_t>(info.retryCount));
  }
};

// One row of durable_kv, read by a connection of its own: what PostgreSQL holds.
std::optional<std::int64_t> stored(const std::string& url, const durable::ObjectId& id, const std::string& key) {
  PgBlocking db(url);
  auto r = db.run("SELECT value FROM durable_kv WHERE obj = $1::bytea AND key = $2::bytea",
                  PgParams()
                      .bytes(std::string_view(reinterpret_cast<const char*>(id.raw().data()), id.raw().size()))
                      .bytes(key));
  if (PQntuples(r.get()) == 0) return std::nullopt;
  auto v = durable::Value::decode(std::string(durable::detail::pgBytes(r.get(), 0, 0)));
  return v.as<std::int64_t>();
}

int slotOf(const durable::ObjectId& id) { return durable::detail::SlotTable(4096).slotOf(id.raw()); }

std::int64_t one(const std::string& url, const std::string& sql) {
  PgBlocking db(url);
  auto r = db.run(sql);
  return durable::detail::pgInt8(r.get(), 0, 0);
}

// The error a call fails with, or nullopt when it answered.
std::optional<durable::Error> failure(durable::testing::Env& env, const durable::Stub& stub, const std::string& url) {
  try {
    env.fetch(stub, url);
  } catch (const durable::Error& e) {
    return e;
  }
  return std::nullopt;
}

durable::testing::EnvOptions onPostgres(const std::string& url, std::int64_t leaseMs = 5000) {
  durable::testing::EnvOptions o;
  o.storageEngine = "postgres";
  o.postgresUrl = url;
  o.clusterLeaseMs = leaseMs;
  return o;
}

TEST(ClusterFence, ABatchForASlotClaimedElsewhereWritesNothingAndTheSlotIsTakenBack) {
  const auto url = PostgresServer::shared().createDatabase();
  durable::testing::Env env(onPostgres(url, 800));
  const auto& ns = env.exportClass<Tally>("TALLY");
  const auto a = ns.getByName("a");
  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "1");
  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "2");

  // Another node, alive, claims a's slot, as it would after this node's lease expired.
  const int slot = slotOf(a.id());
  PgBlocking db(url);
  db.run("INSERT INTO durable_nodes(name, lease_until) VALUES('other', clock_timestamp() + interval '1 hour')");
  db.run("UPDATE durable_slots SET owner = 'other', epoch = epoch + 1 WHERE slot = $1::int8", PgParams().int8(slot));
  const auto claimedAt = one(url, "SELECT epoch FROM durable_slots WHERE slot = " + std::to_string(slot));

  auto refused = failure(env, a, "http://do/add");
  ASSERT_TRUE(refused.has_value()) << "a write under a lost slot's epoch was acknowledged";
  EXPECT_EQ(refused->code(), durable::ErrorCode::kUnavailable) << refused->what();
  EXPECT_TRUE(refused->retryable()) << refused->what();
  // Nothing of the fenced batch reached PostgreSQL: neither key moved.
  EXPECT_EQ(stored(url, a.id(), "n"), 2);
  EXPECT_EQ(stored(url, a.id(), "copy"), 2);

  EXPECT_TRUE(failure(env, a, "http://do/").has_value()) << "served a read of a slot another node holds";

  // "other" dies: this node's next lease round claims the slot back at a newer epoch, and the
  // object reloads what PostgreSQL holds.
  db.run("UPDATE durable_nodes SET lease_until = clock_timestamp() WHERE name = 'other'");
  std::optional<std::string> answer;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!answer && std::chrono::steady_clock::now() < deadline) {
    try {
      answer = env.fetch(a, "http://do/").text();
    } catch (const durable::Error&) {
      std::this_thread::sleep_for(50ms);
    }
  }
  ASSERT_EQ(answer, "2");
  EXPECT_GT(one(url, "SELECT epoch FROM durable_slots WHERE slot = " + std::to_string(slot)), claimedAt);
  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "3");
  EXPECT_EQ(stored(url, a.id(), "n"), 3);
}

// An alarm that comes due on a node that still believes it holds the slot (another node
// claimed it since this one's last lease round) is neither counted nor run there: the count
// is fenced like a commit. When the slot comes back, its first run here is not a retry.
TEST(ClusterFence, AnAlarmDueUnderALostSlotIsNotCountedAsARun) {
  const auto url = PostgresServer::shared().createDatabase();
  durable::testing::Env env(onPostgres(url, 5000));
  const auto& ns = env.exportClass<Waker>("WAKER");
  const auto w = ns.getByName("w");
  ASSERT_EQ(env.fetch(w, "http://do/set?ms=800").text(), "set");
  const std::string me(durable::detail::pgBytes(PgBlocking(url).run("SELECT name FROM durable_nodes").get(), 0, 0));
  // This node's lease rounds wait on its own row, held here, so it does not learn of the claim.
  PgBlocking hold(url);
  hold.script("BEGIN");
  hold.run("SELECT 1 FROM durable_nodes WHERE name = $1::text FOR UPDATE", PgParams().bytes(me));
  const auto holder = durable::detail::pgInt8(hold.run("SELECT pg_backend_pid()::int8").get(), 0, 0);
  PgBlocking db(url);
  for (const auto until = std::chrono::steady_clock::now() + 3s;;) {
    db.run("SELECT pg_notify('durable_routes', 'the test')");  // a round at once
    auto r = db.run("SELECT count(*)::int8 FROM pg_stat_activity WHERE " + std::to_string(holder) +
                    " = ANY(pg_blocking_pids(pid))");
    if (durable::detail::pgInt8(r.get(), 0, 0) > 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "the lease round did not wait on the node's row";
    std::this_thread::sleep_for(20ms);
  }
  const int slot = slotOf(w.id());
  db.run("INSERT INTO durable_nodes(name, lease_until) VALUES('other', clock_timestamp() + interval '1 hour')");
  db.run("UPDATE durable_slots SET owner = 'other', epoch = epoch + 1 WHERE slot = $1::int8", PgParams().int8(slot));
  // Past the alarm's time.
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(one(url, "SELECT count(*)::int8 FROM durable_alarms"), 1) << "the alarm was deleted by a node without its slot";
  EXPECT_EQ(one(url, "SELECT runs::int8 FROM durable_alarms"), 0) << "a node without the slot counted a run";
  EXPECT_EQ(stored(url, w.id(), "fired"), std::nullopt);

  hold.script("ROLLBACK");
  db.run("UPDATE durable_nodes SET lease_until = clock_timestamp() WHERE name = 'other'");
  std::string seen;
  for (const auto deadline = std::chrono::steady_clock::now() + 8s; std::chrono::steady_clock::now() < deadline;) {
    try {
      seen = env.fetch(w, "http://do/").text();
    } catch (const durable::Error&) {
    }
    if (seen == "1/0") break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(seen, "1/0") << "fired/retryCount once the slot came back";
  EXPECT_EQ(one(url, "SELECT count(*)::int8 FROM durable_alarms"), 0);
}

// A batch the fence refuses loses only the slot another node took: the other objects of the
// batch fail with it (one transaction), but their slots stay held and they answer again at
// once, without waiting for a lease round to claim them back.
TEST(ClusterFence, AFenceRefusalForgetsOnlyTheSlotThatMoved) {
  const auto url = PostgresServer::shared().createDatabase();
  durable::testing::Env env(onPostgres(url, 5000));
  const auto& ns = env.exportClass<Tally>("TALLY");
  const auto a = ns.getByName("a");
  const auto b = ns.getByName("b");
  const auto c = ns.getByName("c");
  ASSERT_EQ(std::set<int>({slotOf(a.id()), slotOf(b.id()), slotOf(c.id())}).size(), 3u);
  for (const auto* s : {&a, &b, &c}) ASSERT_EQ(env.fetch(*s, "http://do/add").text(), "1");
  // c's commit waits on its row, held here; a's and b's, made meanwhile, queue behind it and
  // go to PostgreSQL as one batch.
  PgBlocking hold(url);
  hold.script("BEGIN");
  hold.run("SELECT 1 FROM durable_kv WHERE obj = $1::bytea FOR UPDATE",
           PgParams().bytes(std::string_view(reinterpret_cast<const char*>(c.id().raw().data()), c.id().raw().size())));
  const auto holder = durable::detail::pgInt8(hold.run("SELECT pg_backend_pid()::int8").get(), 0, 0);
  std::thread first([&] { EXPECT_EQ(env.fetch(c, "http://do/add").text(), "2"); });
  PgBlocking db(url);
  for (const auto until = std::chrono::steady_clock::now() + 3s;;) {
    auto r = db.run("SELECT count(*)::int8 FROM pg_stat_activity WHERE " + std::to_string(holder) +
                    " = ANY(pg_blocking_pids(pid))");
    if (durable::detail::pgInt8(r.get(), 0, 0) > 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "c's commit did not wait on its row";
    std::this_thread::sleep_for(20ms);
  }
  std::optional<durable::Error> failedA, failedB;
  std::thread second([&] { failedA = failure(env, a, "http://do/add"); });
  std::thread third([&] { failedB = failure(env, b, "http://do/add"); });
  std::this_thread::sleep_for(300ms);
  const int slotA = slotOf(a.id());
  const auto epochB = one(url, "SELECT epoch FROM durable_slots WHERE slot = " + std::to_string(slotOf(b.id())));
  db.run("UPDATE durable_slots SET owner = 'other', epoch = epoch + 1 WHERE slot = $1::int8", PgParams().int8(slotA));
  hold.script("ROLLBACK");
  first.join();
  second.join();
  third.join();
  ASSERT_TRUE(failedA.has_value()) << "a write under a lost slot's epoch was acknowledged";
  ASSERT_TRUE(failedB.has_value()) << "b's write went in a batch of its own: the test shows nothing";
  EXPECT_NE(std::string(failedB->what()).find("no longer holds"), std::string::npos) << failedB->what();
  // b answers at once, from what PostgreSQL holds (its write was not made), at the same epoch.
  const auto again = failure(env, b, "http://do/");
  EXPECT_FALSE(again.has_value()) << "b's slot was forgotten with a's: " << again->what();
  EXPECT_EQ(env.fetch(b, "http://do/add").text(), "2");
  EXPECT_EQ(one(url, "SELECT epoch FROM durable_slots WHERE slot = " + std::to_string(slotOf(b.id()))), epochB);
  EXPECT_EQ(stored(url, a.id(), "n"), 1);
}

// Self-fencing: while PostgreSQL does not answer (SIGSTOP), the node cannot renew its lease,
// and once the lease may have lapsed it answers 503 instead of serving what it cached.
TEST(ClusterFence, ANodeThatCannotRenewItsLeaseStopsServingAndComesBack) {
  PostgresServer pg;
  const auto url = pg.createDatabase();
  durable::testing::Env env(onPostgres(url, 600));
  const auto& ns = env.exportClass<Tally>("TALLY");
  const auto a = ns.getByName("a");
  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "1");
  EXPECT_EQ(env.fetch(a, "http://do/").text(), "1");  // served from the object's cache

  pg.pause();
  std::this_thread::sleep_for(900ms);
  auto refused = failure(env, a, "http://do/");
  pg.resume();
  ASSERT_TRUE(refused.has_value()) << "a node whose lease may have lapsed served a read";
  EXPECT_EQ(refused->code(), durable::ErrorCode::kUnavailable);
  EXPECT_NE(std::string(refused->what()).find("lease"), std::string::npos) << refused->what();

  std::optional<std::string> answer;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!answer && std::chrono::steady_clock::now() < deadline) {
    try {
      answer = env.fetch(a, "http://do/add").text();
    } catch (const durable::Error&) {
      std::this_thread::sleep_for(50ms);
    }
  }
  EXPECT_EQ(answer, "2");
}

ClusterOptions node(const std::string& url, const std::string& name, std::chrono::milliseconds lease = 5000ms) {
  ClusterOptions o;
  o.url = url;
  o.node = name;
  o.lease = lease;
  return o;
}

TEST(ClusterMembership, TheFirstNodeClaimsEverySlotAndAnotherTakesThemWhenItsLeaseExpires) {
  const auto url = PostgresServer::shared().createDatabase();
  ClusterMembership a(node(url, "a", 600ms));
  EXPECT_EQ(a.slots()->held(), 4096);
  EXPECT_EQ(one(url, "SELECT count(*) FROM durable_slots WHERE owner = 'a' AND epoch = 1"), 4096);
  EXPECT_TRUE(a.slots()->leaseTrusted());

  // a never renews (its thread is not started): after 600 ms its lease is over by
  // PostgreSQL's clock, and a stopped trusting it 100 ms before.
  std::this_thread::sleep_for(700ms);
  EXPECT_FALSE(a.slots()->leaseTrusted());
  ClusterMembership b(node(url, "b"));
  EXPECT_EQ(b.slots()->held(), 4096);
  EXPECT_EQ(one(url, "SELECT count(*) FROM durable_slots WHERE owner = 'b' AND epoch = 2"), 4096);

  // a comes back: it renews, forgets every slot (any may have moved), and claims none, since
  // their owner b is alive.
  a.tick();
  EXPECT_TRUE(a.slots()->leaseTrusted());
  EXPECT_EQ(a.slots()->held(), 0);
  EXPECT_EQ(one(url, "SELECT count(*) FROM durable_slots WHERE owner = 'b' AND epoch = 2"), 4096);
}

TEST(ClusterMembership, LiveNodesSplitFreeSlotsByRendezvousHashingWithoutOverlap) {
  const auto url = PostgresServer::shared().createDatabase();
  ClusterMembership a(node(url, "a"));
  ClusterMembership b(node(url, "b"));
  ClusterMembership c(node(url, "c"));
  EXPECT_EQ(b.slots()->held(), 0);  // a holds them all and is alive
  PgBlocking(url).run("UPDATE durable_slots SET owner = NULL");
  a.tick();
  b.tick();
  c.tick();
  const int held[] = {a.slots()->held(), b.slots()->held(), c.slots()->held()};
  EXPECT_EQ(held[0] + held[1] + held[2], 4096);
  for (int h : held) {
    EXPECT_GT(h, 4096 / 3 - 200);
    EXPECT_LT(h, 4096 / 3 + 200);
  }
  for (int s = 0; s < 4096; ++s) {
    const int holders = (a.slots()->epoch(s) != 0) + (b.slots()->epoch(s) != 0) + (c.slots()->epoch(s) != 0);
    ASSERT_EQ(holders, 1) << "slot " << s;
  }
  EXPECT_EQ(one(url, "SELECT count(*) FROM durable_slots WHERE owner = 'b'"), held[1]);
}

TEST(ClusterMembership, StopReleasesTheSlotsForAnotherNodeAtOnce) {
  const auto url = PostgresServer::shared().createDatabase();
  ClusterMembership a(node(url, "a"));
  ClusterMembership b(node(url, "b"));
  EXPECT_EQ(b.slots()->held(), 0);
  a.stop();
  EXPECT_EQ(a.slots()->held(), 0);
  b.tick();  // no lease to wait for
  EXPECT_EQ(b.slots()->held(), 4096);
  EXPECT_EQ(one(url, "SELECT min(epoch) FROM durable_slots"), 2);
}

// A release is announced (NOTIFY): a node whose thread runs claims the slots at once, not at
// its next round (a quarter of the lease, 2.5 s here).
TEST(ClusterMembership, ReleasedSlotsAreClaimedOnTheAnnouncementNotAtTheNextRound) {
  const auto url = PostgresServer::shared().createDatabase();
  ClusterMembership a(node(url, "a", 10s));
  ClusterMembership b(node(url, "b", 10s));
  b.start();
  std::this_thread::sleep_for(300ms);  // b's first round ran, and it listens
  EXPECT_EQ(b.slots()->held(), 0);
  const auto released = std::chrono::steady_clock::now();
  a.stop();
  while (b.slots()->held() < 4096 && std::chrono::steady_clock::now() - released < 5s) {
    std::this_thread::sleep_for(5ms);
  }
  const auto took = std::chrono::steady_clock::now() - released;
  EXPECT_EQ(b.slots()->held(), 4096);
  EXPECT_LT(took, 1500ms) << "claimed only at the next round";
  b.stop();
}

// A second process under a name in use (a restart that did not wait for the old process's
// end) fences the first at once, but claims its slots only once the first's lease has run
// out: until its next round the first may still answer reads from its caches.
TEST(ClusterMembership, ASecondProcessUnderTheSameNameFencesTheFirstAndWaitsOutItsLease) {
  const auto url = PostgresServer::shared().createDatabase();
  ClusterMembership first(node(url, "a", 1000ms));
  const auto registered = std::chrono::steady_clock::now();
  ClusterMembership second(node(url, "a", 1000ms));
  EXPECT_EQ(second.slots()->held(), 0) << "claimed while the first process's lease still ran";
  EXPECT_THROW(first.tick(), durable::Error);
  EXPECT_EQ(first.slots()->held(), 0);
  while (second.slots()->held() == 0 && std::chrono::steady_clock::now() - registered < 3s) {
    second.tick();
    if (second.slots()->held() == 0) std::this_thread::sleep_for(50ms);
  }
  const auto took = std::chrono::steady_clock::now() - registered;
  EXPECT_EQ(second.slots()->held(), 4096);
  EXPECT_GE(took, 900ms) << "claimed before the first lease ran out";
  EXPECT_EQ(one(url, "SELECT min(epoch) FROM durable_slots"), 2);
}

// A process that stopped (stop(): its lease ended) leaves nothing to wait out.
TEST(ClusterMembership, ARestartAfterAStopClaimsAtOnce) {
  const auto url = PostgresServer::shared().createDatabase();
  {
    ClusterMembership first(node(url, "a"));
    first.stop();
  }
  ClusterMembership second(node(url, "a"));
  EXPECT_EQ(second.slots()->held(), 4096);
}

// Slots left to this name by a previous process whose targets are other nodes now (one joined
// meanwhile): they are claimed, then handed on, not left owned by nobody that serves them.
TEST(ClusterMembership, SlotsLeftByAPreviousProcessReachTheirTargets) {
  const auto url = PostgresServer::shared().createDatabase();
  auto first = std::make_unique<ClusterMembership>(node(url, "a", 600ms));
  ASSERT_EQ(first->slots()->held(), 4096);
  ClusterMembership b(node(url, "b", 600ms));
  ClusterMembership a(node(url, "a", 600ms));
  // Registered again under its name: the first's stop() in its destructor finds its
  // incarnation gone and releases nothing, as if it had been killed.
  first.reset();
  EXPECT_EQ(one(url, "SELECT count(*) FROM durable_slots WHERE owner = 'a'"), 4096);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline &&
         (a.slots()->held() + b.slots()->held() != 4096 || b.slots()->held() == 0)) {
    a.tick();
    b.tick();
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(a.slots()->held() + b.slots()->held(), 4096);
  EXPECT_GT(b.slots()->held(), 1500);
  EXPECT_GT(a.slots()->held(), 1500);
}

// A slot whose row a stuck transaction holds (a commit that passed its fence and hangs on the
// server) is skipped by a claim, not waited for: the other slots are claimed at once, and that
// one once the transaction has ended.
TEST(ClusterMembership, AClaimSkipsASlotAStuckCommitHoldsAndTakesTheRest) {
  const auto url = PostgresServer::shared().createDatabase();
  { ClusterMembership schema(node(url, "setup")); }  // creates the tables, then releases every slot
  PgBlocking stuck(url);
  stuck.script("BEGIN");
  stuck.run("SELECT 1 FROM durable_slots WHERE slot = 7 FOR SHARE");
  const auto started = std::chrono::steady_clock::now();
  ClusterMembership a(node(url, "a"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s) << "the claim waited for the held row";
  EXPECT_EQ(a.slots()->held(), 4095);
  EXPECT_EQ(a.slots()->epoch(7), 0);
  stuck.script("ROLLBACK");
  a.tick();
  EXPECT_EQ(a.slots()->held(), 4096);
}

// A hand-off whose events outrun the drain limit drops the slots first and releases them at
// the next round: they are not taken back meanwhile (a node's own slots, not held, look like
// those a previous process left), so the joining node gets them.
TEST(ClusterMembership, SlotsHandedOffPastTheDrainLimitReachTheJoiningNode) {
  const auto url = PostgresServer::shared().createDatabase();
  ClusterMembership a(node(url, "a", 1000ms));
  a.start([](const std::vector<int>&) {}, [](const std::vector<int>&) { return false; });  // never quiet
  ClusterMembership b(node(url, "b", 1000ms));
  b.start([](const std::vector<int>&) {}, [](const std::vector<int>&) { return true; });
  const auto deadline = std::chrono::steady_clock::now() + 12s;
  while (b.slots()->held() < 1500 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  EXPECT_GT(b.slots()->held(), 1500) << "the slots handed off past the limit never reached the joining node";
  EXPECT_EQ(a.slots()->held() + b.slots()->held(), 4096);
  a.stop();
  b.stop();
}

TEST(ClusterMembership, ABadNodeNameIsRefusedWithWhatIsAccepted) {
  const auto url = PostgresServer::shared().createDatabase();
  try {
    ClusterMembership bad(node(url, "no spaces"));
    ADD_FAILURE() << "accepted";
  } catch (const durable::Error& e) {
    EXPECT_EQ(e.code(), durable::ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("A-Z a-z 0-9 . _ -"), std::string::npos) << e.what();
  }
}

// The fence and a claim are ordered by the slot row's lock: a claim waits for a commit that
// checked the old epoch, and the old owner's next commit is refused with SQLSTATE DU001.
// A commit cut off on this side (the lease lapsed while it waited on the server) has an
// unknown outcome, and its transaction may still be running there. It is ended on the server
// before the object reloads, so it can never land after a newer write.
TEST(ClusterFence, ACommitCutOffMidwayIsEndedOnTheServerBeforeTheObjectReloads) {
  const auto url = PostgresServer::shared().createDatabase();
  durable::testing::Env env(onPostgres(url, 800));
  const auto& ns = env.exportClass<Tally>("TALLY");
  const auto a = ns.getByName("a");
  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "1");

  // The next commit waits on a's row, and the node cannot renew its lease meanwhile.
  PgBlocking blocker(url);
  blocker.script("BEGIN");
  blocker.run("SELECT 1 FROM durable_kv WHERE key = 'n'::bytea FOR UPDATE");
  blocker.run("SELECT 1 FROM durable_nodes FOR UPDATE");
  auto refused = failure(env, a, "http://do/add");
  ASSERT_TRUE(refused.has_value()) << "a commit that could not finish was acknowledged";
  EXPECT_EQ(refused->code(), durable::ErrorCode::kUnavailable) << refused->what();
  // Cut off on this side, it might have landed: not to be retried blindly.
  EXPECT_FALSE(refused->retryable()) << refused->what();
  EXPECT_NE(std::string(refused->what()).find("outcome is unknown"), std::string::npos) << refused->what();
  EXPECT_EQ(one(url, "SELECT count(*)::int8 FROM pg_stat_activity WHERE application_name LIKE 'durable-%-writer-%' "
                     "AND wait_event_type = 'Lock'"),
            0)
      << "the cut-off commit is still waiting on the server";
  blocker.script("ROLLBACK");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(stored(url, a.id(), "n"), 1) << "the cut-off commit landed after all";
}

// A TCP relay to PostgreSQL whose cut() ends the node's side of every connection open then and
// leaves PostgreSQL's side open: the server processes live on, as when a connection is lost
// between a node and its database. Connections made after a cut are relayed as before.
class CuttableRelay {
 public:
  explicit CuttableRelay(std::uint16_t target) : target_(target) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(listener_, 64) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("relay: cannot listen");
    }
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }
  ~CuttableRelay() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    acceptor_.join();
    std::lock_guard lock(mu_);
    for (auto& t : pumps_) t.join();
    for (int fd : leftOpen_) ::close(fd);
  }
  std::uint16_t port() const { return port_; }
  void cut() { ++cuts_; }

 private:
  void acceptLoop() {
    while (!stop_) {
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(target_);
      if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      std::lock_guard lock(mu_);
      pumps_.emplace_back([this, client, server, cuts = cuts_.load()] { pump(client, server, cuts); });
    }
  }
  void pump(int client, int server, int cutsAtStart) {
    char buf[16384];
    for (;;) {
      if (stop_ || cuts_ != cutsAtStart) break;
      pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(fds, 2, 20) < 0) break;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if (!fds[i].revents) continue;
        const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        done = n <= 0 || ::send(fds[1 - i].fd, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n;
      }
      if (done) {
        ::close(client);
        ::close(server);
        return;
      }
    }
    ::close(client);
    std::lock_guard lock(mu_);
    leftOpen_.push_back(server);
  }

  const std::uint16_t target_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> cuts_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> pumps_;
  std::vector<int> leftOpen_;
};

// A commit whose connection is lost on this side while its server process lives on, and that
// process cannot be ended in time (here it is SIGSTOPped, so it cannot exit): its transaction
// may still land, so no read reloads the object meanwhile; each fails, retryable, until the
// process is gone, and then the object loads what PostgreSQL holds.
TEST(ClusterFence, NoReadReloadsAnObjectWhileItsCutOffCommitMayStillLand) {
  const auto direct = PostgresServer::shared().createDatabase();
  CuttableRelay relay(PostgresServer::shared().port());
  const std::string portField = "port=" + std::to_string(PostgresServer::shared().port());
  std::string url = direct;
  url.replace(url.find(portField), portField.size(), "port=" + std::to_string(relay.port()));
  durable::testing::Env env(onPostgres(url, 5000));
  const auto& ns = env.exportClass<Tally>("TALLY");
  const auto a = ns.getByName("a");
  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "1");

  PgBlocking rowHolder(direct);
  rowHolder.script("BEGIN");
  rowHolder.run("SELECT 1 FROM durable_kv WHERE key = 'n'::bytea FOR UPDATE");
  std::optional<durable::Error> cutOff;
  std::thread add([&] { cutOff = failure(env, a, "http://do/add"); });
  // The commit waits on the row; its server process is stopped there.
  PgBlocking db(direct);
  std::int64_t writer = 0;
  for (const auto until = std::chrono::steady_clock::now() + 3s; writer == 0;) {
    auto r = db.run("SELECT pid::int8 FROM pg_stat_activity WHERE application_name LIKE 'durable-%-writer-%' AND "
                    "wait_event_type = 'Lock'");
    if (PQntuples(r.get()) == 1) writer = durable::detail::pgInt8(r.get(), 0, 0);
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "the commit did not wait on its row";
    if (writer == 0) std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(::kill(static_cast<pid_t>(writer), SIGSTOP), 0);
  struct Continue {
    pid_t pid;
    ~Continue() { ::kill(pid, SIGCONT); }
  } resume{static_cast<pid_t>(writer)};
  relay.cut();
  add.join();
  ASSERT_TRUE(cutOff.has_value()) << "a commit cut off was acknowledged";
  EXPECT_FALSE(cutOff->retryable()) << cutOff->what();

  // The slot is still held, but the object's reload waits for the stopped transaction's end.
  const auto refused = failure(env, a, "http://do/");
  ASSERT_TRUE(refused.has_value()) << "the object reloaded while its cut-off commit could still land";
  EXPECT_NE(std::string(refused->what()).find("still running"), std::string::npos) << refused->what();
  EXPECT_TRUE(refused->retryable());

  ASSERT_EQ(::kill(static_cast<pid_t>(writer), SIGCONT), 0);  // it ends (terminated), its row still locked
  for (const auto until = std::chrono::steady_clock::now() + 5s;;) {
    auto r = db.run("SELECT count(*)::int8 FROM pg_stat_activity WHERE pid = " + std::to_string(writer));
    if (durable::detail::pgInt8(r.get(), 0, 0) == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "the stopped writer did not end";
    std::this_thread::sleep_for(20ms);
  }
  rowHolder.script("ROLLBACK");
  std::string answer;
  for (const auto until = std::chrono::steady_clock::now() + 5s; answer.empty() && std::chrono::steady_clock::now() < until;) {
    try {
      answer = env.fetch(a, "http://do/").text();
    } catch (const durable::Error&) {
      std::this_thread::sleep_for(50ms);
    }
  }
  EXPECT_EQ(answer, "1");
  EXPECT_EQ(stored(direct, a.id(), "n"), 1) << "the cut-off commit landed after all";
}

// Writes without a read first: a commit is the object's only exchange with PostgreSQL.
class Blind : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<durable::Response> fetch(durable::Request) override {
    co_await storage().put("k", std::int64_t{1});
    co_return durable::Response("ok");
  }
};

// A commit that never reached PostgreSQL (no connection could be made) wrote nothing: its
// caller may retry. One sent on a connection that then broke may have landed: it may not.
TEST(ClusterFence, ACommitThatNeverReachedPostgresIsRetryableAndOneCutOffIsNot) {
  PostgresServer pg;
  const auto url = pg.createDatabase();
  durable::testing::Env env(onPostgres(url, 5000));
  const auto& ns = env.exportClass<Blind>("BLIND");
  const auto b = ns.getByName("b");
  ASSERT_EQ(env.fetch(b, "http://do/").text(), "ok");
  pg.kill();
  std::vector<durable::Error> errors;
  for (const auto until = std::chrono::steady_clock::now() + 5s;
       std::chrono::steady_clock::now() < until && (errors.empty() || !errors.back().retryable());) {
    if (auto e = failure(env, b, "http://do/")) errors.push_back(*e);
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_FALSE(errors.empty());
  std::string seen;
  for (const auto& e : errors) seen += std::string(e.retryable() ? "retryable: " : "not retryable: ") + e.what() + "\n";
  EXPECT_TRUE(errors.back().retryable()) << seen;
  EXPECT_NE(std::string(errors.back().what()).find("cannot connect"), std::string::npos) << seen;
  for (const auto& e : errors) {
    if (!e.retryable()) EXPECT_NE(std::string(e.what()).find("outcome is unknown"), std::string::npos) << seen;
  }
}

// Writes, then waits: its write commits while it still runs.
class WriteThenWait : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<durable::Response> fetch(durable::Request request) override {
    if (request.url().pathname() == "/slow") {
      co_await storage().put("k", std::int64_t{1});
      co_await durable::sleep(3000);
    }
    co_return durable::Response("ok");
  }
};

// When the lease lapses under an event that had already written (its commit landed before),
// the caller is told the outcome is unknown, not to retry: a retry would write twice. (An
// event that wrote nothing hears a retryable error: ANodeThatCannotRenewItsLease… above.)
TEST(ClusterFence, AnEventEndedByALapsedLeaseAfterItsWriteLandedIsNotRetryable) {
  const auto url = PostgresServer::shared().createDatabase();
  durable::testing::Env env(onPostgres(url, 800));
  const auto& ns = env.exportClass<WriteThenWait>("WTW");
  const auto writer = ns.getByName("writer");
  ASSERT_EQ(env.fetch(writer, "http://do/").text(), "ok");
  std::optional<durable::Error> wrote;
  std::thread slow([&] { wrote = failure(env, writer, "http://do/slow"); });
  for (const auto until = std::chrono::steady_clock::now() + 3s; !stored(url, writer.id(), "k");) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "the write did not land";
    std::this_thread::sleep_for(20ms);
  }
  PgBlocking holder(url);
  holder.script("BEGIN");
  holder.run("SELECT 1 FROM durable_nodes FOR UPDATE");  // no renewal: the lease lapses
  slow.join();
  holder.script("ROLLBACK");
  ASSERT_TRUE(wrote.has_value()) << "the event outlived the lease";
  EXPECT_FALSE(wrote->retryable()) << wrote->what();
  EXPECT_NE(std::string(wrote->what()).find("outcome is unknown"), std::string::npos) << wrote->what();
}

TEST(ClusterFence, AClaimWaitsForTheCommitThatCheckedTheOldEpoch) {
  const auto url = PostgresServer::shared().createDatabase();
  ClusterMembership a(node(url, "a"));
  PgBlocking owner(url);
  owner.script("BEGIN");
  owner.run("SELECT durable_fence('{7}', '{1}', 'a')");

  PGconn* claimer = PQconnectdb(url.c_str());
  ASSERT_EQ(PQstatus(claimer), CONNECTION_OK);
  ASSERT_EQ(PQsendQuery(claimer, "UPDATE durable_slots SET owner = 'b', epoch = epoch + 1 WHERE slot = 7"), 1);
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(PQconsumeInput(claimer), 1);
  EXPECT_EQ(PQisBusy(claimer), 1) << "the claim did not wait for the commit holding the slot";

  owner.script("COMMIT");
  PGresult* r;
  while ((r = PQgetResult(claimer)) != nullptr) {
    EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
    PQclear(r);
  }
  PQfinish(claimer);

  PGconn* stale = PQconnectdb(url.c_str());
  PGresult* refused = PQexec(stale, "SELECT durable_fence('{7,9}', '{1,1}', 'a')");
  EXPECT_EQ(PQresultStatus(refused), PGRES_FATAL_ERROR);
  EXPECT_STREQ(PQresultErrorField(refused, PG_DIAG_SQLSTATE), "DU001");
  // It names the slot lost, not the one still held.
  EXPECT_STREQ(PQresultErrorField(refused, PG_DIAG_MESSAGE_DETAIL), "7");
  PQclear(refused);
  PQfinish(stale);
}


// A shard's connection that has to connect again does so without blocking its loop: a stopped
// server (its TCP port still accepts) makes the exchanges waiting for it fail after the
// connect deadline while the loop's timers keep running; exchanges made while connecting all
// go out, in order, once it is made.
TEST(PgConnection, ConnectingAgainLeavesTheLoopFreeAndGivesUpAtItsDeadline) {
  using durable::detail::PgConnection;
  using durable::detail::PgOutcome;
  using durable::detail::PgQuery;
  using durable::detail::PgStatement;
  PostgresServer pg;
  const auto url = pg.connectionString();
  boost::asio::io_context loop;
  PgConnection conn(url, loop);
  static const PgStatement kPid{"pid", "SELECT pg_backend_pid()::int8"};
  auto ask = [&] {
    std::vector<PgQuery> q;
    q.push_back({&kPid, PgParams()});
    return q;
  };
  auto answerNow = [&]() -> PgOutcome {
    std::optional<PgOutcome> got;
    conn.exchange(ask(), [&](PgOutcome o) { got = std::move(o); });
    while (!got) loop.run_one_for(5s);
    loop.restart();
    return std::move(*got);
  };

  PgOutcome first = answerNow();
  ASSERT_FALSE(first.error);
  const auto pid = durable::detail::pgInt8(first.results[0].get(), 0, 0);
  PgBlocking(url).run("SELECT pg_terminate_backend($1::int8::int)", PgParams().int8(pid));
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(answerNow().error) << "the ended session still answered";

  pg.pause();
  int ticks = 0;
  bool ticking = true;
  boost::asio::steady_timer tick(loop);
  std::function<void()> arm = [&] {
    tick.expires_after(10ms);
    tick.async_wait([&](const boost::system::error_code& ec) {
      if (ec || !ticking) return;
      ++ticks;
      arm();
    });
  };
  arm();
  const auto started = std::chrono::steady_clock::now();
  std::optional<PgOutcome> stalled;
  conn.exchange(ask(), [&](PgOutcome o) { stalled = std::move(o); });
  while (!stalled && std::chrono::steady_clock::now() - started < 10s) loop.run_one_for(1s);
  const auto waited = std::chrono::steady_clock::now() - started;
  ticking = false;
  tick.cancel();
  loop.run();  // nothing is left waiting: the failed attempt let go of its socket and deadline
  loop.restart();
  pg.resume();
  ASSERT_TRUE(stalled.has_value());
  ASSERT_TRUE(stalled->error);
  try {
    std::rethrow_exception(stalled->error);
  } catch (const durable::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect to PostgreSQL"), std::string::npos) << e.what();
  }
  EXPECT_GE(waited, PgConnection::kConnectTimeout - 50ms);
  EXPECT_LT(waited, PgConnection::kConnectTimeout + 2s);
  // Every 10 ms over about 2 s: a loop blocked in a connect would have ticked a few times at most.
  EXPECT_GT(ticks, 100) << "the loop stalled while connecting";

  std::vector<std::int64_t> order;
  std::vector<std::int64_t> pids;
  for (int i = 0; i < 3; ++i) {
    conn.exchange(ask(), [&, i](PgOutcome o) {
      order.push_back(i);
      EXPECT_FALSE(o.error);
      if (!o.error) pids.push_back(durable::detail::pgInt8(o.results[0].get(), 0, 0));
    });
  }
  const auto again = std::chrono::steady_clock::now();
  while (order.size() < 3 && std::chrono::steady_clock::now() - again < 10s) loop.run_one_for(1s);
  EXPECT_EQ(order, (std::vector<std::int64_t>{0, 1, 2}));
  ASSERT_EQ(pids.size(), 3u);
  EXPECT_NE(pids[0], pid);
  EXPECT_EQ(pids[0], pids[2]) << "the three went out over one new connection";
}


// A slot being handed off stays held (its running events commit under its epoch) while it
// admits nothing new; once dropped, at its epoch or otherwise, it is neither held nor
// draining, so that nothing waits for a hand-off that is over.
TEST(SlotTable, ADrainingSlotStaysHeldUntilDroppedAndThenNothingWaitsForIt) {
  durable::detail::SlotTable t(8);
  t.hold(3, 7);
  const auto drops = t.drops();
  t.drain(3);
  EXPECT_TRUE(t.draining(3));
  EXPECT_EQ(t.epoch(3), 7);
  EXPECT_GT(t.drops(), drops) << "the shards are not told to close the slot's WebSockets";
  t.dropIfAt(3, 6);  // claimed again since: not this epoch
  EXPECT_EQ(t.epoch(3), 7);
  EXPECT_TRUE(t.draining(3));
  t.dropIfAt(3, 7);
  EXPECT_EQ(t.epoch(3), 0);
  EXPECT_FALSE(t.draining(3));
  t.hold(4, 2);
  t.drain(4);
  t.drop(4);
  EXPECT_FALSE(t.draining(4));
  t.drain(5);
  t.hold(5, 9);
  EXPECT_FALSE(t.draining(5)) << "a slot claimed again is not being handed off";
}

}  // namespace
