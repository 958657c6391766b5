// The command line and the process around the server, against the real binary: one server
// per state directory (flock), each app's own default state directory, no start without a
// config, errors that say what is wrong and what is accepted, --version, timestamped log
// lines and the access log.
#include "integration/server_process.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <regex>
#include <sstream>

namespace durable_it {
namespace {

namespace fs = std::filesystem;

std::string countBody(long long n) { return "{\"count\":" + std::to_string(n) + "}"; }

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Every log line: "2026-12-04T17:03:12.345Z INFO durable: ...".
const std::regex kLogLine(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (INFO|WARN|ERROR) durable: .*$)");

class CliTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> start(const fs::path& persistDir, const std::string& log,
                                       fs::path config = seedConfig(), fs::path binary = {}) {
    ServerProcess::Options o;
    o.binary = std::move(binary);
    o.config = std::move(config);
    o.persistDir = persistDir;
    o.stderrLog = dir_ / log;
    logs_.push_back(o.stderrLog);
    return ServerProcess::start(std::move(o));
  }

  // A server started in `cwd` with no --persist-to: ServerProcess always passes one, so the
  // binary runs behind a script that drops the arguments it was given.
  std::unique_ptr<ServerProcess> startIn(const fs::path& cwd, const fs::path& binary, const fs::path& config,
                                         const std::string& log) {
    const fs::path script = dir_ / (log + ".sh");
    writeFile(script, "#!/bin/sh\ncd '" + cwd.string() + "' && exec '" + binary.string() + "' serve --config '" +
                          config.string() + "' --listen 127.0.0.1:0\n");
    ::chmod(script.c_str(), 0755);
    ServerProcess::Options o;
    o.binary = script;
    o.persistDir = "unused";
    o.stderrLog = dir_ / log;
    logs_.push_back(o.stderrLog);
    return ServerProcess::start(std::move(o));
  }

  void TearDown() override {
    if (!HasFailure()) return;
    for (const auto& log : logs_) std::cerr << "---- " << log << " ----\n" << readFile(log) << "----\n";
  }

  TempDir dir_;
  std::vector<fs::path> logs_;
};

// ---- one process per state directory ----

TEST_F(CliTest, SecondServerOnTheSameStateDirectoryRefusesAndTheFirstKeepsEveryWrite) {
  const fs::path state = dir_ / "state";
  auto first = start(state, "first.log");
  HttpConnection c(first->host(), first->port());
  EXPECT_EQ(c.post("/counters/x/increment").body, countBody(1));

  auto r = runBinary({"serve", "--config", seedConfig().string(), "--listen", "127.0.0.1:0", "--persist-to",
                      state.string()},
                     dir_.path());
  EXPECT_TRUE(r.status.exited) << r.status.describe();
  EXPECT_EQ(r.status.code, 1) << r.err;
  EXPECT_EQ(r.out.find("listening"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("state directory " + state.string() + " is in use"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(pid " + std::to_string(first->pid()) + ")"), std::string::npos) << r.err;

  // The first server noticed nothing: its object and its count go on.
  EXPECT_EQ(c.post("/counters/x/increment").body, countBody(2));
  EXPECT_EQ(httpRequest(first->host(), first->port(), "POST", "/counters/x/increment").body, countBody(3));
  EXPECT_EQ(c.get("/counters/x").body, countBody(3));
  EXPECT_EQ(readFile(state / "durable.lock"), std::to_string(first->pid()) + "\n");
  EXPECT_EQ(first->stop().describe(), "exit code 0");

  // Stopped cleanly: the directory is free again, with every write in it.
  auto again = start(state, "again.log");
  EXPECT_EQ(httpRequest(again->host(), again->port(), "POST", "/counters/x/increment").body, countBody(4));
  EXPECT_EQ(again->stop().describe(), "exit code 0");
}

TEST_F(CliTest, AfterKill9TheStateDirectoryIsFreeAndKeepsEveryAcknowledgedWrite) {
  const fs::path state = dir_ / "state";
  long long acknowledged = 0;
  {
    auto first = start(state, "first.log");
    HttpConnection c(first->host(), first->port());
    for (int i = 1; i <= 20; ++i) {
      ASSERT_EQ(c.post("/counters/k/increment").body, countBody(i));
      acknowledged = i;
    }
    auto refused = runBinary({"serve", "--config", seedConfig().string(), "--listen", "127.0.0.1:0",
                              "--persist-to", state.string()},
                             dir_.path());
    EXPECT_EQ(refused.status.code, 1) << refused.err;
    EXPECT_NE(refused.err.find("(pid " + std::to_string(first->pid()) + ")"), std::string::npos) << refused.err;
    EXPECT_EQ(first->kill9().describe(), "killed by signal 9 (Killed)");
  }
  // The lock file still names the dead process; the kernel released its lock with it.
  auto second = start(state, "second.log");
  EXPECT_EQ(httpRequest(second->host(), second->port(), "GET", "/counters/k").body, countBody(acknowledged));
  EXPECT_EQ(httpRequest(second->host(), second->port(), "POST", "/counters/k/increment").body,
            countBody(acknowledged + 1));
  EXPECT_EQ(readFile(state / "durable.lock"), std::to_string(second->pid()) + "\n");
  EXPECT_EQ(second->stop().describe(), "exit code 0");
}

TEST_F(CliTest, TheGuestbookBinaryLocksItsStateDirectoryToo) {
  const fs::path state = dir_ / "state";
  const fs::path config = sourceDir() / "examples" / "custom" / "wrangler.toml";
  auto first = start(state, "guestbook.log", config, DURABLE_GUESTBOOK);
  ServerProcess::Options o;
  o.binary = DURABLE_GUESTBOOK;
  o.config = config;
  o.persistDir = state;
  o.stderrLog = dir_ / "guestbook-second.log";
  logs_.push_back(o.stderrLog);
  EXPECT_THROW(ServerProcess::start(o), std::runtime_error);
  const std::string err = readFile(o.stderrLog);
  EXPECT_NE(err.find("state directory " + state.string() + " is in use by another process (pid " +
                     std::to_string(first->pid()) + ")"),
            std::string::npos)
      << err;
  EXPECT_EQ(httpRequest(first->host(), first->port(), "POST", "/books/b/sign?name=ann").status, 200);
  EXPECT_EQ(first->stop().describe(), "exit code 0");
}

// ---- default state directories ----

TEST_F(CliTest, EachAppHasItsOwnDefaultStateDirectoryNamedAfterTheConfig) {
  const fs::path cwd = dir_ / "work";
  fs::create_directories(cwd);
  const fs::path guestbookConfig = sourceDir() / "examples" / "custom" / "wrangler.toml";
  // Both apps from the same directory at once, neither told where to keep state.
  auto seed = startIn(cwd, binaryPath(), seedConfig(), "seed.log");
  auto guestbook = startIn(cwd, DURABLE_GUESTBOOK, guestbookConfig, "guestbook.log");
  EXPECT_EQ(httpRequest(seed->host(), seed->port(), "POST", "/counters/a/increment").body, countBody(1));
  EXPECT_EQ(httpRequest(guestbook->host(), guestbook->port(), "POST", "/books/b/sign?name=ann").status, 200);
  EXPECT_EQ(readFile(cwd / ".durable" / "durable-seed" / "durable.lock"), std::to_string(seed->pid()) + "\n");
  EXPECT_EQ(readFile(cwd / ".durable" / "guestbook" / "durable.lock"), std::to_string(guestbook->pid()) + "\n");
  EXPECT_TRUE(fs::exists(cwd / ".durable" / "durable-seed" / "meta.sqlite"));
  EXPECT_TRUE(fs::exists(cwd / ".durable" / "guestbook" / "meta.sqlite"));
  EXPECT_FALSE(fs::exists(cwd / ".durable" / "state"));
  // Start-up says which config and which directory.
  EXPECT_NE(seed->stderrText().find("INFO durable: config " + seedConfig().string() +
                                    " (name durable-seed), state in .durable/durable-seed"),
            std::string::npos)
      << seed->stderrText();
  EXPECT_EQ(seed->stop().describe(), "exit code 0");
  EXPECT_EQ(guestbook->stop().describe(), "exit code 0");

  // Without a `name`, a wrangler.toml names its state after its project's directory.
  const fs::path project = dir_ / "my-app";
  fs::create_directories(project);
  std::string text = readFile(seedConfig());
  const std::string nameLine = "name = \"durable-seed\"\n";
  ASSERT_NE(text.find(nameLine), std::string::npos);
  text.erase(text.find(nameLine), nameLine.size());
  writeFile(project / "wrangler.toml", text);
  auto unnamed = startIn(cwd, binaryPath(), project / "wrangler.toml", "unnamed.log");
  EXPECT_EQ(httpRequest(unnamed->host(), unnamed->port(), "POST", "/counters/a/increment").body, countBody(1));
  EXPECT_TRUE(fs::exists(cwd / ".durable" / "my-app" / "meta.sqlite"));
  EXPECT_EQ(unnamed->stop().describe(), "exit code 0");
}

TEST_F(CliTest, AnUnsafeNameInTheConfigIsRefusedWithItsLine) {
  const fs::path toml = dir_ / "bad-name.toml";
  writeFile(toml, "# a comment\nname = \"../elsewhere\"\n");
  auto r = runBinary({"serve", "--config", toml.string(), "--listen", "127.0.0.1:0"}, dir_.path());
  EXPECT_EQ(r.status.code, 1) << r.err;
  EXPECT_NE(r.err.find(toml.string() + ":2: name \"../elsewhere\" is not a valid name"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "elsewhere"));
}

// ---- no config, no start ----

TEST_F(CliTest, ServeWithoutAConfigRefusesToStart) {
  auto r = runBinary({"serve", "--listen", "127.0.0.1:0", "--persist-to", (dir_ / "state").string()}, dir_.path());
  EXPECT_TRUE(r.status.exited) << r.status.describe();
  EXPECT_EQ(r.status.code, 2) << r.err;
  EXPECT_EQ(r.out.find("listening"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("durable: no config: pass --config FILE"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "state"));
}

// ---- command-line errors ----

TEST_F(CliTest, UsageErrorsSayWhatIsWrongAndWhatIsAcceptedAndExitTwo) {
  const std::string config = seedConfig().string();
  const std::string state = (dir_ / "state").string();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"serve", "--config", config, "--shards", "abc"}, "durable: --shards wants a whole number from 0 to 1024, got 'abc'"},
      {{"serve", "--config", config, "--shards=5000"}, "durable: --shards wants a whole number from 0 to 1024, got '5000'"},
      {{"serve", "--config", config, "--idle-timeout-ms", "x"},
       "durable: --idle-timeout-ms wants a positive whole number of milliseconds, got 'x'"},
      {{"serve", "--config", config, "--idle-timeout-ms", "0"},
       "durable: --idle-timeout-ms wants a positive whole number of milliseconds, got '0'"},
      {{"serve", "--config", config, "--durability", "fast"}, "durable: --durability wants full or relaxed, got 'fast'"},
      {{"serve", "--config", config, "--listen", "127.0.0.1"}, "durable: --listen wants HOST:PORT, got '127.0.0.1'"},
      {{"serve", "--config", config, "--listen", "127.0.0.1:99999"}, "durable: --listen: bad port '99999'"},
      {{"serve", "--config", config, "--listen", "::1:80"}, "durable: --listen: an IPv6 address goes in brackets"},
      {{"serve", "--config"}, "durable: --config needs a value"},
      {{"serve", "--bogus"}, "durable: unknown option --bogus"},
      {{"start"}, "durable: unknown command 'start' (commands: serve, objects, storage, alarm, backup, restore, --help, --version)"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = c.args;
    if (args.size() > 2 && args[1] == "--config") {
      args.insert(args.end(), {"--persist-to", state});
    }
    auto r = runBinary(args, dir_.path());
    EXPECT_TRUE(r.status.exited) << r.status.describe();
    EXPECT_EQ(r.status.code, 2) << c.message << "\n" << r.err;
    EXPECT_EQ(r.err.rfind(c.message, 0), 0u) << "want \"" << c.message << "\" first, got:\n" << r.err;
    EXPECT_NE(r.err.find("Run 'durable --help' for usage."), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("listening"), std::string::npos) << r.out;
  }
  // The --listen message lists what is accepted.
  auto r = runBinary({"serve", "--config", config, "--listen", "localhost"}, dir_.path());
  EXPECT_NE(r.err.find("accepted: HOST:PORT with a host name or an IPv4 address, [IPv6]:PORT"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "state"));
}

TEST_F(CliTest, ListenTakesAHostNameThatResolves) {
  ServerProcess::Options o;
  o.persistDir = dir_ / "state";
  o.stderrLog = dir_ / "localhost.log";
  o.extraArgs = {"--listen", "localhost:0"};  // after ServerProcess's own --listen: the last one wins
  logs_.push_back(o.stderrLog);
  auto server = ServerProcess::start(std::move(o));
  EXPECT_EQ(server->host(), "127.0.0.1");
  EXPECT_EQ(httpRequest(server->host(), server->port(), "POST", "/counters/l/increment").body, countBody(1));
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(CliTest, AnUnresolvableHostExitsOneSayingSo) {
  auto r = runBinary({"serve", "--config", seedConfig().string(), "--listen", "no-such-host.invalid:8787",
                      "--persist-to", (dir_ / "state").string()},
                     dir_.path());
  EXPECT_EQ(r.status.code, 1) << r.err;
  EXPECT_NE(r.err.find("ERROR durable: --listen: cannot resolve host 'no-such-host.invalid'"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "state"));
}

TEST_F(CliTest, APortInUseIsNamedWithoutBoostInternals) {
  auto first = start(dir_ / "first", "first.log");
  const std::string where = "127.0.0.1:" + std::to_string(first->port());
  auto r = runBinary({"serve", "--config", seedConfig().string(), "--listen", where, "--persist-to",
                      (dir_ / "second").string()},
                     dir_.path());
  EXPECT_EQ(r.status.code, 1) << r.err;
  EXPECT_NE(r.err.find("ERROR durable: address " + where + " is already in use"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("boost"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("system:"), std::string::npos) << r.err;
  EXPECT_EQ(first->stop().describe(), "exit code 0");
}

TEST_F(CliTest, VersionPrintsTheVersion) {
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--version"},
                                               std::vector<std::string>{"serve", "--version"}}) {
    auto r = runBinary(args, dir_.path());
    EXPECT_EQ(r.status.code, 0) << r.err;
    EXPECT_TRUE(std::regex_match(r.out, std::regex(R"(durable \d+\.\d+\.\d+\n)"))) << r.out;
    EXPECT_EQ(r.err, "");
  }
}

// ---- log lines ----

TEST_F(CliTest, LogLinesCarryAUtcTimestampAndALevel) {
  auto server = start(dir_ / "state", "server.log");
  EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/health").body, "ok");
  EXPECT_EQ(server->stop().describe(), "exit code 0");
  const auto all = lines(server->stderrText());
  ASSERT_GE(all.size(), 3u);  // config, draining, stopped
  for (const auto& line : all) EXPECT_TRUE(std::regex_match(line, kLogLine)) << line;
  EXPECT_NE(all.front().find(" INFO durable: config "), std::string::npos) << all.front();
  EXPECT_NE(all.back().find(" INFO durable: stopped"), std::string::npos) << all.back();
  // Off unless the config asks for it.
  EXPECT_EQ(server->stderrText().find("access "), std::string::npos);
}

TEST_F(CliTest, TheAccessLogHasOneLinePerRequestWithMethodPathStatusBytesAndDuration) {
  const fs::path config = dir_ / "access.toml";
  const std::string seed = readFile(seedConfig());
  ASSERT_NE(seed.find("[durable]\n"), std::string::npos) << "the seed config lost its [durable] table";
  writeFile(config, seed + "access_log = true\n");
  auto server = start(dir_ / "state", "access.log", config);
  HttpConnection c(server->host(), server->port());
  auto inc = c.post("/counters/acc/increment");
  ASSERT_EQ(inc.body, countBody(1));
  auto missing = c.get("/no/such/route?x=1");
  ASSERT_EQ(missing.status, 404);
  auto bad = rawExchange(server->host(), server->port(), "NOT-HTTP\r\n\r\n");
  EXPECT_NE(bad.received.find(" 400 "), std::string::npos) << bad.received;
  EXPECT_EQ(server->stop().describe(), "exit code 0");

  const std::regex access(
      R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z INFO durable: (?:\[request=[0-9a-f]{32}\] )?access (\S+) (\S+) status=(\d+) bytes=(\d+) duration_ms=(\d+\.\d{3})$)");
  std::vector<std::smatch> found;
  const auto all = lines(server->stderrText());
  std::vector<std::string> accessLines;
  for (const auto& line : all) {
    if (line.find(" access ") != std::string::npos) accessLines.push_back(line);
  }
  ASSERT_EQ(accessLines.size(), 3u) << server->stderrText();
  std::smatch m;
  ASSERT_TRUE(std::regex_match(accessLines[0], m, access)) << accessLines[0];
  EXPECT_EQ(m[1], "POST");
  EXPECT_EQ(m[2], "/counters/acc/increment");
  EXPECT_EQ(m[3], "200");
  EXPECT_EQ(m[4], std::to_string(inc.body.size()));
  EXPECT_LT(std::stod(m[5]), 10000.0);
  ASSERT_TRUE(std::regex_match(accessLines[1], m, access)) << accessLines[1];
  EXPECT_EQ(m[1], "GET");
  EXPECT_EQ(m[2], "/no/such/route?x=1");
  EXPECT_EQ(m[3], "404");
  EXPECT_EQ(m[4], std::to_string(missing.body.size()));
  ASSERT_TRUE(std::regex_match(accessLines[2], m, access)) << accessLines[2];
  EXPECT_EQ(m[1], "-");  // nothing parsed to name
  EXPECT_EQ(m[3], "400");
  for (const auto& line : all) EXPECT_TRUE(std::regex_match(line, kLogLine)) << line;
}

}  // namespace
}  // namespace durable_it
