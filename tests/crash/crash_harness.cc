// The crash harness: the proof that a confirmed write is never lost.
//
// Each round starts the real server (durable_test_server) on the same state directory,
// drives increments on many counters and alarms on many probes from several client threads,
// recording every acknowledged result, and `kill -9`s the server at a random moment. Before
// the next start it checks every database with PRAGMA integrity_check; after the start it
// checks that each counter is at least its highest acknowledged value and at most the number
// of increments ever sent to it, and that every acknowledged alarm fires.
//
//   crash_harness [--rounds N] [--seed S] [--counters N] [--probes N] [--threads N]
//
// Prints one line per round and ends with "N passed, M failed". Exit code 0 iff no round failed.
#include "integration/server_process.h"

#include <boost/json.hpp>

#include <sqlite3.h>

#include <atomic>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

namespace {

using namespace durable_it;
using Clock = std::chrono::steady_clock;

struct Options {
  int rounds = 100;
  unsigned seed = std::random_device{}();
  int counters = 40;
  int probes = 12;
  int threads = 6;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int v = std::stoi(argv[i + 1]);
    if (a == "--rounds") o.rounds = v;
    else if (a == "--seed") o.seed = static_cast<unsigned>(v);
    else if (a == "--counters") o.counters = v;
    else if (a == "--probes") o.probes = v;
    else if (a == "--threads") o.threads = v;
    else throw std::runtime_error("unknown option " + a);
  }
  return o;
}

// What the clients learned, across all rounds.
struct Ledger {
  std::mutex mu;
  std::map<int, std::int64_t> acked;  // counter -> highest acknowledged count
  std::map<int, std::int64_t> sent;   // counter -> increments ever sent
  // Each probe is set by one client thread only, so its acknowledgements are ordered.
  std::map<int, std::int64_t> alarm;  // probe -> latest acknowledged scheduledTime, not yet seen fired
  // probe -> [earliest, latest] time of each later set that got no answer (it may have landed)
  std::map<int, std::vector<std::pair<std::int64_t, std::int64_t>>> maybe;
  std::int64_t acks = 0;
  std::int64_t alarmAcks = 0;
};

std::string integrity(const std::filesystem::path& file) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::string e = db ? sqlite3_errmsg(db) : "open failed";
    sqlite3_close(db);
    return e;
  }
  std::string result;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, nullptr) == SQLITE_OK) {
    while (sqlite3_step(s) == SQLITE_ROW) {
      if (!result.empty()) result += "; ";
      result += reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    }
  } else {
    result = sqlite3_errmsg(db);
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return result;
}

std::vector<std::string> checkDatabases(const std::filesystem::path& dir) {
  std::vector<std::string> problems;
  std::vector<std::filesystem::path> files{dir / "meta.sqlite"};
  if (std::filesystem::exists(dir / "partitions")) {
    for (auto& e : std::filesystem::directory_iterator(dir / "partitions")) {
      if (e.path().extension() == ".sqlite") files.push_back(e.path());
    }
  }
  for (auto& f : files) {
    if (!std::filesystem::exists(f)) continue;
    auto r = integrity(f);
    if (r != "ok") problems.push_back(f.filename().string() + ": " + r);
  }
  return problems;
}

// Drives load until `stop`, recording acknowledgements.
void client(const ServerProcess& server, Ledger& ledger, const Options& o, int self, unsigned seed,
            std::atomic<bool>& stop) {
  std::mt19937 rng(seed);
  std::vector<int> mine;
  for (int p = self; p < o.probes; p += o.threads) mine.push_back(p);
  HttpConnection conn(server.host(), server.port(), std::chrono::milliseconds(3000));
  while (!stop.load()) {
    bool alarm = !mine.empty() && std::uniform_int_distribution<int>(0, 9)(rng) == 0;
    int p = alarm ? mine[std::uniform_int_distribution<std::size_t>(0, mine.size() - 1)(rng)] : -1;
    int in = std::uniform_int_distribution<int>(100, 1500)(rng);
    auto wallNow = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
    const std::int64_t sentAt = wallNow();
    try {
      if (alarm) {
        auto r = conn.get("/probe/p" + std::to_string(p) + "/set?in=" + std::to_string(in));
        if (r.status == 200) {
          auto t = boost::json::parse(r.body).as_object().at("scheduledTime").as_int64();
          std::lock_guard lock(ledger.mu);
          ledger.alarm[p] = t;
          ledger.maybe[p].clear();
          ledger.alarmAcks++;
        }
      } else {
        int c = std::uniform_int_distribution<int>(0, o.counters - 1)(rng);
        {
          std::lock_guard lock(ledger.mu);
          ledger.sent[c]++;
        }
        auto r = conn.post("/counters/c" + std::to_string(c) + "/increment");
        if (r.status == 200) {
          auto n = boost::json::parse(r.body).as_object().at("count").as_int64();
          std::lock_guard lock(ledger.mu);
          ledger.acked[c] = std::max(ledger.acked[c], n);
          ledger.acks++;
        }
      }
    } catch (const std::exception&) {
      // The server died under us: expected, the request counts as sent and unacknowledged.
      // An unanswered alarm set may still have landed, replacing the acknowledged one; the
      // server read its clock between our send and our failure.
      if (alarm) {
        std::lock_guard lock(ledger.mu);
        ledger.maybe[p].emplace_back(sentAt + in - 5, wallNow() + in + 5);
      }
      if (stop.load()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  std::cout << "crash harness: " << o.rounds << " rounds, seed " << o.seed << ", " << o.counters << " counters, "
            << o.probes << " alarm probes, " << o.threads << " client threads" << std::endl;
  TempDir dir;
  const auto state = dir / "state";
  Ledger ledger;
  std::mt19937 rng(o.seed);
  int passed = 0, failed = 0;

  // Iteration r verifies what crash r-1 left behind, then (up to the last round) crashes again.
  for (int round = 1; round <= o.rounds + 1; ++round) {
    std::vector<std::string> problems = checkDatabases(state);
    ServerProcess::Options so;
    so.binary = testServerPath();
    so.config = testServerConfig();
    so.persistDir = state;
    so.extraArgs = {"--shards", "2"};  // two shards and partitions whatever the machine's cores
    so.stderrLog = dir / ("server-" + std::to_string(round) + ".log");
    std::unique_ptr<ServerProcess> server;
    try {
      server = ServerProcess::start(so);
    } catch (const std::exception& e) {
      std::cout << "round " << round << ": FAILED to start: " << e.what() << std::endl;
      ++failed;
      break;
    }

    // 1. What the previous rounds acknowledged is all there.
    HttpConnection check(server->host(), server->port(), std::chrono::milliseconds(10000));
    std::int64_t counted = 0;
    for (int c = 0; c < o.counters; ++c) {
      std::int64_t v = boost::json::parse(check.get("/counters/c" + std::to_string(c)).body).as_object().at("count").as_int64();
      counted += v;
      std::lock_guard lock(ledger.mu);
      if (v < ledger.acked[c]) {
        problems.push_back("counter c" + std::to_string(c) + " = " + std::to_string(v) + " < acknowledged " +
                           std::to_string(ledger.acked[c]));
      }
      if (v > ledger.sent[c]) {
        problems.push_back("counter c" + std::to_string(c) + " = " + std::to_string(v) + " > sent " +
                           std::to_string(ledger.sent[c]));
      }
      // Whatever survived is the new floor: later rounds must keep it.
      ledger.acked[c] = std::max(ledger.acked[c], v);
    }
    // 2. Every acknowledged alarm fires (late, not lost): its probe's last run reaches it.
    // It fired when the probe's last run is that alarm, or one of the unanswered sets that
    // could have replaced it (those carry times no earlier than the acknowledged one's send),
    // and nothing is pending any more.
    std::map<int, std::int64_t> waiting;
    std::map<int, std::vector<std::pair<std::int64_t, std::int64_t>>> maybe;
    {
      std::lock_guard lock(ledger.mu);
      waiting = ledger.alarm;
      maybe = ledger.maybe;
    }
    auto deadline = Clock::now() + std::chrono::seconds(15);
    while (!waiting.empty() && Clock::now() < deadline) {
      for (auto it = waiting.begin(); it != waiting.end();) {
        auto body = boost::json::parse(check.get("/probe/p" + std::to_string(it->first) + "/get").body).as_object();
        const auto& last = body.at("last");
        bool fired = false;
        if (last.is_int64() && body.at("alarm").is_null()) {
          const auto t = last.as_int64();
          fired = t == it->second;
          for (auto [earliest, latest] : maybe[it->first]) fired = fired || (t >= earliest && t <= latest);
        }
        if (fired) {
          it = waiting.erase(it);
        } else {
          ++it;
        }
      }
      if (!waiting.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (auto& [p, t] : waiting) {
      problems.push_back("alarm of p" + std::to_string(p) + " for " + std::to_string(t) + " never fired");
    }
    {
      std::lock_guard lock(ledger.mu);
      ledger.alarm.clear();
      ledger.maybe.clear();
    }
    check.close();

    if (round > 1) {
      if (problems.empty()) {
        ++passed;
        std::cout << "round " << round - 1 << ": ok (" << counted << " counted after restart; " << ledger.acks
                  << " increments and " << ledger.alarmAcks << " alarms acknowledged so far)" << std::endl;
      } else {
        ++failed;
        std::cout << "round " << round - 1 << ": FAILED" << std::endl;
        for (auto& p : problems) std::cout << "  " << p << std::endl;
      }
    } else if (!problems.empty()) {
      ++failed;
      for (auto& p : problems) std::cout << "before round 1: " << p << std::endl;
    }
    if (round == o.rounds + 1) {
      auto status = server->stop();
      if (!status.exited || status.code != 0) {
        ++failed;
        std::cout << "final clean stop: " << status.describe() << std::endl;
      }
      break;
    }

    // 3. Load, then a crash at a random moment.
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int t = 0; t < o.threads; ++t) {
      clients.emplace_back(client, std::cref(*server), std::ref(ledger), std::cref(o), t, rng(), std::ref(stop));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 600)(rng)));
    server->kill9();
    stop = true;
    for (auto& t : clients) t.join();

  }

  for (auto& p : checkDatabases(state)) {
    std::cout << "final integrity: " << p << std::endl;
    ++failed;
  }
  std::cout << passed << " passed, " << failed << " failed" << std::endl;
  return failed == 0 ? 0 : 1;
}
