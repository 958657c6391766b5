// Point-in-time recovery at scale (issue 15): an object with N changes in its history (each
// its own log entry), restored to a bookmark in the middle. Prints the time the restore takes
// (the first event after it: open, rebuild from the nearest snapshot, swap in) and what the
// history costs on disk per change.
//
//   build/pitr_bench [N=100000] [SNAPSHOT_EVERY=10000]
#include <durable/durable.h>
#include <durable/testing.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace {

class Log : public durable::DurableObject {
 public:
  Log(durable::State& state, durable::Env& env) : DurableObject(state, env) {
    state.storage().sql().exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)");
  }
};

std::uintmax_t bytesUnder(const std::filesystem::path& dir) {
  std::uintmax_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec); !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file()) total += it->file_size();
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 100'000;
  durable::testing::EnvOptions o;
  o.sqliteBacked = true;
  o.durability = "relaxed";  // building the history; the restore is what is timed
  o.pitrSnapshotEvery = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 10'000;
  durable::testing::Env env(o);
  const auto& ns = env.exportClass<Log>("LOG");
  const auto stub = ns.get(ns.idFromName("history"));
  const auto before = bytesUnder(env.dir());
  // The middle, and the worst place: just before a snapshot, the most entries to replay.
  const int worstAt = n / 2 + static_cast<int>(o.pitrSnapshotEvery) - 17;
  std::string middle, worst;
  env.runInDurableObject<Log>(stub, [n, worstAt, &middle, &worst](Log&, durable::State& state) -> durable::Task<void> {
    auto& sql = state.storage().sql();
    for (int i = 1; i <= n; ++i) {
      sql.exec("INSERT INTO t(v) VALUES (?)", "change " + std::to_string(i));
      // Each change its own batch, so each its own log entry.
      co_await state.storage().sync();
      if (i == n / 2) middle = co_await state.storage().getCurrentBookmark();
      if (i == worstAt) worst = co_await state.storage().getCurrentBookmark();
    }
  });
  env.restart();
  const auto after = bytesUnder(env.dir());
  auto restore = [&](const std::string& bookmark, std::int64_t expected, const char* what) {
    try {
      env.runInDurableObject<Log>(stub, [&bookmark](Log&, durable::State& state) -> durable::Task<void> {
        co_await state.storage().onNextSessionRestoreBookmark(bookmark);
        state.abort("restore");
      });
    } catch (const durable::Error&) {
    }
    const auto start = std::chrono::steady_clock::now();
    std::int64_t rows = 0;
    env.runInDurableObject<Log>(stub, [&rows](Log&, durable::State& state) -> durable::Task<void> {
      rows = state.storage().sql().exec("SELECT count(*) AS n FROM t").one().get<std::int64_t>("n");
      co_return;
    });
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("changes %d, snapshot every %llu entries: restore to %s took %.1f ms (%lld rows after it, %lld expected)\n",
                n, static_cast<unsigned long long>(o.pitrSnapshotEvery), what, ms, static_cast<long long>(rows),
                static_cast<long long>(expected));
    return rows == expected;
  };
  const bool ok = restore(middle, n / 2, "the middle") && restore(worst, worstAt, "just before a snapshot");
  std::printf("disk: %.1f MiB for the history (log, file, snapshots), %.1f bytes per change\n",
              static_cast<double>(after - before) / (1 << 20), static_cast<double>(after - before) / n);
  return ok ? 0 : 1;
}
