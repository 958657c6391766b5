// Storage faults: I/O errors and a full disk injected under SQLite (storage/fault_vfs.h). A
// commit that fails must release none of its replies: the callers get a retryable
// durable::Error (kUnavailable, 503 when a Worker does not catch it), the objects reset
// and reload what is really on disk, nothing is half-applied, and the rest keeps serving.
#include <durable/durable.h>
#include <durable/testing.h>

#include <gtest/gtest.h>

#include <atomic>
#include <optional>

namespace {

std::atomic<int> g_constructed{0};

class Tally : public durable::DurableObject {
 public:
  Tally(durable::State& state, durable::Env& env) : DurableObject(state, env) { g_constructed++; }

  durable::Task<durable::Response> fetch(durable::Request request) override {
    const auto path = request.url().pathname();
    auto n = (co_await storage().get<std::int64_t>("n")).value_or(0);
    if (path == "/add") {
      ++n;
      co_await storage().put("n", n);
      // Several keys in one turn: all or none of them must reach the disk.
      co_await storage().put("copy", n);
    }
    if (path == "/pair") {
      const auto copy = (co_await storage().get<std::int64_t>("copy")).value_or(0);
      co_return durable::Response(std::to_string(n) + "," + std::to_string(copy));
    }
    co_return durable::Response(std::to_string(n));
  }
};

durable::testing::EnvOptions faulty() {
  durable::testing::EnvOptions o;
  o.faultInjection = true;
  return o;
}

// The call fails with the runtime's error, not the object's: retryable unless the storage
// stopped (a retry would fail too).
void expectFailedCommit(durable::testing::Env& env, const durable::Stub& stub, const std::string& url,
                        bool retryable = true) {
  try {
    const auto r = env.fetch(stub, url);
    ADD_FAILURE() << url << " answered " << r.status() << " " << r.text() << " after a failed commit";
  } catch (const durable::Error& e) {
    EXPECT_EQ(e.code(), durable::ErrorCode::kUnavailable) << e.what();
    EXPECT_EQ(e.retryable(), retryable) << e.what();
    EXPECT_FALSE(e.remote()) << e.what();
    EXPECT_FALSE(e.overloaded()) << e.what();
  }
}

// The status a Worker that does not catch would answer with.
int statusOf(durable::Result<durable::Response>& r) {
  if (r.ok()) return r.value().status();
  try {
    std::rethrow_exception(r.error());
  } catch (const durable::Error& e) {
    return e.httpStatus();
  } catch (...) {
    return 500;
  }
}

class StorageFaults : public ::testing::TestWithParam<bool> {};

TEST_P(StorageFaults, FailedCommitReleasesNoReplyAndReloadsFromDisk) {
  const bool diskFull = GetParam();
  durable::testing::Env env(faulty());
  const auto& ns = env.exportClass<Tally>("TALLY");
  const auto a = ns.getByName("a");

  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "1");
  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "2");
  const int before = g_constructed.load();

  env.failStorageWrites(-1, diskFull);
  expectFailedCommit(env, a, "http://do/add");
  expectFailedCommit(env, a, "http://do/add");
  env.healStorage();

  // The instance was reset: a new one reads the durable state, not the failed increments.
  EXPECT_EQ(env.fetch(a, "http://do/pair").text(), "2,2");
  EXPECT_GT(g_constructed.load(), before);
  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "3");

  env.restart();
  EXPECT_EQ(env.fetch(a, "http://do/pair").text(), "3,3");
}

// sync() resolves through the output gate: it fails when the commit of the writes before it
// fails, and the reply that follows is not released either.
TEST_P(StorageFaults, SyncFailsWhenItsCommitFails) {
  durable::testing::Env env(faulty());
  const auto& ns = env.exportClass<Tally>("TALLY");
  const auto a = ns.getByName("a");
  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "1");

  std::optional<durable::ErrorCode> failure;
  bool synced = false;
  env.failStorageWrites(-1, GetParam());
  EXPECT_THROW(env.runInDurableObject<Tally>(a,
                                             [&](Tally&, durable::State& state) -> durable::Task<void> {
                                               co_await state.storage().put("n", static_cast<std::int64_t>(7));
                                               try {
                                                 co_await state.storage().sync();
                                                 synced = true;
                                               } catch (const durable::Error& e) {
                                                 failure = e.code();
                                               }
                                             }),
               durable::Error);
  EXPECT_FALSE(synced);
  EXPECT_EQ(failure, durable::ErrorCode::kUnavailable);
  env.healStorage();

  bool syncedAfter = false;
  env.runInDurableObject<Tally>(a, [&](Tally&, durable::State& state) -> durable::Task<void> {
    co_await state.storage().put("n", static_cast<std::int64_t>(8));
    co_await state.storage().sync();
    syncedAfter = true;
  });
  EXPECT_TRUE(syncedAfter);
  EXPECT_EQ(env.fetch(a, "http://do/").text(), "8");
}

TEST_P(StorageFaults, OtherObjectsKeepServing) {
  const bool diskFull = GetParam();
  durable::testing::Env env(faulty());
  const auto& ns = env.exportClass<Tally>("TALLY");
  const auto a = ns.getByName("a");
  const auto b = ns.getByName("b");
  EXPECT_EQ(env.fetch(b, "http://do/add").text(), "1");

  env.failStorageWrites(-1, diskFull);
  expectFailedCommit(env, a, "http://do/add");
  // Reads of another object need no commit and are served while the disk is failing.
  EXPECT_EQ(env.fetch(b, "http://do/get").text(), "1");
  env.healStorage();

  EXPECT_EQ(env.fetch(b, "http://do/add").text(), "2");
  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "1");
}

TEST_P(StorageFaults, OneFailedWriteFailsTheWholeBatch) {
  const bool diskFull = GetParam();
  durable::testing::Env env(faulty());
  const auto& ns = env.exportClass<Tally>("TALLY");
  const auto a = ns.getByName("a");
  const auto b = ns.getByName("b");

  // Two objects' writes in flight together; the first write of the commit fails.
  env.failStorageWrites(1, diskFull);
  // Both requests start before either finishes, so their writes share one commit.
  auto results = env.run([](durable::Stub a, durable::Stub b) -> durable::Task<std::pair<int, int>> {
    auto statuses = std::make_shared<std::pair<int, int>>(0, 0);
    durable::Promise<void> both;
    auto left = std::make_shared<int>(2);
    auto done = [both, left]() mutable {
      if (--*left == 0) both.setValue();
    };
    durable::spawn(a.fetch("http://do/add"), std::function<void(durable::Result<durable::Response>)>(
                                                 [statuses, done](durable::Result<durable::Response> r) mutable {
                                                   statuses->first = statusOf(r);
                                                   done();
                                                 }));
    durable::spawn(b.fetch("http://do/add"), std::function<void(durable::Result<durable::Response>)>(
                                                 [statuses, done](durable::Result<durable::Response> r) mutable {
                                                   statuses->second = statusOf(r);
                                                   done();
                                                 }));
    co_await both.future();
    co_return *statuses;
  }(a, b));
  env.healStorage();
  // Whatever succeeded is durable and whatever failed left nothing behind.
  env.restart();
  const auto va = env.fetch(a, "http://do/pair").text();
  const auto vb = env.fetch(b, "http://do/pair").text();
  EXPECT_EQ(va, results.first == 200 ? "1,1" : "0,0");
  EXPECT_EQ(vb, results.second == 200 ? "1,1" : "0,0");
  // One commit carried both: both failed together.
  EXPECT_EQ(results.first, 503);
  EXPECT_EQ(results.second, 503);
}

// A failed fdatasync may have dropped pages the kernel will not write again, while SQLite counts
// the transaction as committed: the partition stops, PostgreSQL-style, and only a restart
// serves it again. Nothing acknowledged is lost and the failed turn is all or nothing.
TEST(StorageSyncFaults, AFailedSyncStopsThePartitionUntilRestart) {
  durable::testing::Env env(faulty());
  const auto& ns = env.exportClass<Tally>("TALLY");
  const auto a = ns.getByName("a");
  const auto b = ns.getByName("b");
  EXPECT_EQ(env.fetch(a, "http://do/add").text(), "1");

  env.failStorageSyncs(1);
  expectFailedCommit(env, a, "http://do/add", /*retryable=*/false);
  env.healStorage();
  // Stopped: no read from disk and no write, for this object or any other, until restart. The
  // read throws a durable::Error (kUnavailable) inside the handler, which does not catch it:
  // the caller gets it as the object's error (remote), not retryable.
  for (const auto& [stub, path] : {std::pair{a, "http://do/add"}, {b, "http://do/get"}, {b, "http://do/add"}}) {
    try {
      const auto r = env.fetch(stub, path);
      ADD_FAILURE() << path << " answered " << r.status() << " " << r.text();
    } catch (const durable::Error& e) {
      EXPECT_EQ(e.code(), durable::ErrorCode::kUnavailable);
      EXPECT_EQ(e.httpStatus(), 503);
      EXPECT_TRUE(e.remote());
      EXPECT_FALSE(e.retryable());
      EXPECT_NE(std::string(e.what()).find("storage is stopped until the server restarts"), std::string::npos) << e.what();
    }
  }

  env.restart();
  // The failed turn reached the WAL or not, both keys together; the acknowledged one did.
  const auto pair = env.fetch(a, "http://do/pair").text();
  EXPECT_TRUE(pair == "1,1" || pair == "2,2") << pair;
  const auto after = env.fetch(a, "http://do/add").text();
  EXPECT_EQ(after, pair == "1,1" ? "2" : "3");
  EXPECT_EQ(env.fetch(b, "http://do/add").text(), "1");
}

INSTANTIATE_TEST_SUITE_P(IoErrorAndDiskFull, StorageFaults, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "DiskFull" : "IoError"; });

}  // namespace
