// bench/micro: runs the microbenchmarks (Google Benchmark flags apply: --benchmark_filter,
// --benchmark_repetitions, --benchmark_out, ...), then prints each "ours" benchmark as a
// fraction of its ceiling. With repetitions the median is used.
#include "micro.h"

#include <cstdio>
#include <unistd.h>
#include <map>
#include <string>
#include <vector>

namespace {

struct Pair {
  const char* label;
  const char* ours;
  const char* ceiling;
  const char* ceilingLabel;
};

// The table: which ceiling each of our benchmarks is held against.
const std::vector<Pair> kPairs = {
    {"storage get, cached hit", "storage/get_hit/ours", "storage/get_hit/sqlite", "SELECT by key"},
    {"storage get, cold (evicted)", "storage/get_cold/ours", "storage/get_cold/sqlite", "SELECT by key, new conn"},
    {"storage put, not awaited", "storage/put_nowait/ours", "storage/put_nowait/sqlite", "INSERT OR REPLACE in txn"},
    {"storage put x100 + sync, full", "storage/put100_sync_full/ours", "storage/put100_sync_full/sqlite",
     "txn of 100 INSERTs, FULL"},
    {"storage put x100 + sync, relaxed", "storage/put100_sync_relaxed/ours", "storage/put100_sync_relaxed/sqlite",
     "txn of 100 INSERTs, NORMAL"},
    {"storage put + sync, full", "storage/put1_sync_full/ours", "storage/put1_sync_full/sqlite",
     "txn of 1 INSERT, FULL"},
    {"storage put + sync, relaxed", "storage/put1_sync_relaxed/ours", "storage/put1_sync_relaxed/sqlite",
     "txn of 1 INSERT, NORMAL"},
    {"storage list 100 keys (lists)", "storage/list100/ours", "storage/list100/sqlite", "range SELECT, 100 rows"},
    {"dispatch fetch, same shard", "dispatch/same_shard/ours", "dispatch/same_shard/post", "asio post, same thread"},
    {"  (against asio with a reactor)", "dispatch/same_shard/ours", "dispatch/same_shard/post_reactor",
     "the same, epoll reactor running"},
    {"dispatch fetch, other shard", "dispatch/other_shard/ours", "dispatch/other_shard/post",
     "asio post round trip, 2 threads"},
    {"  (against asio with a reactor)", "dispatch/other_shard/ours", "dispatch/other_shard/post_reactor",
     "the same, epoll reactor running"},
    {"RPC increment, memory (vs fetch)", "rpc/increment_memory/rpc", "rpc/increment_memory/fetch",
     "the same increment by fetch"},
    {"RPC increment, SQLite (vs fetch)", "rpc/increment_sqlite/rpc", "rpc/increment_sqlite/fetch",
     "the same increment by fetch"},
    {"codec encode int", "codec/int/encode", "codec/memcpy/9", "memcpy 9 B"},
    {"codec decode int", "codec/int/decode", "codec/memcpy/9", "memcpy 9 B"},
    {"codec encode string 100 B", "codec/string100/encode", "codec/memcpy/101", "memcpy 101 B"},
    {"codec decode string 100 B", "codec/string100/decode", "codec/memcpy/101", "memcpy 101 B"},
    {"codec encode JSON, 20 fields", "codec/json20/encode", "codec/json20/boost_serialize", "json::serialize"},
    {"codec decode JSON, 20 fields", "codec/json20/decode", "codec/json20/boost_parse", "json::parse"},
    {"put check, chat history 1,000", "codec/chat1000/put_check", "codec/chat1000/boost_serialize", "json::serialize"},
    {"codec encode bytes 1 KiB", "codec/bytes1k/encode", "codec/memcpy/1025", "memcpy 1025 B"},
    {"codec decode bytes 1 KiB", "codec/bytes1k/decode", "codec/memcpy/1025", "memcpy 1025 B"},
};

// The console output as usual, plus items/s per benchmark for the table.
class FractionReporter : public benchmark::ConsoleReporter {
 public:
  FractionReporter()
      : ConsoleReporter(::isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& run : runs) {
      if (run.error_occurred) continue;
      auto it = run.counters.find("items_per_second");
      if (it == run.counters.end()) continue;
      auto& r = rates_[run.run_name.function_name];
      if (run.run_type == Run::RT_Aggregate) {
        if (run.aggregate_name == "median") r.median = it->second.value;
      } else {
        r.sum += it->second.value;
        r.count++;
      }
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::FILE* out = stdout;
    std::fprintf(out, "\n%-34s %14s %14s %9s  %s\n", "benchmark", "ours/s", "ceiling/s", "fraction", "ceiling");
    for (const auto& p : kPairs) {
      double ours = rate(p.ours), ceiling = rate(p.ceiling);
      if (ours <= 0 || ceiling <= 0) continue;
      std::fprintf(out, "%-34s %14.0f %14.0f %9.3f  %s\n", p.label, ours, ceiling, ours / ceiling, p.ceilingLabel);
    }
    std::fflush(out);
  }

 private:
  struct Rate {
    double median = -1;
    double sum = 0;
    int count = 0;
  };
  double rate(const std::string& name) const {
    auto it = rates_.find(name);
    if (it == rates_.end()) return -1;
    if (it->second.median >= 0) return it->second.median;
    return it->second.count ? it->second.sum / it->second.count : -1;
  }
  std::map<std::string, Rate> rates_;
};

}  // namespace

int main(int argc, char** argv) {
  micro::registerStorage();
  micro::registerDispatch();
  micro::registerRpc();
  micro::registerCodec();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  {
    FractionReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
  }
  micro::shutdownStorage();
  micro::shutdownDispatch();
  micro::shutdownRpc();
  benchmark::Shutdown();
  return 0;
}
