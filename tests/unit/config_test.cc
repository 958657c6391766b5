#include "config/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace durable::config {
namespace {

// Expects parsing to fail with exactly "<source>:<line>: ..." and the message to contain `fragment`.
void expectError(const std::string& toml, int line, const std::string& fragment) {
  try {
    parseConfig(toml, "wrangler.toml");
    ADD_FAILURE() << "parsed without error:\n" << toml;
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    const std::string prefix = "wrangler.toml:" + std::to_string(line) + ": ";
    EXPECT_EQ(msg.rfind(prefix, 0), 0u) << "want prefix \"" << prefix << "\", got: " << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << "want \"" << fragment << "\" in: " << msg;
  }
}

TEST(Config, ParsesAWranglerFile) {
  const Config c = parseConfig(R"(name = "my-worker"
main = "src/index.ts"
compatibility_date = "2024-01-01"

[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"

[[durable_objects.bindings]]
name = "ROOMS"
class_name = "ChatRoom"

[[migrations]]
tag = "v1"
new_classes = ["Counter", "Old"]

[[migrations]]
tag = "v2"
new_sqlite_classes = ["ChatRoom"]
renamed_classes = [{ from = "Old", to = "New" }]

[[migrations]]
tag = "v3"
deleted_classes = ["New"]

[vars]
GREETING = "hello"
LIMIT = 42
RATIO = 1.5
WHOLE = 3.0
DEBUG = true

[durable]
durability = "relaxed"
idle_timeout_ms = 5000
max_value_bytes = 2097152
shards = 4
max_body_bytes = 1024
request_timeout_ms = 1500
max_pending_calls = 50
fetch_timeout_ms = 2500
max_fetch_response_bytes = 65536
)",
                               "wrangler.toml");
  EXPECT_EQ(c.source, "wrangler.toml");
  ASSERT_EQ(c.bindings.size(), 2u);
  EXPECT_EQ(c.bindings[0].name, "COUNTER");
  EXPECT_EQ(c.bindings[0].className, "Counter");
  EXPECT_EQ(c.bindings[0].line, 5);
  EXPECT_EQ(c.bindings[1].name, "ROOMS");
  EXPECT_EQ(c.bindings[1].className, "ChatRoom");
  EXPECT_EQ(c.bindings[1].line, 9);

  ASSERT_EQ(c.migrations.size(), 3u);
  EXPECT_EQ(c.migrations[0].tag, "v1");
  EXPECT_EQ(c.migrations[0].line, 13);
  EXPECT_EQ(c.migrations[0].newClasses, (std::vector<std::string>{"Counter", "Old"}));
  EXPECT_EQ(c.migrations[1].tag, "v2");
  EXPECT_EQ(c.migrations[1].newSqliteClasses, std::vector<std::string>{"ChatRoom"});
  ASSERT_EQ(c.migrations[1].renamedClasses.size(), 1u);
  EXPECT_EQ(c.migrations[1].renamedClasses[0].from, "Old");
  EXPECT_EQ(c.migrations[1].renamedClasses[0].to, "New");
  EXPECT_EQ(c.migrations[2].deletedClasses, std::vector<std::string>{"New"});
  EXPECT_EQ(c.migrations[2].line, 22);

  EXPECT_EQ(c.vars.at("GREETING"), "hello");
  EXPECT_EQ(c.vars.at("LIMIT"), "42");
  EXPECT_EQ(c.vars.at("RATIO"), "1.5");
  EXPECT_EQ(c.vars.at("WHOLE"), "3");
  EXPECT_EQ(c.vars.at("DEBUG"), "true");
  EXPECT_EQ(c.vars.size(), 5u);

  EXPECT_EQ(c.settings.durability, Durability::kRelaxed);
  EXPECT_EQ(c.settings.idleTimeoutMs, 5000);
  EXPECT_EQ(c.settings.maxValueBytes, 2097152u);
  EXPECT_EQ(c.settings.shards, 4u);
  EXPECT_EQ(c.settings.maxBodyBytes, 1024u);
  EXPECT_EQ(c.settings.requestTimeoutMs, 1500);
  EXPECT_EQ(c.settings.maxPendingCalls, 50u);
  EXPECT_EQ(c.settings.fetchTimeoutMs, 2500);
  EXPECT_EQ(c.settings.maxFetchResponseBytes, 65536u);
}

TEST(Config, InlineBindingsArrayAndDefaults) {
  const Config c = parseConfig(R"(
[durable_objects]
bindings = [
  { name = "A", class_name = "ClassA" },
  { name = "B", class_name = "ClassB" },
]
)",
                               "w.toml");
  ASSERT_EQ(c.bindings.size(), 2u);
  EXPECT_EQ(c.bindings[1].className, "ClassB");
  EXPECT_EQ(c.bindings[1].line, 5);
  EXPECT_TRUE(c.migrations.empty());
  EXPECT_TRUE(c.vars.empty());
  const Settings defaults;
  EXPECT_EQ(c.settings.durability, Durability::kFull);
  EXPECT_EQ(c.settings.idleTimeoutMs, defaults.idleTimeoutMs);
  EXPECT_EQ(c.settings.maxValueBytes, 128u * 1024);
  EXPECT_EQ(c.settings.shards, 0u);
  EXPECT_EQ(c.settings.maxBodyBytes, 100u * 1024 * 1024);
  EXPECT_EQ(c.settings.requestTimeoutMs, 30000);
}

TEST(Config, EmptyFileIsAnEmptyConfig) {
  const Config c = parseConfig("", "empty.toml");
  EXPECT_TRUE(c.bindings.empty());
  EXPECT_TRUE(c.migrations.empty());
}

TEST(Config, SyntaxErrorNamesTheLine) {
  expectError("a = 1\nb = 2\nc = [1, 2\n", 3, "TOML syntax error");
  expectError("[vars]\nX = \"unterminated\n", 2, "TOML syntax error");
  expectError("a = 1\na = 2\n", 2, "TOML syntax error");
}

TEST(Config, BindingErrors) {
  expectError("[[durable_objects.bindings]]\nclass_name = \"C\"\n", 1, "binding: missing name");
  expectError("[[durable_objects.bindings]]\nname = 5\nclass_name = \"C\"\n", 2, "name must be a string");
  expectError("[[durable_objects.bindings]]\nname = \"\"\nclass_name = \"C\"\n", 2, "name must not be empty");
  expectError("[[durable_objects.bindings]]\nname = \"N\"\n", 1, "binding N: missing class_name");
  expectError("[[durable_objects.bindings]]\nname = \"N\"\nclass_name = [\"C\"]\n", 3,
              "binding N: class_name must be a string, not an array");
  expectError(R"([[durable_objects.bindings]]
name = "N"
class_name = "C"

[[durable_objects.bindings]]
name = "N"
class_name = "D"
)",
              5, "duplicate binding name N (first defined on line 1)");
  expectError("durable_objects = 3\n", 1, "durable_objects must be a table");
  expectError("[durable_objects]\nbindings = \"x\"\n", 2, "durable_objects.bindings must be an array");
  expectError("[durable_objects]\nbindings = [1]\n", 2, "must be a table");
  expectError("[[durable_objects.bindings]]\nname = \"N\"\nclass_name = \"C\"\nscript_name = \"other\"\n", 4,
              "script_name is not supported");
}

TEST(Config, MigrationErrors) {
  expectError("[[migrations]]\nnew_classes = [\"A\"]\n", 1, "migration: missing tag");
  expectError("[[migrations]]\ntag = 1\n", 2, "tag must be a string");
  expectError("[[migrations]]\ntag = \"v1\"\n\n[[migrations]]\ntag = \"v1\"\n", 4,
              "duplicate migration tag v1 (first used on line 1)");
  expectError("[[migrations]]\ntag = \"v1\"\nnew_classes = [\"A\", 2]\n", 3,
              "migration v1: new_classes[1] must be a string, not an integer");
  expectError("[[migrations]]\ntag = \"v1\"\nnew_sqlite_classes = \"A\"\n", 3,
              "migration v1: new_sqlite_classes must be an array");
  expectError("[[migrations]]\ntag = \"v1\"\ndeleted_classes = [\"\"]\n", 3, "deleted_classes[0] must not be empty");
  expectError("[[migrations]]\ntag = \"v1\"\nrenamed_classes = [{ from = \"A\" }]\n", 3,
              "migration v1: renamed_classes entry: missing to");
  expectError("[[migrations]]\ntag = \"v1\"\nrenamed_classes = [\"A\"]\n", 3, "must be a table");
  expectError("[[migrations]]\ntag = \"v1\"\ntransferred_classes = []\n", 3, "transferred_classes is not supported");
  expectError("migrations = { tag = \"v1\" }\n", 1, "migrations must be an array");
}

TEST(Config, VarsErrors) {
  expectError("[vars]\nOK = \"x\"\nBAD = [1]\n", 3, "vars.BAD must be a string, number or boolean, not an array");
  expectError("vars = 1\n", 1, "vars must be a table");
}

TEST(Config, SettingsErrors) {
  expectError("[durable]\ndurability = \"eventual\"\n", 2, "unknown durability \"eventual\"");
  expectError("[durable]\ndurability = true\n", 2, "durability must be a string");
  expectError("[durable]\nidle_timeout_ms = 0\n", 2, "durable.idle_timeout_ms = 0 is out of range");
  expectError("[durable]\nidle_timeout_ms = 1.5\n", 2, "durable.idle_timeout_ms must be an integer, not a float");
  expectError("[durable]\nmax_value_bytes = 0\n", 2, "out of range");
  expectError("[durable]\nmax_value_bytes = 2097153\n", 2, "out of range (1 .. 2097152)");
  expectError("[durable]\nshards = -1\n", 2, "durable.shards = -1 is out of range");
  expectError("[durable]\nrequest_timeout_ms = 0\n", 2, "durable.request_timeout_ms = 0 is out of range");
  expectError("[durable]\nmax_body_bytes = 0\n", 2, "out of range");
  expectError("[durable]\nmax_pending_calls = 0\n", 2, "durable.max_pending_calls = 0 is out of range");
  expectError("[durable]\nfetch_timeout_ms = 0\n", 2, "durable.fetch_timeout_ms = 0 is out of range");
  expectError("[durable]\nmax_fetch_response_bytes = 0\n", 2, "durable.max_fetch_response_bytes = 0 is out of range");
  expectError("\n[durable]\nshard = 2\n", 3, "unknown setting durable.shard");
}

TEST(Config, LoadConfigReadsAFile) {
  const auto dir = std::filesystem::temp_directory_path() / ("durable-config-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "wrangler.toml";
  std::ofstream(file) << "[[durable_objects.bindings]]\nname = \"X\"\nclass_name = \"Y\"\n";
  const Config c = loadConfig(file);
  EXPECT_EQ(c.source, file.string());
  ASSERT_EQ(c.bindings.size(), 1u);

  std::ofstream(file) << "[durable]\nshards = \"many\"\n";
  try {
    loadConfig(file);
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(file.string() + ":2: ", 0), 0u) << e.what();
  }

  for (const auto& bad : {dir / "missing.toml", dir}) {
    try {
      loadConfig(bad);
      ADD_FAILURE() << bad;
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()).rfind(bad.string() + ": cannot read config file", 0), 0u) << e.what();
    }
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace durable::config

namespace durable::config {
namespace {

TEST(Config, ClusterSection) {
  const Config c = parseConfig(R"(
[cluster]
url = "postgres://durable@db.internal/durable"
node = "n1"
advertise = "10.0.0.5:8787"
lease_ms = 2000
slots = 1024
secret = "0123456789abcdef-node-secret"
)",
                               "wrangler.toml");
  EXPECT_TRUE(c.cluster.enabled());
  EXPECT_EQ(c.cluster.url, "postgres://durable@db.internal/durable");
  EXPECT_EQ(c.cluster.node, "n1");
  EXPECT_EQ(c.cluster.advertise, "10.0.0.5:8787");
  EXPECT_EQ(c.cluster.leaseMs, 2000);
  EXPECT_EQ(c.cluster.slots, 1024);
  EXPECT_EQ(c.cluster.secret, "0123456789abcdef-node-secret");
  EXPECT_FALSE(parseConfig("", "wrangler.toml").cluster.enabled());
  EXPECT_EQ(parseConfig("", "wrangler.toml").cluster.secret, "");
  EXPECT_EQ(parseConfig("", "wrangler.toml").cluster.leaseMs, 5000);
  EXPECT_EQ(parseConfig("", "wrangler.toml").cluster.slots, 4096);
}

TEST(Config, ClusterSectionErrorsSayWhatIsAccepted) {
  auto error = [](const std::string& toml) {
    try {
      parseConfig(toml, "wrangler.toml");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(error("[cluster]\nlease_ms = 100\n"), "wrangler.toml:2: cluster.lease_ms = 100 is out of range (200 .. 600000)");
  EXPECT_EQ(error("[cluster]\nslots = 0\n"), "wrangler.toml:2: cluster.slots = 0 is out of range (1 .. 65536)");
  EXPECT_EQ(error("[cluster]\nurl = 5\n"), "wrangler.toml:2: cluster.url must be a string, not an integer");
  EXPECT_EQ(error("[cluster]\nnode = \"\"\n"), "wrangler.toml:2: cluster.node must not be empty");
  EXPECT_EQ(error("[cluster]\nleases = 1\n"),
            "wrangler.toml:2: unknown setting cluster.leases (known: url, node, advertise, lease_ms, slots, secret)");
  EXPECT_EQ(error("[cluster]\nsecret = \"short\"\n"), "wrangler.toml:2: cluster.secret must be at least 16 characters");
  EXPECT_EQ(error("cluster = 1\n"), "wrangler.toml:1: cluster must be a table, not an integer");
}

}  // namespace
}  // namespace durable::config
