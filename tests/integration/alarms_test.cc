// Alarms in the real server process (durable_test_server, tests/support/): acknowledged alarms
// survive kill -9 and fire after the restart, an alarm due while the server was down fires
// right after it comes back (late, not lost), and a clean SIGTERM restart keeps a pending one.
#include "integration/server_process.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace durable_it {
namespace {

namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;

std::int64_t epochMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct ProbeState {
  std::int64_t fired = -1;
  std::optional<std::int64_t> alarm;
  std::optional<std::int64_t> last;
};

std::optional<std::int64_t> intOrNull(const boost::json::object& o, const char* key) {
  const auto& v = o.at(key);
  if (v.is_null()) return std::nullopt;
  return v.as_int64();
}

class AlarmIntegrationTest : public ::testing::Test {
 protected:
  fs::path stateDir() const { return dir_ / "state"; }

  std::unique_ptr<ServerProcess> startServer() {
    ServerProcess::Options o;
    o.binary = testServerPath();
    o.config = testServerConfig();
    o.persistDir = stateDir();
    o.stderrLog = dir_ / ("server-" + std::to_string(++starts_) + ".log");
    lastLog_ = o.stderrLog;
    return ServerProcess::start(std::move(o));
  }

  void TearDown() override {
    if (HasFailure() && !lastLog_.empty()) {
      std::cerr << "---- last server stderr (" << lastLog_ << ") ----\n" << readFile(lastLog_) << "----\n";
    }
  }

  static std::int64_t setProbe(HttpConnection& c, const std::string& id, std::int64_t inMs) {
    auto r = c.get("/probe/" + id + "/set?in=" + std::to_string(inMs));
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/json");
    return boost::json::parse(r.body).as_object().at("scheduledTime").as_int64();
  }

  static ProbeState getProbe(HttpConnection& c, const std::string& id) {
    auto r = c.get("/probe/" + id + "/get");
    EXPECT_EQ(r.status, 200) << r.body;
    ProbeState s;
    if (r.status != 200) return s;
    const auto o = boost::json::parse(r.body).as_object();
    s.fired = o.at("fired").as_int64();
    s.alarm = intOrNull(o, "alarm");
    s.last = intOrNull(o, "last");
    return s;
  }

  TempDir dir_;
  int starts_ = 0;
  fs::path lastLog_;
};

TEST_F(AlarmIntegrationTest, AcknowledgedAlarmsSurviveKillNine) {
  constexpr int kProbes = 20;
  std::vector<std::int64_t> scheduled;
  std::int64_t acknowledgedAt = 0;
  {
    auto server = startServer();
    HttpConnection c(server->host(), server->port());
    const auto t0 = epochMs();
    for (int i = 0; i < kProbes; ++i) {
      const auto before = epochMs();
      const auto t = setProbe(c, "p" + std::to_string(i), 1500);
      EXPECT_GE(t, before + 1500);
      EXPECT_LE(t, epochMs() + 1500);
      scheduled.push_back(t);
    }
    acknowledgedAt = epochMs();
    server->kill9();
    // The point of the test: every alarm was still pending at the kill.
    EXPECT_LT(acknowledgedAt, t0 + 1500) << "setting the alarms took too long for the test to mean anything";
  }

  auto server = startServer();
  HttpConnection c(server->host(), server->port());
  // Pending after the restart (unless already due and fired): set, not yet run, not early.
  const auto deadline = Steady::now() + std::chrono::seconds(10);
  std::vector<ProbeState> states(kProbes);
  for (;;) {
    bool all = true;
    for (int i = 0; i < kProbes; ++i) {
      if (states[i].fired == 1) continue;
      const auto asked = epochMs();
      states[i] = getProbe(c, "p" + std::to_string(i));
      if (states[i].fired == 0) {
        EXPECT_EQ(states[i].alarm, scheduled[i]) << "probe " << i;
        all = false;
      } else {
        EXPECT_EQ(states[i].fired, 1) << "probe " << i;
        // Not early: it ran at or after its time (the reply came after the run).
        EXPECT_GE(epochMs(), scheduled[i]) << "probe " << i << " asked at " << asked;
      }
    }
    if (all || Steady::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (int i = 0; i < kProbes; ++i) {
    SCOPED_TRACE("probe " + std::to_string(i));
    auto s = getProbe(c, "p" + std::to_string(i));
    EXPECT_EQ(s.fired, 1);
    EXPECT_EQ(s.last, scheduled[i]);
    EXPECT_EQ(s.alarm, std::nullopt);
  }
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(AlarmIntegrationTest, AlarmDueWhileDownFiresRightAfterRestart) {
  std::int64_t t = 0;
  {
    auto server = startServer();
    HttpConnection c(server->host(), server->port());
    t = setProbe(c, "late", 800);
    EXPECT_EQ(getProbe(c, "late").fired, 0);
    server->kill9();
  }
  // Down past its time.
  while (epochMs() < t + 400) std::this_thread::sleep_for(std::chrono::milliseconds(20));

  const auto restartAt = Steady::now();
  auto server = startServer();
  HttpConnection c(server->host(), server->port());
  ProbeState s;
  const auto deadline = Steady::now() + std::chrono::seconds(5);
  do {
    s = getProbe(c, "late");
    if (s.fired != 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (Steady::now() < deadline);
  EXPECT_EQ(s.fired, 1);
  EXPECT_EQ(s.last, t);
  EXPECT_EQ(s.alarm, std::nullopt);
  // Right after the restart, not after some further delay.
  EXPECT_LT(Steady::now() - restartAt, std::chrono::seconds(3));
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(AlarmIntegrationTest, CleanRestartKeepsAPendingAlarm) {
  std::int64_t t = 0;
  {
    auto server = startServer();
    HttpConnection c(server->host(), server->port());
    t = setProbe(c, "pending", 2500);
    EXPECT_EQ(server->stop().describe(), "exit code 0");
  }
  auto server = startServer();
  HttpConnection c(server->host(), server->port());
  auto before = getProbe(c, "pending");
  if (epochMs() < t) {
    EXPECT_EQ(before.fired, 0);
    EXPECT_EQ(before.alarm, t);
  }
  ProbeState s;
  const auto deadline = Steady::now() + std::chrono::seconds(8);
  do {
    s = getProbe(c, "pending");
    if (s.fired != 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (Steady::now() < deadline);
  EXPECT_GE(epochMs(), t);
  EXPECT_EQ(s.fired, 1);
  EXPECT_EQ(s.last, t);
  EXPECT_EQ(s.alarm, std::nullopt);

  // It ran once: later reads, and another clean restart, change nothing.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(getProbe(c, "pending").fired, 1);
  EXPECT_EQ(server->stop().describe(), "exit code 0");
  server = startServer();
  HttpConnection c2(server->host(), server->port());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto after = getProbe(c2, "pending");
  EXPECT_EQ(after.fired, 1);
  EXPECT_EQ(after.alarm, std::nullopt);
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

}  // namespace
}  // namespace durable_it
