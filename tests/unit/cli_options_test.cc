// The command line's pieces without a server: option values, --listen, the default state
// directory, the state directory's lock (also through durable::testing::Env), the log line
// format and the config keys behind them (name, [durable] access_log).
#include "cli/options.h"
#include "config/config.h"
#include "base/log.h"
#include "runtime/state_lock.h"

#include <durable/error.h>
#include <durable/server.h>
#include <durable/testing.h>

#include <gtest/gtest.h>

#include <csignal>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <regex>

namespace durable {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the system's temporary directory, removed afterwards.
struct ScratchDir {
  fs::path path;
  ScratchDir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("durable-cli-unit-" + std::to_string(::getpid()) + "-" + std::to_string(++n));
    fs::remove_all(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string usageMessage(std::string_view flag, std::string_view text, std::int64_t lo, std::int64_t hi,
                         std::string_view accepted = {}) {
  try {
    cli::parseInteger(flag, text, lo, hi, accepted);
  } catch (const cli::UsageError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(CliOptions, IntegersAreWholeAndInRangeOrTheMessageSaysWhatIsAccepted) {
  EXPECT_EQ(cli::parseInteger("--shards", "4", 0, 1024), 4);
  EXPECT_EQ(cli::parseInteger("--shards", "0", 0, 1024), 0);
  EXPECT_EQ(cli::parseInteger("--shards", "1024", 0, 1024), 1024);
  EXPECT_EQ(usageMessage("--shards", "abc", 0, 1024), "--shards wants a whole number from 0 to 1024, got 'abc'");
  EXPECT_EQ(usageMessage("--shards", "", 0, 1024), "--shards wants a whole number from 0 to 1024, got ''");
  EXPECT_EQ(usageMessage("--shards", "4x", 0, 1024), "--shards wants a whole number from 0 to 1024, got '4x'");
  EXPECT_EQ(usageMessage("--shards", " 4", 0, 1024), "--shards wants a whole number from 0 to 1024, got ' 4'");
  EXPECT_EQ(usageMessage("--shards", "1025", 0, 1024), "--shards wants a whole number from 0 to 1024, got '1025'");
  EXPECT_EQ(usageMessage("--shards", "-1", 0, 1024), "--shards wants a whole number from 0 to 1024, got '-1'");
  EXPECT_EQ(usageMessage("--shards", "99999999999999999999999", 0, 1024),
            "--shards wants a whole number from 0 to 1024, got '99999999999999999999999'");
  EXPECT_EQ(usageMessage("--idle-timeout-ms", "1.5", 1, INT64_MAX, "a positive whole number of milliseconds"),
            "--idle-timeout-ms wants a positive whole number of milliseconds, got '1.5'");
}

TEST(CliOptions, ListenSplitsHostAndPortAndNamesTheAcceptedForms) {
  auto a = cli::splitListen("127.0.0.1:8787");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 8787);
  a = cli::splitListen("[::1]:0");
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 0);
  a = cli::splitListen("localhost:65535");
  EXPECT_EQ(a.host, "localhost");
  EXPECT_EQ(a.port, 65535);
  for (const char* bad : {"127.0.0.1", ":80", "host:", "host:65536", "host:-1", "host:8a", "::1:80", "[]:80", "[::1]"}) {
    try {
      cli::splitListen(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const cli::UsageError& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("--listen", 0), 0u) << msg;
      EXPECT_NE(msg.find(std::string("'") + bad + "'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("accepted: HOST:PORT"), std::string::npos) << msg;
    }
  }
  try {
    cli::splitListen("[::1]");
  } catch (const cli::UsageError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("--listen: no port in '[::1]'", 0), 0u) << e.what();
  }
}

TEST(CliOptions, ListenHostsResolveToTheAddressToBind) {
  EXPECT_EQ(cli::resolveListenHost("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(cli::resolveListenHost("0.0.0.0"), "0.0.0.0");
  EXPECT_EQ(cli::resolveListenHost("::1"), "::1");
  EXPECT_EQ(cli::resolveListenHost("localhost"), "127.0.0.1");
  try {
    cli::resolveListenHost("no-such-host.invalid");
    ADD_FAILURE() << "resolved";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("--listen: cannot resolve host 'no-such-host.invalid'", 0), 0u) << e.what();
  }
}

TEST(CliOptions, TheDefaultStateDirectoryComesFromTheConfigsNameOrFile) {
  EXPECT_EQ(cli::defaultStateDir("durable-seed", "examples/seed/wrangler.toml"), fs::path(".durable/durable-seed"));
  EXPECT_EQ(cli::defaultStateDir("", "examples/custom/wrangler.toml"), fs::path(".durable/custom"));
  EXPECT_EQ(cli::defaultStateDir("", "/srv/app/./wrangler.toml"), fs::path(".durable/app"));
  EXPECT_EQ(cli::defaultStateDir("", "configs/billing.toml"), fs::path(".durable/billing"));
  EXPECT_EQ(cli::defaultStateDir("", "configs/my app!.toml"), fs::path(".durable/my-app-"));
  EXPECT_EQ(cli::defaultStateDir("", "/wrangler.toml"), fs::path(".durable/wrangler"));
  EXPECT_EQ(cli::defaultStateDir("", ""), fs::path(".durable/state"));
  // The config parser refuses unsafe names; this never makes one either.
  EXPECT_EQ(cli::defaultStateDir("../x", ""), fs::path(".durable/-x"));
}

TEST(CliOptions, AppNamesAreSinglePathComponents) {
  EXPECT_EQ(config::parseConfig("name = \"my_worker-2.v1\"\n", "w.toml").name, "my_worker-2.v1");
  EXPECT_EQ(config::parseConfig("", "w.toml").name, "");
  for (const char* bad : {"\"\"", "\"..\"", "\".hidden\"", "\"a/b\"", "\"a b\"", "\"caf\xc3\xa9\"", "3"}) {
    const std::string toml = std::string("\nname = ") + bad + "\n";
    try {
      config::parseConfig(toml, "w.toml");
      ADD_FAILURE() << toml;
    } catch (const config::ConfigError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("w.toml:2: name ", 0), 0u) << e.what();
    }
  }
}

TEST(CliOptions, AccessLogIsABooleanDurableSetting) {
  EXPECT_FALSE(config::parseConfig("", "w.toml").settings.accessLog);
  EXPECT_TRUE(config::parseConfig("[durable]\naccess_log = true\n", "w.toml").settings.accessLog);
  EXPECT_FALSE(config::parseConfig("[durable]\naccess_log = false\n", "w.toml").settings.accessLog);
  try {
    config::parseConfig("[durable]\naccess_log = \"yes\"\n", "w.toml");
    ADD_FAILURE() << "accepted a string";
  } catch (const config::ConfigError& e) {
    EXPECT_STREQ(e.what(), "w.toml:2: durable.access_log must be true or false, not a string");
  }
  try {
    config::parseConfig("[durable]\naccess_logs = true\n", "w.toml");
    ADD_FAILURE() << "accepted a misspelt key";
  } catch (const config::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("access_log, "), std::string::npos) << e.what();
  }
}

TEST(StateDirLock, ASecondLockOnTheSameDirectoryFailsNamingItAndTheHolder) {
  ScratchDir dir;
  const fs::path state = dir.path / "nested" / "state";
  {
    detail::StateDirLock first(state);  // creates the directories
    EXPECT_EQ([&] {
      std::ifstream in(state / "durable.lock");
      std::string s;
      std::getline(in, s);
      return s;
    }(), std::to_string(::getpid()));
    try {
      detail::StateDirLock second(state);
      ADD_FAILURE() << "locked twice";
    } catch (const detail::StateDirLocked& e) {
      EXPECT_EQ(std::string(e.what()), "state directory " + state.string() + " is in use by another process (pid " +
                                           std::to_string(::getpid()) +
                                           "); one process per state directory: stop that one or use another directory");
    }
  }
  detail::StateDirLock again(state);  // released with the first
}

TEST(StateDirLock, AnUncreatableDirectoryIsAnErrorNotALock) {
  ScratchDir dir;
  fs::create_directories(dir.path);
  std::ofstream(dir.path / "file") << "x";
  try {
    detail::StateDirLock lock(dir.path / "file" / "state");
    ADD_FAILURE() << "locked under a file";
  } catch (const detail::StateDirLocked&) {
    ADD_FAILURE() << "reported as locked";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create state directory"), std::string::npos) << e.what();
  }
}

TEST(StateDirLock, TestingEnvsLockTheirDirectoryToo) {
  ScratchDir dir;
  testing::EnvOptions o;
  o.persistDir = dir.path;
  {
    testing::Env first(o);
    try {
      testing::Env second(o);
      ADD_FAILURE() << "two Envs on one directory";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("state directory " + dir.path.string() + " is in use by another process (pid " +
                                           std::to_string(::getpid()) + ")"),
                std::string::npos)
          << e.what();
    }
  }
  testing::Env after(o);  // the first released it
}

// serve() returns before it listens in both cases; it blocks SIGINT and SIGTERM for its
// sigwait, so the mask is put back afterwards.
TEST(ServerConfig, WithoutAConfigServeRefusesUnlessTheServerCarriesADefault) {
  ScratchDir dir;
  sigset_t before;
  pthread_sigmask(SIG_SETMASK, nullptr, &before);
  Server server;
  ServeOptions o;
  o.listen = "127.0.0.1:0";
  o.persistDir = (dir.path / "state").string();
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(server.serve(o), 2);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("durable: no config: pass --config FILE"), std::string::npos) << err;

  const std::string missing = (dir.path / "built-in.toml").string();
  server.setDefaultConfig(missing);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(server.serve(o), 1);
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("ERROR durable: " + missing + ": cannot read config file"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir.path / "state"));
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

TEST(Log, LinesStartWithAnIsoUtcTimestampAndALevel) {
  const std::regex prefix(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z )");
  const std::string info = detail::formatLogLine(detail::LogLevel::kInfo, "x=", 42, ' ', std::string("s"), " ", -7L,
                                                 " ", true);
  EXPECT_TRUE(std::regex_search(info, prefix)) << info;
  EXPECT_EQ(info.substr(25), "INFO durable: x=42 s -7 true\n");
  EXPECT_EQ(detail::formatLogLine(detail::LogLevel::kWarn, "w").substr(25), "WARN durable: w\n");
  EXPECT_EQ(detail::formatLogLine(detail::LogLevel::kError, "e", 1.5).substr(25), "ERROR durable: e1.5\n");
  // The clock's own second, in UTC.
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char year[8];
  std::strftime(year, sizeof year, "%Y", &tm);
  EXPECT_EQ(info.substr(0, 4), year);
}

}  // namespace
}  // namespace durable
