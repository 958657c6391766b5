// The real `durable` binary configured by a wrangler.jsonc instead of wrangler.toml.
#include "integration/server_process.h"

#include <gtest/gtest.h>

#include <iostream>

namespace durable_it {
namespace {

// examples/seed/wrangler.toml in wrangler's JSON shape, with the comments and trailing
// commas wrangler.jsonc allows.
constexpr const char* kSeedJsonc = R"(// The demo app's configuration, as wrangler.jsonc.
{
  "name": "durable-seed",
  "durable_objects": {
    "bindings": [
      { "name": "COUNTER", "class_name": "Counter" },
      { "name": "RATE_LIMITER", "class_name": "RateLimiter" },
      { "name": "TASK", "class_name": "ScheduledTask" },
      { "name": "ROOM", "class_name": "ChatRoom" },
      { "name": "HIBERNATING_ROOM", "class_name": "HibernatingRoom" }, // trailing comma
    ],
  },
  /* Same tags and classes as the TOML, so the same state directory fits either file. */
  "migrations": [
    { "tag": "v1", "new_classes": ["Counter"] },
    { "tag": "v2", "new_classes": ["RateLimiter", "ScheduledTask"] },
    { "tag": "v3", "new_classes": ["ChatRoom", "HibernatingRoom"] },
  ],
  "durable": { "durability": "full" },
}
)";

TEST(ConfigJsonServer, SeedServesCountersFromAJsoncConfig) {
  TempDir dir;
  const auto config = dir / "wrangler.jsonc";
  writeFile(config, kSeedJsonc);

  ServerProcess::Options o;
  o.config = config;
  o.persistDir = dir / "state";
  o.stderrLog = dir / "server.log";
  auto server = ServerProcess::start(o);
  {
    HttpConnection c(server->host(), server->port());
    const HttpResponse first = c.post("/counters/a/increment");
    EXPECT_EQ(first.status, 200) << first.body;
    EXPECT_EQ(first.body, "{\"count\":1}");
    EXPECT_EQ(c.post("/counters/a/increment").body, "{\"count\":2}");
    EXPECT_EQ(c.post("/counters/b/increment").body, "{\"count\":1}");
  }
  const ExitStatus stopped = server->stop();
  EXPECT_TRUE(stopped.exited && stopped.code == 0) << stopped.describe();

  // The same state under the TOML config: the migrations agree, and the count went on disk.
  ServerProcess::Options t = o;
  t.config = seedConfig();
  t.stderrLog = dir / "server-toml.log";
  auto again = ServerProcess::start(t);
  EXPECT_EQ(HttpConnection(again->host(), again->port()).post("/counters/a/increment").body, "{\"count\":3}");
  again->stop();

  if (HasFailure()) std::cerr << "---- server stderr ----\n" << readFile(o.stderrLog) << "----\n";
}

TEST(ConfigJsonServer, BadJsoncStopsStartupWithFileAndLine) {
  TempDir dir;
  const auto config = dir / "wrangler.jsonc";
  writeFile(config, "{\n  \"durable\": {\n    \"shards\": \"many\", // not a number\n  },\n}\n");
  const CommandResult r = runBinary({"serve", "--config", config.string(), "--persist-to", (dir / "state").string()},
                                    dir.path());
  EXPECT_TRUE(r.status.exited && r.status.code != 0) << r.status.describe();
  EXPECT_NE(r.err.find(config.string() + ":3: durable.shards must be an integer, not a string"), std::string::npos)
      << r.err;

  const auto yaml = dir / "wrangler.yaml";
  writeFile(yaml, "name: x\n");
  const CommandResult y = runBinary({"serve", "--config", yaml.string(), "--persist-to", (dir / "state").string()},
                                    dir.path());
  EXPECT_TRUE(y.status.exited && y.status.code != 0) << y.status.describe();
  EXPECT_NE(y.err.find(yaml.string() + ": unsupported config file type \".yaml\""), std::string::npos) << y.err;
}

}  // namespace
}  // namespace durable_it
