// Cluster mode end to end: three `durable serve` processes on loopback over one real
// PostgreSQL, under client load through every node, with real faults (kill -9 of a node,
// SIGSTOP of a node for twice its lease). After each: every acknowledged increment is in the
// final count, an object's acknowledged counts are distinct and ordered as the requests were,
// every object answers again within the lease plus 2 s, and no two nodes ever run events of
// one object at the same time (docs/cluster.md).
#include "integration/server_process.h"
#include "integration/websocket_client.h"
#include "storage/pg_connection.h"
#include "support/postgres_server.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <sstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <signal.h>
#include <unistd.h>

namespace durable_it {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using durable::detail::PgBlocking;

constexpr auto kLease = 1000ms;
constexpr int kCounters = 40;
constexpr int kRooms = 6;
// The nodes' secret, from their config: the one the cluster stored in PostgreSQL is not used.
constexpr const char* kSecret = "a-secret-of-the-test-config";

// One acknowledged increment: when its request began and its response ended, and the count.
struct Ack {
  Clock::time_point began, ended;
  long long count;
};

std::optional<long long> countOf(const HttpResponse& r) {
  if (r.status != 200) return std::nullopt;
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  if (ec || !v.is_object() || !v.as_object().contains("count")) return std::nullopt;
  return v.as_object().at("count").as_int64();
}

// The ChatRoom's next frame of `type` on `ws`, skipping the others.
boost::json::object nextOfType(WsClient& ws, const std::string& type) {
  const auto deadline = Clock::now() + 10s;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) throw std::runtime_error("no " + type + " frame in time");
    auto f = boost::json::parse(ws.readText(left)).as_object();
    if (const auto* t = f.if_contains("type"); t && t->is_string() && t->as_string() == type) return f;
  }
}

// Whether a message with `content` comes on `ws` within 10 s (other messages are skipped).
bool messageComes(WsClient& ws, const std::string& content) {
  try {
    while (nextOfType(ws, "message").at("content") != content.c_str()) {
    }
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

std::string chatMessage(const std::string& content) {
  return boost::json::serialize(boost::json::object{{"type", "message"}, {"content", content}});
}

// Whether the history frame `f` holds a message with `content`.
bool historyHas(const boost::json::object& f, const std::string& content) {
  for (const auto& m : f.at("messages").as_array()) {
    if (m.as_object().at("content") == content.c_str()) return true;
  }
  return false;
}

class ClusterTest : public ::testing::Test {
 protected:
  // Where the nodes listen (and PostgreSQL, besides loopback); the partition test puts them
  // on a veth pair instead, one end in a network namespace.
  virtual std::string nodeHost(int i) const { return "127.0.0.1"; }
  virtual std::vector<std::string> postgresSettings() const { return {}; }
  virtual fs::path nodeBinary(int i) const { return testServerPath(); }
  virtual fs::path baseConfig() const { return testServerConfig(); }
  virtual std::vector<std::string> nodeArgs() const { return {}; }
  virtual std::chrono::milliseconds lease() const { return kLease; }
  // Whether the nodes serve the admin API (on loopback, a port of their own).
  virtual bool adminApi() const { return false; }
  // The tests' server has no chat rooms of its own: the load puts some beside the counters.
  virtual std::string extraConfig() const {
    return "\n[[durable_objects.bindings]]\nname = \"ROOM\"\nclass_name = \"ChatRoom\"\n"
           "\n[[durable_objects.bindings]]\nname = \"HIBERNATING_ROOM\"\nclass_name = \"HibernatingRoom\"\n"
           "\n[[migrations]]\ntag = \"v2-rooms\"\nnew_classes = [\"ChatRoom\", \"HibernatingRoom\"]\n";
  }
  // Before PostgreSQL starts (the addresses it listens on must exist), and after.
  virtual void prepareNetwork() {}
  virtual void afterPostgres() {}

  void SetUp() override {
    // Every node logs each event's start and end (runtime.h, eventLog): one machine, one
    // monotonic clock, so intervals of different nodes compare exactly.
    ::setenv("DURABLE_EVENT_LOG", (dir_ / "events-%p.log").c_str(), 1);
    durable_test::PostgresServer::Options po;
    po.settings = postgresSettings();
    prepareNetwork();
    if (IsSkipped()) return;
    pgHolder_ = std::make_unique<durable_test::PostgresServer>(po);
    afterPostgres();
    config_ = dir_ / "wrangler.toml";
    // The tests' server: the seed's app and AlarmProbe (tests/support/test_server.cc).
    writeFile(config_, readFile(baseConfig()) + extraConfig() + "\n[cluster]\nlease_ms = " +
                           std::to_string(lease().count()) + "\nsecret = \"" + kSecret + "\"\n");
    for (int i = 0; i < 3; ++i) nodes_.push_back(startNode(i));
    // Until the first node handed the others their share.
    const auto deadline = Clock::now() + 15s;
    while (owners() < 3 || unowned() > 0) {
      ASSERT_LT(Clock::now(), deadline) << "the slots were not shared between the three nodes";
      std::this_thread::sleep_for(100ms);
    }
    // Two more lease rounds: every node's routes name the new owners.
    std::this_thread::sleep_for(lease() / 2);
    epochWatch_ = std::thread([this] { watchEpochs(); });
  }

  void TearDown() override { stopWatchingEpochs(); }

  // Slot epochs never go down, whatever the faults: read every 50 ms from PostgreSQL (what is
  // committed there), until the test ends.
  void watchEpochs() {
    std::vector<std::int64_t> seen;
    while (!epochStop_) {
      try {
        PgBlocking db(pg().connectionString());
        while (!epochStop_) {
          auto r = db.run("SELECT slot::int8, epoch FROM durable_slots ORDER BY slot");
          seen.resize(static_cast<std::size_t>(PQntuples(r.get())), 0);
          for (int i = 0; i < PQntuples(r.get()); ++i) {
            const auto slot = static_cast<std::size_t>(durable::detail::pgInt8(r.get(), i, 0));
            const auto epoch = durable::detail::pgInt8(r.get(), i, 1);
            if (slot < seen.size() && epoch < seen[slot]) {
              std::lock_guard lock(mu_);
              if (epochRegression_.empty()) {
                epochRegression_ = "slot " + std::to_string(slot) + " went from epoch " + std::to_string(seen[slot]) +
                                   " to " + std::to_string(epoch);
              }
            }
            if (slot < seen.size()) seen[slot] = std::max(seen[slot], epoch);
          }
          ++epochReads_;
          std::this_thread::sleep_for(50ms);
        }
      } catch (const std::exception&) {
        std::this_thread::sleep_for(50ms);  // PostgreSQL is down (a test's fault): read again
      }
    }
  }

  void stopWatchingEpochs() {
    epochStop_ = true;
    if (epochWatch_.joinable()) {
      epochWatch_.join();
      EXPECT_GT(epochReads_.load(), 0) << "the slot epochs were never read";
      EXPECT_EQ(epochRegression_, "") << "a slot epoch went down";
    }
  }

  std::unique_ptr<ServerProcess> startNode(int i) {

    ServerProcess::Options o;
    o.binary = nodeBinary(i);
    o.config = config_;
    o.persistDir = dir_ / ("n" + std::to_string(i));
    o.stderrLog = dir_ / ("n" + std::to_string(i) + "-" + std::to_string(++starts_) + ".log");
    o.extraArgs = {"--listen", nodeHost(i) + ":0", "--admin", adminApi() ? "127.0.0.1:0" : "off", "--cluster", url(),
                   "--node", "n" + std::to_string(i)};
    for (const auto& a : nodeArgs()) o.extraArgs.push_back(a);
    return ServerProcess::start(o);
  }

  // What the nodes connect with; the partition test names PostgreSQL's veth address.
  virtual std::string url() const { return pg().connectionString(); }
  durable_test::PostgresServer& pg() const { return *pgHolder_; }

  int unowned() {
    PgBlocking db(pg().connectionString());
    auto r = db.run("SELECT count(*)::int8 FROM durable_slots WHERE owner IS NULL");
    return static_cast<int>(durable::detail::pgInt8(r.get(), 0, 0));
  }

  int owners() {
    PgBlocking db(pg().connectionString());
    auto r = db.run("SELECT count(DISTINCT owner)::int8 FROM durable_slots WHERE owner IS NOT NULL");
    return static_cast<int>(durable::detail::pgInt8(r.get(), 0, 0));
  }

  // Increments counters c0..c39 in turn through node `i` until `stop`, recording every
  // acknowledged count; failed requests (a node that died, a slot that moves) are not.
  // Counters named `prefix` + number; those of another prefix than "c" are recorded from 1000 on.
  static int keyOf(const std::string& prefix, int c) { return prefix == "c" ? c : 1000 + c; }

  void load(int i, std::atomic<bool>& stop, const std::string& prefix = "c") {
    HttpConnection conn(nodes_[static_cast<std::size_t>(i)]->host(), nodes_[static_cast<std::size_t>(i)]->port(), 3s);
    for (int n = 0; !stop; ++n) {
      const int c = (n * 7 + i * 13) % kCounters;
      const auto began = Clock::now();
      std::optional<long long> count;
      try {
        const auto r = conn.post("/counters/" + prefix + std::to_string(c) + "/increment");
        if (r.status == 503) {
          ++unavailable_;
          std::lock_guard lock(mu_);
          lastUnavailable_ = r.body;
        }
        count = countOf(r);
      } catch (const HttpError&) {
        std::this_thread::sleep_for(20ms);
      }
      if (!count) continue;
      std::lock_guard lock(mu_);
      acks_[keyOf(prefix, c)].push_back({began, Clock::now(), *count});
    }
  }

  // Posts messages to rooms lr0..lr5 through node `i` until `stop`, a new WebSocket each time,
  // recording each message whose broadcast came back to its sender: the output gate released
  // it, so it is durable.
  void chatLoad(int i, std::atomic<bool>& stop) {
    const auto& n = *nodes_[static_cast<std::size_t>(i)];
    WsClient::Options options;
    options.timeout = 3s;
    for (int k = 0; !stop; ++k) {
      const std::string room = "lr" + std::to_string((k + i) % kRooms);
      const std::string content = "n" + std::to_string(i) + "-" + std::to_string(k);
      try {
        auto ws = WsClient::connect(n.host(), n.port(), "/rooms/" + room + "/websocket?user=n" + std::to_string(i), options);
        ws->send(chatMessage(content), 3s);
        const auto deadline = Clock::now() + 3s;
        while (Clock::now() < deadline) {
          const auto f = boost::json::parse(ws->readText(3s)).as_object();
          if (f.at("type") == "message" && f.at("content") == content.c_str()) {
            std::lock_guard lock(mu_);
            chatAcks_[room].push_back(content);
            break;
          }
        }
        ws->close(1000, "", 1s);
      } catch (const std::exception& e) {
        if (std::getenv("CHAT_DEBUG")) std::fprintf(stderr, "chat: %s\n", e.what());
        std::this_thread::sleep_for(20ms);
      }
      std::this_thread::sleep_for(100ms);
    }
  }

  // Every room's history read through node `i` (retrying until `within`): each acknowledged
  // message is there, and one sender's messages are in the order it sent them.
  void checkChatHistories(int i, Clock::duration within) {
    std::lock_guard lock(mu_);
    std::size_t total = 0;
    for (auto& [room, acked] : chatAcks_) {
      total += acked.size();
      const auto deadline = Clock::now() + within;
      HttpResponse h;
      for (;;) {
        try {
          h = httpRequest(nodes_[static_cast<std::size_t>(i)]->host(), nodes_[static_cast<std::size_t>(i)]->port(), "GET",
                          "/rooms/" + room + "/history");
        } catch (const HttpError&) {
          h.status = 0;
        }
        if (h.status == 200) break;
        ASSERT_LT(Clock::now(), deadline) << room << " did not answer through n" << i;
        std::this_thread::sleep_for(50ms);
      }
      std::vector<std::string> history;
      const auto parsed = boost::json::parse(h.body);
      for (const auto& m : parsed.as_array()) {
        history.emplace_back(m.as_object().at("content").as_string());
      }
      ASSERT_LT(history.size(), 100u) << "the history is cut at 100: fewer messages are needed";
      for (const auto& content : acked) {
        EXPECT_NE(std::find(history.begin(), history.end(), content), history.end())
            << room << " lost the acknowledged message " << content;
      }
      std::map<std::string, int> lastOfSender;  // sender -> its last message's number
      for (const auto& content : history) {
        const auto dash = content.find('-');
        if (content.front() != 'n' || dash == std::string::npos) continue;  // another client's ("watching")
        const int k = std::stoi(content.substr(dash + 1));
        auto [it, fresh] = lastOfSender.try_emplace(content.substr(0, dash), k);
        if (!fresh) {
          EXPECT_GT(k, it->second) << room << ": " << content << " after a later message of its sender";
          it->second = k;
        }
      }
    }
    EXPECT_GT(total, 10u) << "too few acknowledged chat messages to prove anything";
  }

  // Sets the alarms of probes `prefix`0..count-1 through node `i`, `in` ms from now, and
  // remembers when each was set for: checkAlarms() then finds each fired once its time came,
  // never early.
  void setAlarms(int i, const std::string& prefix, int in, int count = 10) {
    for (int p = 0; p < count; ++p) {
      const std::string name = prefix + std::to_string(p);
      auto r = httpRequest(nodes_[static_cast<std::size_t>(i)]->host(), nodes_[static_cast<std::size_t>(i)]->port(), "GET",
                           "/probe/" + name + "/set?in=" + std::to_string(in));
      ASSERT_EQ(r.status, 200) << r.body;
      alarmsSet_[name] = boost::json::parse(r.body).at("scheduledTime").as_int64();
    }
  }

  // Every alarm setAlarms() acknowledged fired at least once (through node `i`, within `within`),
  // not before its time, and is gone.
  void checkAlarms(int i, Clock::duration within) {
    const auto deadline = Clock::now() + within;
    for (const auto& [name, scheduled] : alarmsSet_) {
      for (;;) {
        HttpResponse r;
        try {
          r = httpRequest(nodes_[static_cast<std::size_t>(i)]->host(), nodes_[static_cast<std::size_t>(i)]->port(), "GET",
                          "/probe/" + name + "/get");
        } catch (const HttpError&) {
          r.status = 0;
        }
        if (r.status == 200) {
          const auto body = boost::json::parse(r.body).as_object();
          if (body.at("fired").as_int64() >= 1) {
            EXPECT_EQ(body.at("last").as_int64(), scheduled) << name;
            EXPECT_GE(body.at("firedAt").as_int64(), scheduled) << "the alarm of " << name << " fired early";
            EXPECT_TRUE(body.at("alarm").is_null()) << r.body;
            break;
          }
        }
        if (Clock::now() > deadline) {
          ADD_FAILURE() << "the alarm of " << name << " never fired: " << r.status << " " << r.body;
          break;
        }
        std::this_thread::sleep_for(50ms);
      }
    }
  }

  // The node (0..9) whose name holds the slot of the object made from `name`, or -1 when none
  // does or the object never committed a write.
  int ownerOfName(const std::string& name) {
    PgBlocking db(pg().connectionString());
    auto r = db.run("SELECT s.owner FROM durable_names n JOIN durable_slots s ON s.slot = n.slot WHERE n.name = '" +
                    name + "'");
    if (PQntuples(r.get()) != 1 || PQgetisnull(r.get(), 0, 0)) return -1;
    return std::string(durable::detail::pgBytes(r.get(), 0, 0)).back() - '0';
  }

  // A client of each room lr0, lr1, ... through node `i`, each room with a message committed:
  // kRooms of them, and more until one is held by node `including` (when given).
  std::vector<std::unique_ptr<WsClient>> watchRooms(int i, int including = -1) {
    std::vector<std::unique_ptr<WsClient>> out;
    const auto& n = *nodes_[static_cast<std::size_t>(i)];
    auto held = [&] {
      for (std::size_t r = 0; r < out.size(); ++r) {
        if (ownerOfName("lr" + std::to_string(r)) == including) return true;
      }
      return false;
    };
    for (int r = 0; r < kRooms || (including >= 0 && r < 40 && !held()); ++r) {
      out.push_back(WsClient::connect(n.host(), n.port(), "/rooms/lr" + std::to_string(r) + "/websocket?user=watch"));
      out.back()->send(chatMessage("watching"));
      EXPECT_TRUE(messageComes(*out.back(), "watching"));
    }
    return out;
  }

  // Every counter read through node `i`, until each answers or `within` passes: how long it took.
  Clock::duration untilEveryCounterAnswers(int i, Clock::duration within, std::map<int, long long>& finals,
                                           const std::string& prefix = "c") {
    const auto start = Clock::now();
    HttpConnection conn(nodes_[static_cast<std::size_t>(i)]->host(), nodes_[static_cast<std::size_t>(i)]->port(), 3s);
    for (int c = 0; c < kCounters; ++c) {
      for (;;) {
        std::optional<long long> count;
        try {
          count = countOf(conn.get("/counters/" + prefix + std::to_string(c)));
        } catch (const HttpError&) {
        }
        if (count) {
          finals[keyOf(prefix, c)] = *count;
          break;
        }
        if (Clock::now() - start > within) {
          ADD_FAILURE() << "counter " << prefix << c << " did not answer through n" << i;
          return Clock::now() - start;
        }
        std::this_thread::sleep_for(20ms);
      }
    }
    return Clock::now() - start;
  }

  // Every object the test uses answers through node `i` within L + 2 s of `since` (a fault,
  // or its end): each counter, each chat room (its history), each alarm probe.
  void expectEveryObjectAnswersWithin(int i, Clock::time_point since, const char* what) {
    const auto deadline = since + kLease + 2s;
    std::map<int, long long> early;
    untilEveryCounterAnswers(i, deadline - Clock::now(), early);
    const auto countersAt = Clock::now();
    const auto& n = *nodes_[static_cast<std::size_t>(i)];
    HttpConnection conn(n.host(), n.port(), 3s);
    std::vector<std::string> paths;
    for (int r = 0; r < kRooms; ++r) paths.push_back("/rooms/lr" + std::to_string(r) + "/history");
    for (const auto& [probe, due] : alarmsSet_) paths.push_back("/probe/" + probe + "/get");
    for (const auto& path : paths) {
      for (;;) {
        int status = 0;
        std::string body;
        try {
          const auto r = conn.get(path);
          status = r.status;
          body = r.body;
        } catch (const HttpError& e) {
          body = e.what();
        }
        if (status == 200) break;
        if (Clock::now() > deadline) {
          ADD_FAILURE() << path << " did not answer through n" << i << " within L + 2 s of " << what << ": " << status
                        << " " << body;
          return;
        }
        std::this_thread::sleep_for(20ms);
      }
    }
    const auto took = Clock::now() - since;
    EXPECT_LT(took, kLease + 2s) << "after " << what;
    std::printf("through n%d after %s: every counter answered within %lld ms, every room and alarm probe within %lld ms\n",
                i, what, static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(countersAt - since).count()),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  }

  // No two processes ever ran events of one object at the same time. An event still open in a
  // killed process's log ended when it was killed (`killed`: pid -> when). An event of a
  // SIGSTOPped process that was open across the stop (`paused`: pid -> stopped, continued) ran
  // nothing while stopped, and must end within 500 ms of SIGCONT (the lease watch ends it: its
  // commit and answer are fenced); it counts as having ended when the process was stopped.
  void checkSingleActivation(const std::map<pid_t, Clock::time_point>& killed = {},
                             const std::map<pid_t, std::pair<Clock::time_point, Clock::time_point>>& paused = {}) {
    struct Interval {
      std::int64_t from, to;
      pid_t pid;
    };
    std::map<std::string, std::vector<Interval>> byObject;
    std::size_t events = 0;
    const auto now = Clock::now().time_since_epoch().count();
    for (const auto& entry : fs::directory_iterator(dir_.path())) {
      const auto name = entry.path().filename().string();
      if (name.rfind("events-", 0) != 0) continue;
      const pid_t pid = std::stoi(name.substr(7));
      std::map<std::string, std::pair<int, std::int64_t>> open;  // object -> (running, since)
      std::istringstream in(readFile(entry.path()));
      char what;
      std::int64_t at;
      std::string object;
      while (in >> what >> at >> object) {
        ++events;
        auto& [running, since] = open[object];
        if (what == 'B' && running++ == 0) since = at;
        if (what == 'E' && --running == 0) byObject[object].push_back({since, at, pid});
      }
      const auto k = killed.find(pid);
      const std::int64_t end = k == killed.end() ? now : k->second.time_since_epoch().count();
      for (const auto& [object, state] : open) {
        if (state.first > 0) byObject[object].push_back({state.second, end, pid});
      }
      if (const auto p = paused.find(pid); p != paused.end()) {
        const auto stoppedAt = p->second.first.time_since_epoch().count();
        const auto continuedAt = p->second.second.time_since_epoch().count();
        const auto endBy = (p->second.second + 500ms).time_since_epoch().count();
        std::int64_t latest = 0;
        int open = 0;
        for (auto& [object, intervals] : byObject) {
          for (auto& i : intervals) {
            if (i.pid != pid || i.from >= stoppedAt || i.to <= stoppedAt) continue;
            EXPECT_LE(i.to, endBy) << "object " << object << ": an event open across the stop ran on "
                                   << (i.to - endBy) / 1000000 << " ms past SIGCONT + 500 ms";
            latest = std::max(latest, i.to - continuedAt);
            ++open;
            i.to = stoppedAt;
          }
        }
        std::printf("events open across the stop: %d, the last ended %lld ms after SIGCONT\n", open,
                    static_cast<long long>(latest / 1000000));
      }
    }
    EXPECT_GT(events, 100u) << "the nodes logged no events";
    for (auto& [object, intervals] : byObject) {
      std::sort(intervals.begin(), intervals.end(), [](const Interval& a, const Interval& b) { return a.from < b.from; });
      std::map<pid_t, std::int64_t> lastEnd;
      for (const auto& i : intervals) {
        for (const auto& [pid, end] : lastEnd) {
          if (pid != i.pid && end > i.from) {
            ADD_FAILURE() << "object " << object << " ran on pid " << pid << " until " << end << " and on pid " << i.pid
                          << " from " << i.from << ": " << (end - i.from) / 1000 << " us at once";
            return;
          }
        }
        lastEnd[i.pid] = std::max(lastEnd[i.pid], i.to);
      }
    }
  }

  void checkInvariants(const std::map<int, long long>& finals) {
    std::lock_guard lock(mu_);
    std::size_t total = 0;
    for (auto& [c, acks] : acks_) {
      total += acks.size();
      std::set<long long> seen;
      long long highest = 0;
      for (const auto& a : acks) {
        EXPECT_TRUE(seen.insert(a.count).second) << "counter c" << c << " acknowledged " << a.count << " twice";
        highest = std::max(highest, a.count);
      }
      ASSERT_TRUE(finals.count(c));
      EXPECT_GE(finals.at(c), highest) << "counter c" << c << " lost an acknowledged increment";
      // Each acknowledged increment added one: the count holds at least that many.
      EXPECT_GE(finals.at(c), static_cast<long long>(acks.size())) << "counter c" << c;
      // Real-time order: a response that ended before a request began has the lower count.
      for (const auto& a : acks) {
        for (const auto& b : acks) {
          if (a.ended < b.began) EXPECT_LT(a.count, b.count) << "counter c" << c;
        }
      }
    }
    EXPECT_GT(total, 100u) << "too little load to prove anything";
  }

  TempDir dir_;
  std::unique_ptr<durable_test::PostgresServer> pgHolder_;
  fs::path config_;
  std::vector<std::unique_ptr<ServerProcess>> nodes_;
  int starts_ = 0;
  std::mutex mu_;
  std::map<int, std::vector<Ack>> acks_;
  std::map<std::string, std::vector<std::string>> chatAcks_;  // room -> acknowledged messages
  std::map<std::string, std::int64_t> alarmsSet_;             // probe -> when its alarm is due
  std::thread epochWatch_;
  std::atomic<bool> epochStop_{false};
  std::atomic<int> epochReads_{0};
  std::atomic<int> unavailable_{0};  // 503 answers the counter load got
  std::string lastUnavailable_;       // the last one's body, under mu_
  std::string epochRegression_;  // under mu_
};

TEST_F(ClusterTest, KillNineOfANodeUnderLoadLosesNothingAndEveryObjectAnswersWithinTheLease) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i) clients.emplace_back([this, i, &stop] { load(i, stop); });
  // Chat rooms too, through the two nodes that survive (a client of the killed node fails with it).
  for (int i : {0, 2}) clients.emplace_back([this, i, &stop] { chatLoad(i, stop); });
  // Due after the kill: those of the killed node's slots fire where its slots go.
  setAlarms(0, "k", 2500, 20);
  int onVictim = 0;
  for (const auto& [probe, due] : alarmsSet_) onVictim += ownerOfName(probe) == 1 ? 1 : 0;
  EXPECT_GT(onVictim, 0) << "no alarm was held by the node to be killed";
  std::this_thread::sleep_for(1500ms);
  const pid_t victim = nodes_[1]->pid();
  nodes_[1]->kill9();
  const auto killedAt = Clock::now();
  // Under the load still running: every object answers within L + 2 s of the kill.
  expectEveryObjectAnswersWithin(0, killedAt, "the kill");
  std::this_thread::sleep_for(500ms);
  stop = true;
  for (auto& t : clients) t.join();

  std::map<int, long long> finals;
  untilEveryCounterAnswers(0, 10s, finals);
  // The same answers through the other survivor: one object, one count, wherever it is asked.
  std::map<int, long long> again;
  untilEveryCounterAnswers(2, 5s, again);
  EXPECT_EQ(finals, again);
  checkInvariants(finals);
  checkChatHistories(2, kLease + 2s);
  checkAlarms(2, kLease + 2s);
  checkSingleActivation({{victim, killedAt}});

  PgBlocking db(pg().connectionString());
  auto r = db.run("SELECT count(*)::int8 FROM durable_slots WHERE owner = 'n1'");
  EXPECT_EQ(durable::detail::pgInt8(r.get(), 0, 0), 0) << "the dead node still owns slots";
}

// A node paused for twice its lease has lost its slots when it wakes: whatever it answers then
// is the new owners' state or a 503, never what it had cached.
TEST_F(ClusterTest, ANodePausedPastItsLeaseServesNothingStaleWhenItWakes) {
  std::map<int, long long> before;
  for (int c = 0; c < kCounters; ++c) {
    auto r = httpRequest("127.0.0.1", nodes_[0]->port(), "POST", "/counters/c" + std::to_string(c) + "/increment");
    ASSERT_EQ(r.status, 200) << r.body;
    before[c] = *countOf(r);
  }
  // Clients of six rooms through n1; the rooms n0 holds are relayed to it.
  auto watchers = watchRooms(1, 0);
  std::vector<int> ownerBefore;
  for (std::size_t r = 0; r < watchers.size(); ++r) ownerBefore.push_back(ownerOfName("lr" + std::to_string(r)));
  ASSERT_NE(std::find(ownerBefore.begin(), ownerBefore.end(), 0), ownerBefore.end()) << "no room on n0";
  // Load on other counters (s0..s39) through every node, n0 included: the stop lands with
  // n0's requests and commits in flight, and whatever it answers after must keep the counts
  // whole and in order.
  std::atomic<bool> stopLoad{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i) clients.emplace_back([this, i, &stopLoad] { load(i, stopLoad, "s"); });
  // Chat rooms under load too, through the nodes that stay awake.
  for (int i : {1, 2}) clients.emplace_back([this, i, &stopLoad] { chatLoad(i, stopLoad); });
  setAlarms(0, "z", 1000);  // due while n0 is stopped
  std::this_thread::sleep_for(500ms);
  const pid_t paused = nodes_[0]->pid();
  const auto stoppedAt = Clock::now();
  ASSERT_EQ(::kill(nodes_[0]->pid(), SIGSTOP), 0);
  std::this_thread::sleep_for(2 * kLease);
  // The others take n0's slots and move every counter on.
  std::map<int, long long> after;
  const auto deadline = Clock::now() + kLease + 2s;
  for (int c = 0; c < kCounters; ++c) {
    for (;;) {
      auto r = httpRequest("127.0.0.1", nodes_[1]->port(), "POST", "/counters/c" + std::to_string(c) + "/increment");
      if (auto n = countOf(r)) {
        after[c] = *n;
        EXPECT_EQ(*n, before[c] + 1) << "counter c" << c;
        break;
      }
      ASSERT_LT(Clock::now(), deadline) << "c" << c << " did not answer through n1: " << r.status << " " << r.body;
      std::this_thread::sleep_for(20ms);
    }
  }
  // The clients of n0's rooms are relayed by n1, which sees the routes name another owner and
  // ends them with 1012 while n0 is still stopped: the rooms are served elsewhere now.
  for (std::size_t r = 0; r < watchers.size(); ++r) {
    if (ownerBefore[r] != 0) continue;
    const auto closed = watchers[r]->waitClosed(3s);
    EXPECT_EQ(closed.code, 1012) << "lr" << r << ": " << closed.reason << closed.error;
  }
  // The reads wait in the woken node's socket before it runs again, so they meet it in the
  // first instant after SIGCONT, before its lease thread has spoken to PostgreSQL.
  std::string pipelined;
  for (int c = 0; c < kCounters; ++c) {
    pipelined += "GET /counters/c" + std::to_string(c) + " HTTP/1.1\r\nHost: n0\r\n" +
                 (c + 1 == kCounters ? "Connection: close\r\n" : "") + "\r\n";
  }
  RawExchange woke;
  std::thread reader([&] { woke = rawExchange("127.0.0.1", nodes_[0]->port(), pipelined, 10s); });
  std::this_thread::sleep_for(300ms);
  const auto continuedAt = Clock::now();
  ASSERT_EQ(::kill(nodes_[0]->pid(), SIGCONT), 0);
  reader.join();
  std::vector<HttpResponse> answers;
  for (std::size_t at = woke.received.find("HTTP/1.1 "); at != std::string::npos;) {
    const auto next = woke.received.find("HTTP/1.1 ", at + 1);
    answers.push_back(parseResponse(woke.received.substr(at, next == std::string::npos ? next : next - at)));
    at = next;
  }
  ASSERT_EQ(answers.size(), static_cast<std::size_t>(kCounters)) << woke.received;
  for (int c = 0; c < kCounters; ++c) {
    const auto& r = answers[static_cast<std::size_t>(c)];
    if (auto n = countOf(r)) {
      EXPECT_EQ(*n, after[c]) << "the woken node answered a stale count for c" << c;
    } else {
      EXPECT_EQ(r.status, 503) << r.body;
    }
  }
  // Within a lease round it serves again, through the new owners.
  std::map<int, long long> finals;
  untilEveryCounterAnswers(0, kLease + 2s, finals);
  EXPECT_EQ(finals, after);
  expectEveryObjectAnswersWithin(0, continuedAt, "SIGCONT");
  std::this_thread::sleep_for(500ms);
  stopLoad = true;
  for (auto& t : clients) t.join();
  std::map<int, long long> loaded;
  untilEveryCounterAnswers(1, kLease + 2s, loaded, "s");
  checkInvariants(loaded);
  checkChatHistories(1, kLease + 2s);
  checkAlarms(1, kLease + 2s);
  // The other rooms' clients never noticed.
  for (std::size_t r = 0; r < watchers.size(); ++r) {
    if (ownerBefore[r] == 0) continue;
    auto& ws = *watchers[r];
    EXPECT_TRUE(ws.isOpen()) << "lr" << r;
    ws.send(chatMessage("still here"));
    EXPECT_TRUE(messageComes(ws, "still here")) << "lr" << r;
  }
  checkSingleActivation({}, {{paused, {stoppedAt, continuedAt}}});
}

// PostgreSQL itself crashes mid-commit (kill -9 of every server process, as
// `pg_ctl restart -m immediate` does) and comes back: commits in flight fail (their outcome is
// unknown to the caller, who gets 503), nothing acknowledged is lost, and every object answers
// again within a lease of PostgreSQL's return.
TEST_F(ClusterTest, APostgresCrashMidCommitLosesNothingAcknowledged) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i) clients.emplace_back([this, i, &stop] { load(i, stop); });
  for (int i : {0, 2}) clients.emplace_back([this, i, &stop] { chatLoad(i, stop); });
  setAlarms(1, "g", 1600);  // due while PostgreSQL is down
  std::this_thread::sleep_for(1500ms);
  const int unavailableBefore = unavailable_;
  pg().kill();
  std::this_thread::sleep_for(500ms);
  pg().start();
  // Under the load still running: every object answers within L + 2 s of PostgreSQL's return.
  expectEveryObjectAnswersWithin(1, Clock::now(), "PostgreSQL came back");
  std::this_thread::sleep_for(500ms);
  stop = true;
  for (auto& t : clients) t.join();
  // The load met the crash: commits in flight then (their outcome unknown) and requests made
  // while it was down answered 503.
  EXPECT_GT(unavailable_ - unavailableBefore, 0) << "no request met the crash";
  std::map<int, long long> finals;
  untilEveryCounterAnswers(1, 10s, finals);
  checkInvariants(finals);
  checkChatHistories(1, kLease + 2s);
  // An alarm due while PostgreSQL was down failed its run there and is retried with backoff
  // (2 s, then 4 s, each plus up to 25 %): at least once, a little later.
  checkAlarms(0, 10s);
  checkSingleActivation();
}

// Alarms are at-least-once across failover: the alarms a killed node held fire on the nodes
// that claim its slots, at or after their time.
TEST_F(ClusterTest, TheAlarmsOfAKilledNodeFireOnTheNodesThatTakeItsSlots) {
  constexpr int kProbes = 30;
  std::map<int, long long> scheduled;
  for (int p = 0; p < kProbes; ++p) {
    auto r = httpRequest("127.0.0.1", nodes_[0]->port(), "GET", "/probe/p" + std::to_string(p) + "/set?in=1500");
    ASSERT_EQ(r.status, 200) << r.body;
    scheduled[p] = boost::json::parse(r.body).at("scheduledTime").as_int64();
  }
  nodes_[1]->kill9();
  const auto deadline = Clock::now() + 1500ms + kLease + 5s;
  for (int p = 0; p < kProbes; ++p) {
    for (;;) {
      auto r = httpRequest("127.0.0.1", nodes_[2]->port(), "GET", "/probe/p" + std::to_string(p) + "/get");
      if (r.status == 200) {
        const auto body = boost::json::parse(r.body).as_object();
        if (body.at("fired").as_int64() >= 1) {
          EXPECT_EQ(body.at("last").as_int64(), scheduled[p]) << "probe p" << p;
          EXPECT_GE(body.at("firedAt").as_int64(), scheduled[p]) << "the alarm of probe p" << p << " fired early";
          EXPECT_TRUE(body.at("alarm").is_null()) << r.body;
          break;
        }
      }
      ASSERT_LT(Clock::now(), deadline) << "the alarm of probe p" << p << " never fired: " << r.status << " " << r.body;
      std::this_thread::sleep_for(50ms);
    }
  }
}

// SIGTERM hands the node's slots over at once (no lease to wait out), and a node that joins
// under load takes its share; neither loses an acknowledged increment.
// stub.call<> to an object another node holds runs on that node (its log has the call, the
// caller's does not) and its result comes back; what the method throws reaches the caller as
// the local call would have it.
// An alarm whose node died while it ran (its deletion never committed) runs again on the node
// that takes its slot, and knows it is a retry: each run is counted beside the alarm first.
TEST_F(ClusterTest, AnAlarmWhoseNodeDiedWhileItRanRunsAgainAsARetry) {
  auto r = httpRequest("127.0.0.1", nodes_[0]->port(), "GET", "/probe/hang/set?in=200&hang=1");
  ASSERT_EQ(r.status, 200) << r.body;
  const int owner = ownerOfName("hang");
  ASSERT_GE(owner, 0);
  const int entry = (owner + 1) % 3;
  auto state = [&] {
    const auto got = httpRequest("127.0.0.1", nodes_[static_cast<std::size_t>(entry)]->port(), "GET", "/probe/hang/get");
    return got.status == 200 ? boost::json::parse(got.body).as_object() : boost::json::object{};
  };
  auto deadline = Clock::now() + 5s;
  while (!state().contains("hungAt") || state().at("hungAt").is_null()) {
    ASSERT_LT(Clock::now(), deadline) << "the alarm never started";
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(state().at("fired").as_int64(), 0);
  nodes_[static_cast<std::size_t>(owner)]->kill9();
  deadline = Clock::now() + kLease + 5s;
  boost::json::object after;
  for (;;) {
    after = state();
    if (after.contains("fired") && after.at("fired").as_int64() >= 1) break;
    ASSERT_LT(Clock::now(), deadline) << "the alarm did not run again on a survivor";
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(after.at("fired").as_int64(), 1);
  EXPECT_EQ(after.at("retryCount").as_int64(), 1) << boost::json::serialize(after);
  EXPECT_TRUE(after.at("isRetry").as_bool()) << boost::json::serialize(after);
  EXPECT_TRUE(after.at("alarm").is_null()) << boost::json::serialize(after);
}

TEST_F(ClusterTest, RpcToAnObjectHeldByAnotherNodeRunsThereAndAnswers) {
  // The owner logs the note under the id of the request that node 0 took.
  auto notesIn = [&](std::size_t node, const std::string& text) {
    const std::string log = nodes_[node]->stderrText();
    return log.find("request=id-" + text + "] probe note " + text) != std::string::npos;
  };
  int remote = 0;
  for (int i = 0; i < 12; ++i) {
    const std::string text = "rpc-" + std::to_string(i);
    HttpConnection http(nodes_[0]->host(), nodes_[0]->port());
    const auto r = http.request("GET", "/probe/p" + std::to_string(i) + "/rpc?text=" + text, "", {{"x-request-id", "id-" + text}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.body, text);
    std::this_thread::sleep_for(20ms);  // the note reaches the owner's log
    const int ran = static_cast<int>(notesIn(0, text)) + static_cast<int>(notesIn(1, text)) + static_cast<int>(notesIn(2, text));
    EXPECT_EQ(ran, 1) << text << " ran on " << ran << " nodes";
    if (!notesIn(0, text)) ++remote;
  }
  // Rendezvous hashing spreads twelve objects over three nodes: some are held elsewhere.
  EXPECT_GT(remote, 0);
  // A client's own node-to-node headers never cross: a fetch passed on with them stays a fetch.
  for (int i = 0; i < 12; ++i) {
    HttpConnection http(nodes_[0]->host(), nodes_[0]->port());
    const auto r = http.request("GET", "/probe/p" + std::to_string(i) + "/pass", "",
                                {{"x-durable-rpc-class", "N12_GLOBAL__N_110AlarmProbeE"},
                                 {"x-durable-rpc-method", "0"},
                                 {"x-durable-request-id", "forged"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(boost::json::parse(r.body).as_object().contains("fired")) << r.body;
  }
  // What the method throws reaches the Worker as the same error: a 400 with its message, from
  // whichever node the call ran on.
  for (int i = 0; i < 12; ++i) {
    const auto r = httpRequest(nodes_[0]->host(), nodes_[0]->port(), "GET",
                               "/probe/p" + std::to_string(i) + "/rpc?text=fail:no-such-note-" + std::to_string(i));
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find("no-such-note-" + std::to_string(i)), std::string::npos) << r.body;
  }
}

// The node-to-node channel (net/peer_channel.h) opens only with the secret of the nodes' config; a peer
// that sends garbage on it loses its connection, and the node serves on.
TEST_F(ClusterTest, ThePeerChannelWantsTheConfiguredSecretAndDropsAPeerThatSendsGarbage) {
  const std::string open = "GET /.durable/cluster/channel HTTP/1.1\r\nHost: n0\r\nConnection: Upgrade, close\r\n"
                           "Upgrade: durable-channel\r\n";
  const auto refused = rawExchange(nodes_[0]->host(), nodes_[0]->port(), open + "\r\n", 5s);
  EXPECT_EQ(refused.received.rfind("HTTP/1.1 403", 0), 0u) << refused.received;
  // The secret the cluster made is not the one its nodes were configured with.
  std::string stored;
  {
    PgBlocking db(pg().connectionString());
    auto r = db.run("SELECT secret FROM durable_cluster WHERE id = 1");
    stored = std::string(durable::detail::pgBytes(r.get(), 0, 0));
  }
  const auto wrong = rawExchange(nodes_[0]->host(), nodes_[0]->port(),
                                 open + "x-durable-cluster-secret: " + stored + "\r\n\r\n", 5s);
  EXPECT_EQ(wrong.received.rfind("HTTP/1.1 403", 0), 0u) << wrong.received;
  // A frame whose length says 4 GiB: the node closes the connection rather than wait for it.
  const auto garbage = rawExchange(nodes_[0]->host(), nodes_[0]->port(),
                                   open + "x-durable-cluster-secret: " + kSecret + "\r\n\r\n" +
                                       std::string("\xff\xff\xff\xff", 4) + std::string(64, 'x'),
                                   5s);
  EXPECT_EQ(garbage.received.rfind("HTTP/1.1 101", 0), 0u) << garbage.received;
  EXPECT_TRUE(garbage.peerClosed) << "the node kept a channel that sent garbage";
  const auto r = httpRequest(nodes_[0]->host(), nodes_[0]->port(), "POST", "/counters/after-garbage/increment");
  EXPECT_EQ(r.status, 200) << r.body;
}

// A forwarded request names the slot epoch the sender's routes give: a node that does not hold
// the slot at that epoch answers 421 before the object sees anything (the sender then reads the
// routes again and tries once more), and the same request at the right epoch runs.
TEST_F(ClusterTest, AForwardedRequestAtAStaleEpochIsMisdirectedAndRunsNothing) {
  auto count = [&] { return countOf(httpRequest("127.0.0.1", nodes_[0]->port(), "GET", "/counters/misdirected")); };
  ASSERT_EQ(countOf(httpRequest("127.0.0.1", nodes_[0]->port(), "POST", "/counters/misdirected/increment")), 1);
  std::string nsText, hex;
  int owner = -1;
  std::int64_t epoch = 0;
  {
    PgBlocking db(pg().connectionString());
    auto r = db.run(
        "SELECT n.ns, encode(n.obj, 'hex'), s.owner, s.epoch FROM durable_names n JOIN durable_slots s ON s.slot = n.slot "
        "WHERE n.name = 'misdirected'");
    ASSERT_EQ(PQntuples(r.get()), 1);
    nsText = std::to_string(durable::detail::pgInt8(r.get(), 0, 0));
    hex = std::string(durable::detail::pgBytes(r.get(), 0, 1));
    owner = std::string(durable::detail::pgBytes(r.get(), 0, 2)).back() - '0';
    epoch = durable::detail::pgInt8(r.get(), 0, 3);
  }
  auto forward = [&](int node, std::int64_t atEpoch) {
    HttpConnection http("127.0.0.1", nodes_[static_cast<std::size_t>(node)]->port());
    return http.request("POST", "/.durable/cluster/fetch", "",
                        {{"x-durable-cluster-secret", kSecret},
                         {"x-durable-ns", nsText},
                         {"x-durable-object", hex},
                         {"x-durable-slot-epoch", std::to_string(atEpoch)},
                         {"x-durable-url", "http://do/increment"}});
  };
  const auto stale = forward(owner, epoch + 1000);
  EXPECT_EQ(stale.status, 421) << stale.body;
  EXPECT_EQ(stale.headers.count("x-durable-misdirected"), 1u);
  const auto elsewhere = forward((owner + 1) % 3, epoch);
  EXPECT_EQ(elsewhere.status, 421) << elsewhere.body;
  EXPECT_EQ(count(), 1) << "a misdirected request ran";
  const auto right = forward(owner, epoch);
  EXPECT_EQ(right.status, 200) << right.body;
  EXPECT_EQ(count(), 2);
}

// A sender whose routes are stale on purpose: node n0's lease thread, which alone reads the
// routes, is held up on its own node row (the first thing each round writes), and meanwhile a
// fourth node joins and takes slots from n1 and n2. A request through n0 for an object that
// moved goes to its old owner, which answers 421 without running it; n0 reads the routes once
// more and sends it again, once: to the new owner when the routes could be read, otherwise
// the second 421 is the caller's 503, with the object untouched.
class ClusterRoutingTest : public ClusterTest {
 protected:
  // Long enough that n0's lease outlives the hold-up and the join: the other nodes must not
  // count it dead and move slots again meanwhile.
  std::chrono::milliseconds lease() const override { return 6000ms; }
};

TEST_F(ClusterRoutingTest, AStaleRouteIsAnswered421AndTheRequestGoesOnceMoreAndOnlyOnce) {
  constexpr int kObjects = 60;
  std::vector<int> ownerBefore;
  for (int k = 0; k < kObjects; ++k) {
    const auto r = httpRequest("127.0.0.1", nodes_[1]->port(), "POST", "/counters/r" + std::to_string(k) + "/increment");
    ASSERT_EQ(countOf(r), 1) << r.status << " " << r.body;
    ownerBefore.push_back(ownerOfName("r" + std::to_string(k)));
  }
  PgBlocking hold(pg().connectionString());
  hold.script("BEGIN");
  hold.run("SELECT 1 FROM durable_nodes WHERE name = 'n0' FOR UPDATE");
  const auto holder = durable::detail::pgInt8(hold.run("SELECT pg_backend_pid()::int8").get(), 0, 0);
  PgBlocking db(pg().connectionString());
  // Any announcement starts a round on every node: n0's now waits on the row held above.
  auto pump = [&] { db.run("SELECT pg_notify('durable_routes', 'the test')"); };
  for (const auto until = Clock::now() + 3s;;) {
    pump();
    auto r = db.run("SELECT count(*)::int8 FROM pg_stat_activity WHERE " + std::to_string(holder) +
                    " = ANY(pg_blocking_pids(pid))");
    if (durable::detail::pgInt8(r.get(), 0, 0) > 0) break;
    ASSERT_LT(Clock::now(), until) << "n0's lease round did not wait on its node row";
    std::this_thread::sleep_for(50ms);
  }
  const auto heldAt = Clock::now();
  nodes_.push_back(startNode(3));
  // The objects n1 and n2 handed to the joining node (rounds pumped, not waited for).
  std::vector<int> moved;
  for (const auto until = Clock::now() + 4s; moved.size() < 2;) {
    pump();
    moved.clear();
    for (int k = 0; k < kObjects; ++k) {
      if (ownerBefore[static_cast<std::size_t>(k)] != 0 && ownerOfName("r" + std::to_string(k)) == 3) moved.push_back(k);
    }
    ASSERT_LT(Clock::now(), until) << "n1 and n2 handed fewer than two of the objects to the joining node";
    if (moved.size() < 2) std::this_thread::sleep_for(50ms);
  }
  auto resentLines = [&] {
    const auto log = nodes_[0]->stderrText();
    std::size_t n = 0;
    for (auto at = log.find("the request sent once more"); at != std::string::npos;
         at = log.find("the request sent once more", at + 1)) {
      ++n;
    }
    return n;
  };
  // The routes stay unread: the one retry meets the old owner again, and the caller hears 503.
  const auto refused = httpRequest("127.0.0.1", nodes_[0]->port(), "POST",
                                   "/counters/r" + std::to_string(moved[0]) + "/increment");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_NE(refused.body.find("moving"), std::string::npos) << refused.body;
  EXPECT_EQ(resentLines(), 1u) << nodes_[0]->stderrText();

  // Now the routes are read again once the request has heard its first 421.
  HttpResponse answered;
  std::thread request([&] {
    answered = httpRequest("127.0.0.1", nodes_[0]->port(), "POST", "/counters/r" + std::to_string(moved[1]) + "/increment");
  });
  for (const auto until = Clock::now() + 3s; resentLines() < 2 && Clock::now() < until;) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(resentLines(), 2u) << "the second request was not answered 421 by the old owner";
  hold.script("ROLLBACK");
  const auto releasedAt = Clock::now();
  request.join();
  EXPECT_EQ(answered.status, 200) << answered.body;
  EXPECT_EQ(countOf(answered), 2) << "the object ran the request other than once";
  EXPECT_LT(releasedAt - heldAt, lease() - 1s) << "n0's lease may have run out: the scene changed under the test";
  // Neither 421 ran anything; the refused object runs again, through n0, once its routes are read.
  for (int k : {moved[0], moved[1]}) {
    const auto r = httpRequest("127.0.0.1", nodes_[0]->port(), "GET", "/counters/r" + std::to_string(k));
    EXPECT_EQ(countOf(r), k == moved[0] ? 1 : 2) << "r" << k << ": " << r.body;
  }
  EXPECT_EQ(resentLines(), 2u) << nodes_[0]->stderrText();
  checkSingleActivation();
}

// A Worker may ask its object for a WebSocket with a request of its own (no client handshake
// headers in it): every node answers the client's handshake, whichever node holds the object.
TEST_F(ClusterTest, AWebSocketMadeFromTheWorkersOwnRequestWorksThroughEveryNode) {
  for (int r = 0; r < 6; ++r) {
    std::vector<std::unique_ptr<WsClient>> clients;
    for (std::size_t i = 0; i < 3; ++i) {
      clients.push_back(WsClient::connect(nodes_[i]->host(), nodes_[i]->port(), "/fresh-upgrade/f" + std::to_string(r)));
    }
    clients[static_cast<std::size_t>(r % 3)]->send("hello f" + std::to_string(r));
    for (auto& ws : clients) EXPECT_EQ(ws->readText(10s), "hello f" + std::to_string(r));
  }
}

TEST_F(ClusterTest, SigtermHandsSlotsOverAndAJoiningNodeTakesItsShareUnderLoad) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int i : {0, 2}) clients.emplace_back([this, i, &stop] { load(i, stop); });
  for (int i : {0, 2}) clients.emplace_back([this, i, &stop] { chatLoad(i, stop); });
  setAlarms(0, "t", 1200);  // due during the hand-off
  std::this_thread::sleep_for(1s);
  const int unavailableBefore = unavailable_;
  const auto sigtermAt = Clock::now();
  const auto status = nodes_[1]->stop();
  EXPECT_TRUE(status.exited && status.code == 0) << status.describe();
  // Under the load still running: every object answers within L + 2 s of the SIGTERM.
  expectEveryObjectAnswersWithin(0, sigtermAt, "the SIGTERM");
  // The leaving node handed its slots off before it stopped listening: the requests the other
  // nodes forwarded to it meanwhile waited for the hand-off, heard 421, and went again to the
  // new owners, once.
  EXPECT_EQ(unavailable_ - unavailableBefore, 0) << "requests answered 503 while a node left: " << lastUnavailable_;
  std::size_t resent = 0;
  for (int i : {0, 2}) {
    const auto log = nodes_[static_cast<std::size_t>(i)]->stderrText();
    for (auto at = log.find("the request sent once more"); at != std::string::npos;
         at = log.find("the request sent once more", at + 1)) {
      ++resent;
    }
  }
  std::printf("requests sent again after a 421 while n1 left: %zu\n", resent);
  {
    PgBlocking db(pg().connectionString());
    auto r = db.run(
        "SELECT (SELECT count(*) FROM durable_slots WHERE owner = 'n1')::int8, "
        "(SELECT count(*) FROM durable_nodes WHERE name = 'n1' AND lease_until > clock_timestamp())::int8");
    EXPECT_EQ(durable::detail::pgInt8(r.get(), 0, 0), 0) << "a stopped node kept slots";
    EXPECT_EQ(durable::detail::pgInt8(r.get(), 0, 1), 0) << "a stopped node kept its lease";
  }
  std::this_thread::sleep_for(1s);
  // Clients of six rooms through n0, before the join; the rooms the joining node is given
  // close with 1012 and answer again through it.
  auto watchers = watchRooms(0);
  std::vector<int> ownerBefore;
  for (int r = 0; r < kRooms; ++r) ownerBefore.push_back(ownerOfName("lr" + std::to_string(r)));
  const auto joinedAt = Clock::now();
  nodes_.push_back(startNode(3));
  const auto deadline = Clock::now() + 10s;
  for (;;) {
    PgBlocking db(pg().connectionString());
    auto r = db.run("SELECT count(*)::int8 FROM durable_slots WHERE owner = 'n3'");
    if (durable::detail::pgInt8(r.get(), 0, 0) > 0) break;
    ASSERT_LT(Clock::now(), deadline) << "the joining node was given no slot";
    std::this_thread::sleep_for(100ms);
  }
  // Under load, through the joining node: every object answers within L + 2 s of its start.
  expectEveryObjectAnswersWithin(3, joinedAt, "the fourth node started");
  std::this_thread::sleep_for(1s);
  stop = true;
  for (auto& t : clients) t.join();
  std::map<int, long long> finals;
  untilEveryCounterAnswers(3, kLease + 2s, finals);
  checkInvariants(finals);
  checkChatHistories(3, kLease + 2s);
  checkAlarms(3, kLease + 2s);
  int moved = 0;
  for (int r = 0; r < kRooms; ++r) {
    auto& ws = *watchers[static_cast<std::size_t>(r)];
    const int now = ownerOfName("lr" + std::to_string(r));
    if (now != ownerBefore[static_cast<std::size_t>(r)]) {
      ++moved;
      const auto closed = ws.waitClosed(2s);
      EXPECT_EQ(closed.code, 1012) << "lr" << r << " moved from n" << ownerBefore[static_cast<std::size_t>(r)]
                                   << " to n" << now << ": " << closed.reason << closed.error;
    } else {
      ws.send(chatMessage("still here"));
      EXPECT_TRUE(messageComes(ws, "still here")) << "lr" << r;
    }
  }
  std::printf("rooms moved to the joining node: %d of %d\n", moved, kRooms);
  checkSingleActivation();

  // `durable cluster status`: the three live nodes hold every slot, the stopped one none.
  const auto listed = runCommand({binaryPath().string(), "cluster", "status", "--cluster", url()}, dir_.path());
  ASSERT_TRUE(listed.status.exited && listed.status.code == 0) << listed.err;
  const auto parsed = boost::json::parse(listed.out).as_object();
  EXPECT_EQ(parsed.at("unowned").as_int64(), 0) << listed.out;
  std::int64_t held = 0;
  std::set<std::string> live;
  for (const auto& n : parsed.at("nodes").as_array()) {
    const auto& node = n.as_object();
    const std::string name(node.at("name").as_string());
    if (node.at("live").as_bool()) live.insert(name);
    if (name == "n1") EXPECT_EQ(node.at("slots").as_int64(), 0) << listed.out;
    held += node.at("slots").as_int64();
  }
  EXPECT_EQ(live, (std::set<std::string>{"n0", "n2", "n3"})) << listed.out;
  EXPECT_EQ(held, parsed.at("slots").as_int64()) << listed.out;
}

// A node that relays a client's WebSocket to the object's owner and stops (SIGTERM) ends
// both sides with 1012: the client is told to reconnect, and the object's webSocketClose sees
// 1012 too, not an abnormal 1006.
TEST_F(ClusterTest, ARelayingNodeThatStopsClosesBothSidesWith1012) {
  std::string name;
  for (int k = 0; k < 40 && name.empty(); ++k) {
    const std::string candidate = "relayed-" + std::to_string(k);
    ASSERT_EQ(httpRequest("127.0.0.1", nodes_[0]->port(), "GET", "/probe/" + candidate + "/put?key=x&value=1").status, 204);
    if (ownerOfName(candidate) != 1) name = candidate;
  }
  ASSERT_FALSE(name.empty()) << "n1 held every probe";
  std::unique_ptr<WsClient> ws;
  try {
    ws = WsClient::connect("127.0.0.1", nodes_[1]->port(), "/probe/" + name + "/ws");
  } catch (const std::exception& e) {
    FAIL() << e.what() << "\n" << nodes_[1]->stderrText() << "\n" << nodes_[ownerOfName(name)]->stderrText();
  }
  ws->send("hi");
  EXPECT_EQ(ws->readText(3s), "echo:hi");
  const auto status = nodes_[1]->stop();
  EXPECT_TRUE(status.exited && status.code == 0) << status.describe();
  const auto closed = ws->waitClosed(3s);
  EXPECT_EQ(closed.code, 1012) << closed.reason << closed.error;
  std::int64_t seen = 0;
  for (const auto until = Clock::now() + 3s; seen == 0 && Clock::now() < until;) {
    const auto r = httpRequest("127.0.0.1", nodes_[0]->port(), "GET", "/probe/" + name + "/get");
    if (r.status == 200) seen = boost::json::parse(r.body).at("closedWith").as_int64();
    if (seen == 0) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(seen, 1012) << "the code the object's webSocketClose was given" << nodes_[1]->stderrText();
}

// A request that reached the object's node is never sent again, even when that node dies
// before it answers: the object may have run it (here it did, in part), so the caller gets
// 503 and the new owner never sees the request.
TEST_F(ClusterTest, ARequestDeliveredToANodeThatDiesIsNotSentAgain) {
  std::string name;
  for (int k = 0; k < 40 && name.empty(); ++k) {
    const std::string candidate = "delivered-" + std::to_string(k);
    ASSERT_EQ(httpRequest("127.0.0.1", nodes_[0]->port(), "GET", "/probe/" + candidate + "/put?key=x&value=1").status, 204);
    if (ownerOfName(candidate) == 1) name = candidate;
  }
  ASSERT_FALSE(name.empty()) << "n1 held none of the probes";
  HttpResponse answer;
  std::thread request([&] {
    try {
      answer = httpRequest("127.0.0.1", nodes_[0]->port(), "GET", "/probe/" + name + "/slow?ms=4000");
    } catch (const std::exception& e) {
      answer.body = e.what();
    }
  });
  // Its first write committed: the event runs on n1, in its sleep.
  {
    PgBlocking db(pg().connectionString());
    const auto until = Clock::now() + 3s;
    for (;;) {
      auto r = db.run("SELECT count(*)::int8 FROM durable_kv k JOIN durable_names n ON n.ns = k.ns AND n.obj = k.obj "
                      "WHERE n.name = '" + name + "' AND k.key = 'slow'");
      if (durable::detail::pgInt8(r.get(), 0, 0) == 1) break;
      ASSERT_LT(Clock::now(), until) << "the slow event did not start";
      std::this_thread::sleep_for(20ms);
    }
  }
  nodes_[1]->kill9();
  const auto killedAt = Clock::now();
  request.join();
  EXPECT_EQ(answer.status, 503) << answer.body;
  EXPECT_LT(Clock::now() - killedAt, 2s) << "the caller waited for the dead node past its connection's end";
  // On the node that took the slot: the first write, and nothing of a second run.
  for (const auto until = Clock::now() + kLease + 2s;;) {
    const auto r = httpRequest("127.0.0.1", nodes_[0]->port(), "GET", "/probe/" + name + "/get");
    if (r.status == 200) break;
    ASSERT_LT(Clock::now(), until) << "the probe did not answer after the kill: " << r.status << " " << r.body;
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(500ms);  // a resent request would have written again by now
  const auto again = boost::json::parse(httpRequest("127.0.0.1", nodes_[0]->port(), "GET", "/probe/" + name + "/get").body);
  EXPECT_EQ(again.at("slow").as_int64(), 1) << "the request ran again elsewhere";
  EXPECT_EQ(again.at("slowDone").as_int64(), 0);
}

// A node whose config's migrations are not the cluster's history refuses to join, and says why.
// A joining node takes its share of the slots by hand-off: the events already running on the
// slots that move finish, commit and answer where they run (the drain), and only then are the
// slots released to the new node.
TEST_F(ClusterTest, AHandOffToAJoiningNodeLetsTheEventsRunningThereFinish) {
  constexpr int kSlow = 40;
  std::vector<HttpResponse> answers(kSlow);
  std::vector<std::thread> requests;
  for (int k = 0; k < kSlow; ++k) {
    requests.emplace_back([&, k] {
      const auto& n = *nodes_[static_cast<std::size_t>(k % 3)];
      try {
        answers[static_cast<std::size_t>(k)] =
            httpRequest(n.host(), n.port(), "GET", "/probe/slow-" + std::to_string(k) + "/slow?ms=4000");
      } catch (const std::exception& e) {
        answers[static_cast<std::size_t>(k)].body = e.what();
      }
    });
  }
  // Once every slow event runs (its first write landed), the fourth node joins.
  {
    PgBlocking db(pg().connectionString());
    const auto until = Clock::now() + 3s;
    for (;;) {
      auto r = db.run("SELECT count(*)::int8 FROM durable_kv WHERE key = 'slow'");
      if (durable::detail::pgInt8(r.get(), 0, 0) == kSlow) break;
      ASSERT_LT(Clock::now(), until) << "the slow events did not start";
      std::this_thread::sleep_for(20ms);
    }
  }
  nodes_.push_back(startNode(3));
  for (auto& t : requests) t.join();
  for (int k = 0; k < kSlow; ++k) {
    EXPECT_EQ(answers[static_cast<std::size_t>(k)].status, 200) << "slow-" << k << ": " << answers[static_cast<std::size_t>(k)].body;
  }
  PgBlocking db(pg().connectionString());
  const auto deadline = Clock::now() + 10s;
  std::int64_t taken = 0;
  while (taken == 0 && Clock::now() < deadline) {
    auto n3 = db.run("SELECT count(*)::int8 FROM durable_slots WHERE owner = 'n3'");
    taken = durable::detail::pgInt8(n3.get(), 0, 0);
    if (taken == 0) std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(taken, 0) << "the joining node took no slot";
  // The hand-off began while the slow events ran: some node waited for them before releasing
  // (its log says so once it released, a round after they ended).
  int waited = 0;
  std::string handed;
  for (const auto logged = Clock::now() + 5s; waited == 0 && Clock::now() < logged;) {
    handed.clear();
    for (int i = 0; i < 3; ++i) {
      std::istringstream lines(nodes_[static_cast<std::size_t>(i)]->stderrText());
      for (std::string line; std::getline(lines, line);) {
        const auto at = line.find(" rounds waiting");
        if (at == std::string::npos) continue;
        handed += line + "\n";
        const auto start = line.rfind('(', at);
        waited = std::max(waited, std::stoi(line.substr(start + 1, at - start - 1)));
      }
    }
    if (waited == 0) std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(waited, 0) << "no hand-off overlapped the slow events: the test shows nothing\n" << handed;
  // Each object's second write landed: the slow event ran to its end on one node.
  auto done = db.run("SELECT count(*)::int8 FROM durable_kv k JOIN durable_names n ON n.ns = k.ns AND n.obj = k.obj "
                     "WHERE n.name LIKE 'slow-%' AND k.key = 'slowDone'");
  EXPECT_EQ(durable::detail::pgInt8(done.get(), 0, 0), kSlow);
}

TEST_F(ClusterTest, ANodeWhoseMigrationsDifferRefusesToJoin) {
  std::string altered = readFile(config_);
  const auto at = altered.find("v2-rooms");
  ASSERT_NE(at, std::string::npos);
  altered.replace(at, 8, "v2-other");
  const auto other = dir_ / "other.toml";
  writeFile(other, altered);
  const auto r = runCommand({nodeBinary(0).string(), "serve", "--config", other.string(), "--listen", "127.0.0.1:0",
                             "--admin", "off", "--persist-to", (dir_ / "n9").string(), "--cluster", url(), "--node", "n9"},
                            dir_.path());
  EXPECT_FALSE(r.status.exited && r.status.code == 0) << r.out;
  EXPECT_NE(r.err.find("migration"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("v2-rooms"), std::string::npos) << r.err;
  PgBlocking db(pg().connectionString());
  auto rows = db.run("SELECT count(*)::int8 FROM durable_nodes WHERE name = 'n9'");
  EXPECT_EQ(durable::detail::pgInt8(rows.get(), 0, 0), 0) << "the refused node registered";

  // One migration more than the cluster's, while other nodes serve: refused too, and the
  // cluster's classes stay as they were (a node started with the cluster's config still joins).
  const auto ahead = dir_ / "ahead.toml";
  writeFile(ahead, readFile(config_) + "\n[[migrations]]\ntag = \"v3-ahead\"\nnew_classes = []\n");
  const auto refused = runCommand({nodeBinary(0).string(), "serve", "--config", ahead.string(), "--listen", "127.0.0.1:0",
                                   "--admin", "off", "--persist-to", (dir_ / "n8").string(), "--cluster", url(), "--node",
                                   "n8"},
                                  dir_.path());
  EXPECT_FALSE(refused.status.exited && refused.status.code == 0) << refused.out;
  EXPECT_NE(refused.err.find("v3-ahead is not applied in the cluster"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("n0, n1, n2"), std::string::npos) << refused.err;
  nodes_.push_back(startNode(3));
  const auto r2 = httpRequest(nodes_[3]->host(), nodes_[3]->port(), "POST", "/counters/after-ahead/increment");
  EXPECT_EQ(r2.status, 200) << r2.body;
}

// The admin API of a cluster node reads PostgreSQL without holding up the shard that asks: a
// description that waits on a lock in PostgreSQL leaves the object it describes serving.
class ClusterAdminTest : public ClusterTest {
 protected:
  bool adminApi() const override { return true; }
};

TEST_F(ClusterAdminTest, AdminReadsComeFromPostgresWithoutHoldingUpTheShard) {
  const auto& n0 = *nodes_[0];
  ASSERT_NE(n0.adminPort(), 0);
  auto admin = [&](const std::string& target) {
    const auto r = httpRequest("127.0.0.1", n0.adminPort(), "GET", target);
    EXPECT_EQ(r.status, 200) << target << ": " << r.body;
    return boost::json::parse(r.body);
  };
  for (int c = 0; c < 20; ++c) {
    const auto r = httpRequest(n0.host(), n0.port(), "POST", "/counters/adm-" + std::to_string(c) + "/increment");
    ASSERT_EQ(r.status, 200) << r.body;
  }
  long long counted = -1;
  const auto namespaces = admin("/admin/namespaces");
  for (const auto& ns : namespaces.as_array()) {
    if (ns.at("binding") == "COUNTER") counted = ns.at("objects").as_int64();
  }
  EXPECT_EQ(counted, 20) << "every node counts the cluster's objects, wherever they live";

  // Pages of 7 through the cluster's objects; those held by this node are live here.
  std::set<std::string> names;
  std::string liveId, liveName;
  std::string cursor;
  for (int page = 0; page < 5; ++page) {
    auto j = admin("/admin/namespaces/COUNTER/objects?limit=7" + (cursor.empty() ? "" : "&cursor=" + cursor)).as_object();
    for (const auto& o : j.at("objects").as_array()) {
      const auto& obj = o.as_object();
      names.insert(std::string(obj.at("name").as_string()));
      EXPECT_GE(obj.at("keys").as_int64(), 1) << boost::json::serialize(obj);
      if (obj.at("live").as_bool() && liveId.empty()) {
        liveId = obj.at("id").as_string();
        liveName = obj.at("name").as_string();
      }
    }
    if (j.at("cursor").is_null()) break;
    cursor = j.at("cursor").as_string();
  }
  EXPECT_EQ(names.size(), 20u);
  ASSERT_FALSE(liveId.empty()) << "none of 20 objects is held by n0";

  // GET /cluster: what `durable cluster status` prints, from any node's admin listener.
  const auto status = admin("/cluster").as_object();
  EXPECT_EQ(status.at("slots").as_int64(), 4096);
  EXPECT_EQ(status.at("unowned").as_int64(), 0);
  std::int64_t held = 0;
  std::set<std::string> live;
  for (const auto& n : status.at("nodes").as_array()) {
    if (n.at("live").as_bool()) live.insert(std::string(n.at("name").as_string()));
    EXPECT_GT(n.at("leaseRemainingMs").as_int64(), 0) << boost::json::serialize(n);
    held += n.at("slots").as_int64();
  }
  EXPECT_EQ(live, (std::set<std::string>{"n0", "n1", "n2"}));
  EXPECT_EQ(held, 4096);
  const auto described = admin("/admin/namespaces/COUNTER/objects/" + liveId).as_object();
  EXPECT_EQ(described.at("name").as_string(), liveName);
  EXPECT_GE(described.at("keys").as_int64(), 1);

  // The description reads durable_names, which a transaction here holds locked.
  PgBlocking locker(pg().connectionString());
  locker.script("BEGIN");
  locker.run("LOCK TABLE durable_names IN ACCESS EXCLUSIVE MODE");
  std::atomic<bool> answered{false};
  HttpResponse late;
  std::thread describing([&] {
    late = httpRequest("127.0.0.1", n0.adminPort(), "GET", "/admin/namespaces/COUNTER/objects/" + liveId);
    answered = true;
  });
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(answered) << "the description did not wait for the lock: the test shows nothing";
  const auto started = Clock::now();
  HttpConnection conn(n0.host(), n0.port(), 5s);
  const auto r = conn.post("/counters/" + liveName + "/increment");
  const auto took = Clock::now() - started;
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(countOf(r), 2);
  EXPECT_LT(took, 2s) << "the object waited for the admin API's read";
  EXPECT_FALSE(answered);
  locker.script("COMMIT");
  describing.join();
  EXPECT_EQ(late.status, 200) << late.body;
  EXPECT_EQ(boost::json::parse(late.body).at("name").as_string(), liveName);
}

// A frame an object sends after its node's lease may have lapsed never leaves: the client is
// told to reconnect (1012) instead. The object's shard thread is held busy past the lapse, so
// that the lease watch (which would close the socket first) cannot run before the send.
TEST_F(ClusterAdminTest, AWebSocketFrameSentAfterTheLeaseMayHaveLapsedNeverLeaves) {
  const auto put = httpRequest(nodes_[0]->host(), nodes_[0]->port(), "GET", "/probe/stall-1/put?key=k&value=v");
  ASSERT_EQ(put.status, 204) << put.body;
  int owner = -1;
  for (int i = 0; i < 3 && owner < 0; ++i) {
    const auto r = httpRequest("127.0.0.1", nodes_[static_cast<std::size_t>(i)]->adminPort(), "GET",
                               "/admin/namespaces/PROBE/objects");
    ASSERT_EQ(r.status, 200) << r.body;
    const auto page = boost::json::parse(r.body);
    for (const auto& o : page.at("objects").as_array()) {
      if (o.at("name") == "stall-1" && o.at("live").as_bool()) owner = i;
    }
  }
  ASSERT_GE(owner, 0) << "no node holds the probe";
  const auto& n = *nodes_[static_cast<std::size_t>(owner)];
  auto ws = WsClient::connect(n.host(), n.port(), "/probe/stall-1/ws");
  ws->send("hello");
  EXPECT_EQ(ws->readText(5s), "echo:hello");

  ws->send("stall:2500");
  std::this_thread::sleep_for(100ms);
  pg().pause();  // no renewal reaches it: the lease lapses 0.9 L after the last one
  WsClosed closed;
  try {
    closed = ws->waitClosed(10s);
  } catch (const std::exception& e) {
    pg().resume();
    FAIL() << e.what();
  }
  pg().resume();
  EXPECT_EQ(closed.code, 1012) << closed.reason << closed.error;
  const auto left = ws->read(50ms);
  EXPECT_FALSE(left.has_value()) << "the frame left: " << (left ? left->data : "");
}

// A node that listens on every address and advertises none would give the others an address
// they cannot connect to: refused before anything starts, saying what to pass.
TEST(ClusterCli, ListeningOnEveryAddressWithoutAnAdvertisedOneIsRefused) {
  TempDir dir;
  for (const char* listen : {"0.0.0.0:0", "[::]:0"}) {
    const auto r = runCommand({binaryPath().string(), "serve", "--config", seedConfig().string(), "--listen", listen,
                               "--persist-to", (dir.path() / "state").string(), "--cluster",
                               "postgresql://127.0.0.1:1/none", "--node", "n1"},
                              dir.path());
    EXPECT_TRUE(r.status.exited && r.status.code == 2) << listen << ": " << r.err;
    EXPECT_NE(r.err.find("--advertise"), std::string::npos) << r.err;
  }
}

// The demo app itself (its SQLite-backed Notes included) on three nodes.
class ClusterDemoTest : public ClusterTest {
 protected:
  fs::path nodeBinary(int) const override { return binaryPath(); }
  fs::path baseConfig() const override { return seedConfig(); }
  std::string extraConfig() const override { return ""; }
  // Objects leave memory after 300 ms without events: WebSockets hibernate within a test.
  std::vector<std::string> nodeArgs() const override { return {"--idle-timeout-ms", "300"}; }
};

// A SQLite-backed object in cluster mode: its database is rebuilt on whichever node holds it
// from the SQL log in PostgreSQL, so its notes (and their full-text index) survive the death
// of the node that wrote them.
TEST_F(ClusterDemoTest, NotesWrittenThroughOneNodeAreReadThroughAnyAndOutliveTheirNode) {
  auto post = [&](int node, const std::string& text) {
    return httpRequest(nodes_[static_cast<std::size_t>(node)]->host(), nodes_[static_cast<std::size_t>(node)]->port(),
                       "POST", "/notes/book", "{\"text\": \"" + text + "\"}");
  };
  for (int i = 0; i < 5; ++i) {
    const auto r = post(0, "note " + std::to_string(i) + (i % 2 ? " odd" : " even"));
    ASSERT_EQ(r.status, 201) << r.body;
  }
  const auto all = httpRequest(nodes_[1]->host(), nodes_[1]->port(), "GET", "/notes/book");
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(boost::json::parse(all.body).as_array().size(), 5u) << all.body;
  const auto odd = httpRequest(nodes_[2]->host(), nodes_[2]->port(), "GET", "/notes/book?q=odd");
  ASSERT_EQ(odd.status, 200) << odd.body;
  EXPECT_EQ(boost::json::parse(odd.body).as_array().size(), 2u) << odd.body;

  // Kill the node that holds the notebook; a survivor takes its slot and rebuilds it.
  std::string owner;
  {
    PgBlocking db(pg().connectionString());
    auto r = db.run("SELECT owner FROM durable_slots WHERE slot = (SELECT slot FROM durable_sqllog LIMIT 1)");
    ASSERT_EQ(PQntuples(r.get()), 1);
    owner = std::string(durable::detail::pgBytes(r.get(), 0, 0));
  }
  const int victim = owner.back() - '0';
  const int survivor = (victim + 1) % 3;
  nodes_[static_cast<std::size_t>(victim)]->kill9();
  const auto deadline = Clock::now() + kLease + 5s;
  HttpResponse after;
  for (;;) {
    after = httpRequest(nodes_[static_cast<std::size_t>(survivor)]->host(),
                        nodes_[static_cast<std::size_t>(survivor)]->port(), "GET", "/notes/book?q=even");
    if (after.status == 200) break;
    ASSERT_LT(Clock::now(), deadline) << after.status << " " << after.body;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(boost::json::parse(after.body).as_array().size(), 3u) << after.body;
  EXPECT_EQ(post(survivor, "after the failover").status, 201);
  const auto last = httpRequest(nodes_[static_cast<std::size_t>(survivor)]->host(),
                                nodes_[static_cast<std::size_t>(survivor)]->port(), "GET", "/notes/book");
  EXPECT_EQ(boost::json::parse(last.body).as_array().size(), 6u) << last.body;
}

// The demo app's routes through every node, each object in one place: counters count on
// whichever node takes each request, a rate limit is one budget over all nodes, a task's alarm is
// set through one node and cancelled through another, a room's history reads the same anywhere.
TEST_F(ClusterDemoTest, TheDemoAppAnswersTheSameThroughEveryNode) {
  auto call = [&](int i, const std::string& method, const std::string& target,
                  const std::map<std::string, std::string>& headers = {}) {
    const auto& n = *nodes_[static_cast<std::size_t>(i % 3)];
    HttpConnection http(n.host(), n.port());
    return http.request(method, target, "", headers);
  };
  for (int c = 0; c < 6; ++c) {
    const std::string counter = "/counters/demo-" + std::to_string(c);
    for (int k = 1; k <= 9; ++k) {
      const auto r = call(k + c, "POST", counter + "/increment");
      ASSERT_EQ(r.status, 200) << r.body;
      EXPECT_EQ(countOf(r), k) << counter << " through n" << (k + c) % 3;
    }
    for (int i = 0; i < 3; ++i) EXPECT_EQ(countOf(call(i, "GET", counter)), 9) << counter << " through n" << i;
    EXPECT_EQ(call(c + 1, "POST", counter + "/reset").status, 200);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(countOf(call(i, "GET", counter)), 0) << counter << " through n" << i;
  }

  // /api-small/* allows 5 requests per 10 s per client address: the budget is one object's.
  for (int k = 0; k < 8; ++k) {
    const auto r = call(k, "GET", "/api-small/ping", {{"cf-connecting-ip", "203.0.113.9"}});
    EXPECT_EQ(r.status, k < 5 ? 200 : 429) << "request " << k << " through n" << k % 3 << ": " << r.body;
  }

  auto alarmOf = [&](const std::string& name) -> std::optional<long long> {
    PgBlocking db(pg().connectionString());
    auto r = db.run("SELECT a.time FROM durable_alarms a JOIN durable_names n ON n.ns = a.ns AND n.obj = a.obj "
                    "WHERE n.name = '" + name + "'");
    if (PQntuples(r.get()) == 0) return std::nullopt;
    return durable::detail::pgInt8(r.get(), 0, 0);
  };
  for (int t = 0; t < 3; ++t) {
    const std::string task = "demo-task-" + std::to_string(t);
    const auto scheduled = call(t, "POST", "/tasks/" + task + "/schedule");
    ASSERT_EQ(scheduled.status, 200) << scheduled.body;
    const auto when = boost::json::parse(scheduled.body).as_object().at("scheduledTime").as_int64();
    EXPECT_EQ(alarmOf(task), when) << task;
    const auto cancelled = call(t + 1, "GET", "/tasks/" + task + "/cancel");
    ASSERT_EQ(cancelled.status, 200) << cancelled.body;
    EXPECT_EQ(cancelled.body, R"({"cancelled":true})");
    EXPECT_EQ(alarmOf(task), std::nullopt) << task;
  }

  // A room's history, written through clients of two nodes, read through all three.
  {
    auto a = WsClient::connect(nodes_[0]->host(), nodes_[0]->port(), "/rooms/demo-room/websocket?user=ann");
    auto b = WsClient::connect(nodes_[1]->host(), nodes_[1]->port(), "/rooms/demo-room/websocket?user=bob");
    a->send(R"({"type":"message","content":"one"})");
    b->send(R"({"type":"message","content":"two"})");
    int seen = 0;
    for (auto* ws : {a.get(), b.get()}) {
      for (int m = 0; m < 2;) {
        const auto f = boost::json::parse(ws->readText(10s)).as_object();
        if (f.at("type") == "message") ++m, ++seen;
      }
    }
    EXPECT_EQ(seen, 4);
  }
  std::string first;
  for (int i = 0; i < 3; ++i) {
    const auto h = call(i, "GET", "/rooms/demo-room/history");
    ASSERT_EQ(h.status, 200) << h.body;
    const auto messages = boost::json::parse(h.body).as_array();
    ASSERT_EQ(messages.size(), 2u) << h.body;
    if (i == 0) first = h.body;
    EXPECT_EQ(h.body, first) << "n" << i << " reads another history";
  }
}

// A WebSocket's TCP connection stays on the node that accepted it, which relays it to the node
// holding the object: one room serves clients of every node, and when the room's slot moves
// (SIGTERM of its node, or kill -9) its clients get 1012 and find it again on the new owner.
TEST_F(ClusterDemoTest, WebSocketsReachTheirRoomThroughAnyNodeAndCloseWith1012WhenItMoves) {
  auto node = [&](int i) -> ServerProcess& { return *nodes_[static_cast<std::size_t>(i)]; };
  auto join = [&](int i, const std::string& room, const std::string& user) {
    auto ws = WsClient::connect(node(i).host(), node(i).port(), "/rooms/" + room + "/websocket?user=" + user);
    nextOfType(*ws, "history");
    return ws;
  };
  auto ownerOf = [&](const std::string& room) { return ownerOfName(room); };

  // Six rooms, each with one client through every node: whoever holds a room, at least two of
  // its clients are relayed, and all three hear each message once.
  std::map<std::string, std::vector<std::unique_ptr<WsClient>>> rooms;
  for (int r = 0; r < 6; ++r) {
    const std::string room = "room-" + std::to_string(r);
    for (int i = 0; i < 3; ++i) rooms[room].push_back(join(i, room, "u" + std::to_string(i)));
    rooms[room][static_cast<std::size_t>(r % 3)]->send(chatMessage("hello " + room));
    for (auto& ws : rooms[room]) {
      const auto m = nextOfType(*ws, "message");
      EXPECT_EQ(m.at("content"), ("hello " + room).c_str());
      EXPECT_EQ(m.at("user"), ("u" + std::to_string(r % 3)).c_str());
    }
  }
  // The hibernation API (tags, getWebSockets) of a room held on one node, from clients of two.
  {
    auto a = WsClient::connect(node(0).host(), node(0).port(), "/hibernating/h1/websocket");
    auto b = WsClient::connect(node(2).host(), node(2).port(), "/hibernating/h1/websocket");
    // Frames of every length form (7, 16 and 64 bits) cross whole, in order.
    const std::vector<std::string> sent = {std::string("\x00\xff relayed", 10), std::string(40000, 'm'),
                                           std::string(300000, 'L'), "after"};
    for (const auto& m : sent) a->sendBinary(m);
    for (auto* ws : {a.get(), b.get()}) {
      for (const auto& want : sent) {
        const auto m = ws->read(10s);
        ASSERT_TRUE(m);
        EXPECT_TRUE(m->binary);
        EXPECT_EQ(m->data, want);
      }
    }
  }

  // Hibernation through a relay: the room's instance is evicted (idle 300 ms) while its
  // sockets stay open on its node, and the next message, from a relayed client, wakes it.
  {
    auto a = WsClient::connect(node(0).host(), node(0).port(), "/hibernating/h2/websocket");
    auto b = WsClient::connect(node(1).host(), node(1).port(), "/hibernating/h2/websocket");
    auto c = WsClient::connect(node(2).host(), node(2).port(), "/hibernating/h2/websocket");
    std::this_thread::sleep_for(1500ms);
    for (auto* from : {a.get(), b.get(), c.get()}) {
      from->send("after a sleep");
      for (auto* ws : {a.get(), b.get(), c.get()}) EXPECT_EQ(ws->readText(10s), "after a sleep");
    }
  }
  // SIGTERM of room-0's node: every client of the room, relayed or not, hears 1012.
  const int first = ownerOf("room-0");
  ASSERT_GE(first, 0);
  // Stopped beside the clients, which answer the close frames as they come (as a browser would).
  ExitStatus status;
  std::thread stopper([&] { status = node(first).stop(); });
  for (int i = 0; i < 3; ++i) {
    const auto closed = rooms["room-0"][static_cast<std::size_t>(i)]->waitClosed(5s);
    EXPECT_TRUE(closed.clean) << "through n" << i << " (the owner was n" << first << "): " << closed.error;
    EXPECT_EQ(closed.code, 1012) << closed.reason;
  }
  stopper.join();
  EXPECT_TRUE(status.exited && status.code == 0) << status.describe();
  const int a = (first + 1) % 3, b = (first + 2) % 3;
  // The room answers again through a survivor once its slot is claimed, its history moved with it.
  auto reconnect = [&](int i, const std::string& room, Clock::duration within) {
    const auto deadline = Clock::now() + within;
    for (;;) {
      try {
        auto ws = WsClient::connect(node(i).host(), node(i).port(), "/rooms/" + room + "/websocket?user=back");
        return historyHas(nextOfType(*ws, "history"), room == "room-0" ? "hello room-0" : "before the kill");
      } catch (const WsError& e) {
        if (Clock::now() > deadline) {
          ADD_FAILURE() << room << " did not answer through n" << i << ": " << e.what() << " " << e.body;
          return false;
        }
        std::this_thread::sleep_for(50ms);
      }
    }
  };
  EXPECT_TRUE(reconnect(a, "room-0", kLease + 2s));

  // kill -9 of a node that holds a room: a client relayed to it through the other survivor
  // hears 1012 from its own node, which saw the connection to the owner end.
  std::string victimRoom;
  int victim = -1;
  for (int r = 1; r < 6 && victim < 0; ++r) {
    const std::string room = "room-" + std::to_string(r);
    for (int tries = 0; tries < 50; ++tries) {
      const int owner = ownerOf(room);
      if (owner == a || owner == b) {
        victimRoom = room;
        victim = owner;
        break;
      }
      std::this_thread::sleep_for(100ms);  // room-0's node's slots are being claimed
    }
  }
  ASSERT_GE(victim, 0) << "no room is held by a survivor";
  const int entry = victim == a ? b : a;
  auto relayed = join(entry, victimRoom, "relayed");
  // A 16-bit-length frame on the way first: the relay still knows where frames end.
  relayed->send(chatMessage(std::string(30000, 'p')));
  EXPECT_EQ(nextOfType(*relayed, "message").at("content").as_string().size(), 30000u);
  relayed->send(chatMessage("before the kill"));
  EXPECT_EQ(nextOfType(*relayed, "message").at("content"), "before the kill");
  node(victim).kill9();
  const auto closed = relayed->waitClosed(5s);
  EXPECT_TRUE(closed.clean) << closed.error;
  EXPECT_EQ(closed.code, 1012) << closed.reason;
  // The survivor claims the slot once the lease runs out, and serves the room with its history.
  EXPECT_TRUE(reconnect(entry, victimRoom, kLease + 2s));
}

// One node in a network namespace of the test's own, joined to the others and to PostgreSQL by a
// veth pair; cutting the pair's link cuts it off from both.
class ClusterPartitionTest : public ClusterTest {
 protected:
  static constexpr const char* kHostIp = "10.231.0.1";
  static constexpr const char* kIsolatedIp = "10.231.0.2";

  static void ip(const std::vector<std::string>& args, const fs::path& scratch) {
    std::vector<std::string> argv{"/usr/sbin/ip"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = runCommand(argv, scratch, 10s);
    if (!r.status.exited || r.status.code != 0) throw std::runtime_error("ip failed: " + r.err);
  }

  void prepareNetwork() override {
    if (::geteuid() != 0 || !fs::exists("/usr/sbin/ip")) GTEST_SKIP() << "network namespaces need root and iproute2";
    const auto id = std::to_string(::getpid() % 100000);
    netns_ = "durable-it-" + id;
    hostIf_ = "dvh" + id;
    const std::string nsIf = "dvn" + id;
    ip({"netns", "add", netns_}, dir_.path());
    ip({"link", "add", hostIf_, "type", "veth", "peer", "name", nsIf}, dir_.path());
    ip({"link", "set", nsIf, "netns", netns_}, dir_.path());
    ip({"addr", "add", std::string(kHostIp) + "/24", "dev", hostIf_}, dir_.path());
    ip({"link", "set", hostIf_, "up"}, dir_.path());
    ip({"netns", "exec", netns_, "ip", "addr", "add", std::string(kIsolatedIp) + "/24", "dev", nsIf}, dir_.path());
    ip({"netns", "exec", netns_, "ip", "link", "set", nsIf, "up"}, dir_.path());
    ip({"netns", "exec", netns_, "ip", "link", "set", "lo", "up"}, dir_.path());
    wrapper_ = dir_ / "in-namespace.sh";
    writeFile(wrapper_, "#!/bin/sh\nexec /usr/sbin/ip netns exec " + netns_ + " " + testServerPath().string() + " \"$@\"\n");
    fs::permissions(wrapper_, fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
  }

  void afterPostgres() override {
    // initdb trusts loopback only: the veth addresses too.
    const auto hba = pg().dir() / "data" / "pg_hba.conf";
    writeFile(hba, readFile(hba) + "host all all 10.231.0.0/24 trust\n");
    pg().stop();
    pg().start();
  }

  void TearDown() override {
    ClusterTest::TearDown();
    nodes_.clear();
    if (!netns_.empty()) {
      try {
        ip({"netns", "del", netns_}, dir_.path());  // takes its end of the pair, and so the pair
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    }
  }

  std::string nodeHost(int i) const override { return i == 2 ? kIsolatedIp : kHostIp; }
  fs::path nodeBinary(int i) const override { return i == 2 ? wrapper_ : testServerPath(); }
  std::vector<std::string> postgresSettings() const override {
    return {std::string("listen_addresses=127.0.0.1,") + kHostIp};
  }
  std::string url() const override {
    return std::string("host=") + kHostIp + " port=" + std::to_string(pg().port()) + " user=durable dbname=postgres";
  }

  std::string netns_, hostIf_;
  fs::path wrapper_;
};

TEST_F(ClusterPartitionTest, ANodeCutOffFromPostgresAndItsPeersLosesNothingAndServesAgainWhenHealed) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i) clients.emplace_back([this, i, &stop] { load(i, stop); });
  for (int i : {0, 1}) clients.emplace_back([this, i, &stop] { chatLoad(i, stop); });
  setAlarms(0, "x", 2000);  // due while n2 is cut off
  std::this_thread::sleep_for(1500ms);
  ip({"link", "set", hostIf_, "down"}, dir_.path());
  std::this_thread::sleep_for(kLease + 2s);
  {
    PgBlocking db(pg().connectionString());
    auto r = db.run("SELECT count(*)::int8 FROM durable_slots WHERE owner = 'n2'");
    EXPECT_EQ(durable::detail::pgInt8(r.get(), 0, 0), 0) << "the others did not take the cut-off node's slots";
  }
  ip({"link", "set", hostIf_, "up"}, dir_.path());
  // Through the node that was cut off, under the load still running: it serves every object
  // again within L + 2 s of the healing, the others' writes included.
  expectEveryObjectAnswersWithin(2, Clock::now(), "the healing");
  std::this_thread::sleep_for(500ms);
  stop = true;
  for (auto& t : clients) t.join();
  std::map<int, long long> finals;
  untilEveryCounterAnswers(2, 5s, finals);
  std::map<int, long long> again;
  untilEveryCounterAnswers(0, 5s, again);
  EXPECT_EQ(finals, again);
  checkInvariants(finals);
  checkChatHistories(2, kLease + 5s);
  checkAlarms(2, kLease + 2s);
  checkSingleActivation();
}

}  // namespace
}  // namespace durable_it
