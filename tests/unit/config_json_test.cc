// wrangler.json / wrangler.jsonc: the same Config as the equivalent TOML, and the same checks
// with the line of the offending value.
#include "config/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <unistd.h>

namespace durable::config {

// Readable failures for EXPECT_EQ on whole configs.
void PrintTo(const Config& c, std::ostream* os) {
  *os << "{source=" << c.source << " name=" << c.name << " bindings=[";
  for (const Binding& b : c.bindings) *os << b.name << ":" << b.className << "@" << b.line << " ";
  *os << "] migrations=[";
  for (const Migration& m : c.migrations) {
    *os << m.tag << "@" << m.line << "(new " << m.newClasses.size() << ", sqlite " << m.newSqliteClasses.size()
        << ", renamed " << m.renamedClasses.size() << ", deleted " << m.deletedClasses.size() << ") ";
  }
  *os << "] vars={";
  for (const auto& [k, v] : c.vars) *os << k << "=" << v << " ";
  const Settings& s = c.settings;
  *os << "} settings={durability=" << static_cast<int>(s.durability) << " idle=" << s.idleTimeoutMs
      << " maxValue=" << s.maxValueBytes << " shards=" << s.shards << " maxBody=" << s.maxBodyBytes
      << " hibernation=" << s.hibernationTimeoutMs << " maxWsMessage=" << s.maxWebSocketMessageBytes
      << " maxConnections=" << s.maxConnections << " requestTimeout=" << s.requestTimeoutMs
      << " accessLog=" << s.accessLog << "}}";
}

namespace {

// The lines differ between the two formats by design; everything else must not.
Config withoutLines(Config c) {
  for (Binding& b : c.bindings) b.line = 0;
  for (Migration& m : c.migrations) m.line = 0;
  return c;
}

void expectSame(const std::string& toml, const std::string& json) {
  const Config fromToml = parseConfig(toml, "wrangler");
  const Config fromJson = parseJsonConfig(json, "wrangler");
  EXPECT_EQ(withoutLines(fromJson), withoutLines(fromToml));
}

// Expects JSON parsing to fail with exactly "wrangler.jsonc:<line>: ..." and the message to
// contain `fragment`; returns the message after that prefix.
std::string expectError(const std::string& json, int line, const std::string& fragment) {
  try {
    parseJsonConfig(json, "wrangler.jsonc");
    ADD_FAILURE() << "parsed without error:\n" << json;
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    const std::string prefix = "wrangler.jsonc:" + std::to_string(line) + ": ";
    EXPECT_EQ(msg.rfind(prefix, 0), 0u) << "want prefix \"" << prefix << "\", got: " << msg << "\nin:\n" << json;
    EXPECT_NE(msg.find(fragment), std::string::npos) << "want \"" << fragment << "\" in: " << msg;
    return msg.substr(std::min(prefix.size(), msg.size()));
  }
  return "";
}

// The message TOML gives for the same mistake, after its "<source>:<line>: ".
std::string tomlMessage(const std::string& toml) {
  try {
    parseConfig(toml, "wrangler.toml");
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    const std::size_t colon = msg.find(": ");
    return colon == std::string::npos ? msg : msg.substr(colon + 2);
  }
  ADD_FAILURE() << "TOML parsed without error:\n" << toml;
  return "";
}

constexpr const char* kFullToml = R"(name = "my-worker"
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
NEGATIVE = -7
RATIO = 1.5
WHOLE = 3.0
DEBUG = true
OFF = false
EMPTY = ""

[durable]
durability = "relaxed"
idle_timeout_ms = 5000
max_value_bytes = 2097152
shards = 4
max_body_bytes = 1024
hibernation_timeout_ms = 2500
max_websocket_message_bytes = 4096
max_connections = 100
request_timeout_ms = 1500
access_log = true
)";

// Line comments, block comments (one spanning lines), trailing commas in objects and arrays,
// keys Wrangler knows and we ignore, and values on a line after their key.
constexpr const char* kFullJsonc = R"(// wrangler.jsonc
{
  "$schema": "node_modules/wrangler/config-schema.json",
  "name": "my-worker",
  "main": "src/index.ts", // ignored here, used by wrangler
  "compatibility_date": "2024-01-01",
  /* Two bindings,
     one per class. */
  "durable_objects": {
    "bindings": [
      { "name": "COUNTER", "class_name": "Counter" },
      {
        "name": "ROOMS",
        "class_name": "ChatRoom",
      },
    ],
  },
  "migrations": [
    { "tag": "v1", "new_classes": ["Counter", "Old",] },
    {
      "tag": "v2",
      "new_sqlite_classes": ["ChatRoom"],
      "renamed_classes": [{ "from": "Old", "to": "New" }],
    },
    { "tag": "v3", "deleted_classes": ["New"] }, // last one
  ],
  "vars": {
    "GREETING": "hello",
    "LIMIT": 42,
    "NEGATIVE": -7,
    "RATIO": 1.5,
    "WHOLE": 3.0,
    "DEBUG": true,
    "OFF": false,
    "EMPTY": "",
  },
  "durable": {
    "durability": "relaxed",
    "idle_timeout_ms":
      5000,
    "max_value_bytes": 2097152,
    "shards": 4,
    "max_body_bytes": 1024,
    "hibernation_timeout_ms": 2500,
    "max_websocket_message_bytes": 4096,
    "max_connections": 100,
    "request_timeout_ms": 1500,
    "access_log": true,
  },
}
)";

TEST(ConfigJson, JsoncGivesTheSameConfigAsToml) {
  const Config fromToml = parseConfig(kFullToml, "wrangler");
  const Config fromJson = parseJsonConfig(kFullJsonc, "wrangler");
  EXPECT_EQ(withoutLines(fromJson), withoutLines(fromToml));

  // Not vacuous: the TOML side holds every key with a value other than its default.
  EXPECT_EQ(fromJson.name, "my-worker");
  ASSERT_EQ(fromJson.bindings.size(), 2u);
  EXPECT_EQ(fromJson.bindings[1].className, "ChatRoom");
  ASSERT_EQ(fromJson.migrations.size(), 3u);
  ASSERT_EQ(fromJson.migrations[1].renamedClasses.size(), 1u);
  EXPECT_EQ(fromJson.migrations[1].renamedClasses[0].to, "New");
  EXPECT_EQ(fromJson.vars.at("WHOLE"), "3");
  EXPECT_EQ(fromJson.vars.at("NEGATIVE"), "-7");
  EXPECT_EQ(fromJson.vars.size(), 8u);
  const Settings defaults;
  EXPECT_EQ(fromJson.settings.durability, Durability::kRelaxed);
  EXPECT_NE(fromJson.settings.idleTimeoutMs, defaults.idleTimeoutMs);
  EXPECT_NE(fromJson.settings.hibernationTimeoutMs, defaults.hibernationTimeoutMs);
  EXPECT_NE(fromJson.settings.maxWebSocketMessageBytes, defaults.maxWebSocketMessageBytes);
  EXPECT_NE(fromJson.settings.maxConnections, defaults.maxConnections);
  EXPECT_TRUE(fromJson.settings.accessLog);

  // The lines a later message (from migrations, say) cites are the JSON file's own.
  EXPECT_EQ(fromJson.bindings[0].line, 11);
  EXPECT_EQ(fromJson.bindings[1].line, 12);
  EXPECT_EQ(fromJson.migrations[0].line, 19);
  EXPECT_EQ(fromJson.migrations[1].line, 20);
  EXPECT_EQ(fromJson.migrations[2].line, 25);
}

TEST(ConfigJson, PlainJsonAndSmallShapes) {
  // wrangler.json: no comments, no trailing commas, all on one line.
  expectSame(kFullToml,
             R"({"name":"my-worker","durable_objects":{"bindings":[{"name":"COUNTER","class_name":"Counter"},)"
             R"({"name":"ROOMS","class_name":"ChatRoom"}]},"migrations":[{"tag":"v1","new_classes":["Counter","Old"]},)"
             R"({"tag":"v2","new_sqlite_classes":["ChatRoom"],"renamed_classes":[{"from":"Old","to":"New"}]},)"
             R"({"tag":"v3","deleted_classes":["New"]}],"vars":{"GREETING":"hello","LIMIT":42,"NEGATIVE":-7,)"
             R"("RATIO":1.5,"WHOLE":3.0,"DEBUG":true,"OFF":false,"EMPTY":""},"durable":{"durability":"relaxed",)"
             R"("idle_timeout_ms":5000,"max_value_bytes":2097152,"shards":4,"max_body_bytes":1024,)"
             R"("hibernation_timeout_ms":2500,"max_websocket_message_bytes":4096,"max_connections":100,)"
             R"("request_timeout_ms":1500,"access_log":true}})");
  expectSame("", "{}");
  expectSame("", "// nothing yet\n{ /* still nothing */ }\n");
  expectSame("", "{}\n\n  \n// the end\n/* really\n the end */\n");
  expectSame("\xEF\xBB\xBFname = \"bom\"\n", "\xEF\xBB\xBF{\"name\": \"bom\"}\n");
  expectSame("[durable_objects]\n", R"({"durable_objects": {}})");
  expectSame("[durable_objects]\nbindings = []\n", R"({"durable_objects": {"bindings": []}})");
  expectSame("migrations = []\n[vars]\n", R"({"migrations": [], "vars": {}})");
  // Escapes and non-ASCII text arrive decoded, as TOML's do.
  expectSame("[vars]\nQUOTE = \"a\\\"b\\\\c\\n\"\nSNOW = \"\u2603 snow\"\n",
             "{\"vars\": {\"QUOTE\": \"a\\\"b\\\\c\\n\", \"SNOW\": \"\\u2603 snow\"}}");
  expectSame("[vars]\nBIG = 9223372036854775807\nEXP = 1e3\nSMALL = -0.25\n",
             R"({"vars": {"BIG": 9223372036854775807, "EXP": 1e3, "SMALL": -0.25}})");
  // A comment marker inside a string is text.
  expectSame("[vars]\nURL = \"https://example.com/*x*/\"\n", R"({"vars": {"URL": "https://example.com/*x*/"}})");
}

TEST(ConfigJson, SyntaxErrorsNameLineAndColumn) {
  expectError("{\n  \"a\": 1\n  \"b\": 2\n}\n", 3, "JSON syntax error at column 3");
  expectError("{\n  \"vars\": {\"X\": \"unterminated\n}\n", 2, "JSON syntax error");
  expectError("{\n  \"a\": tru\n}\n", 2, "JSON syntax error at column");
  // An unfinished document is reported just past its last character.
  expectError("{\n  \"a\": [1, 2\n\n", 2, "JSON syntax error at column 13");
  expectError("\n\n", 1, "JSON syntax error");
  expectError("", 1, "JSON syntax error");
  expectError("{}\n{}\n", 2, "JSON syntax error at column 1: more text after the top-level object");
  expectError("{} // fine\n/* fine */ {}\n", 2, "JSON syntax error at column 12: more text");
  expectError("{\n  # a TOML comment\n}\n", 2, "JSON syntax error at column 3");
  expectError("{\"a\": 1,,}", 1, "JSON syntax error at column 9");
  // Deep nesting is refused, not recursed into.
  expectError("{\"a\": " + std::string(100, '[') + std::string(100, ']') + "}", 1, "JSON syntax error");
}

// Every cut and every one-byte corruption of a valid file either parses or is a ConfigError
// that names a line: never a crash, never another exception.
TEST(ConfigJson, DamagedTextIsAnErrorNotACrash) {
  const std::string good = kFullJsonc;
  const auto check = [](const std::string& text) {
    try {
      parseJsonConfig(text, "wrangler.jsonc");
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      ASSERT_EQ(msg.rfind("wrangler.jsonc:", 0), 0u) << msg;
      ASSERT_GT(std::atoi(msg.c_str() + std::string("wrangler.jsonc:").size()), 0) << msg;
    } catch (const std::exception& e) {
      FAIL() << "not a ConfigError: " << e.what() << "\nin:\n" << text;
    }
  };
  for (std::size_t n = 0; n < good.size(); ++n) check(good.substr(0, n));
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (const char c : std::string("{}[]\",:/*\n\\\0\xff", 13)) {
      std::string text = good;
      text[i] = c;
      check(text);
    }
  }
}

TEST(ConfigJson, WhatTomlCannotHoldIsAnError) {
  expectError("\n[\n]\n", 2, "the top level must be an object, not an array");
  expectError("\n\"text\"\n", 2, "the top level must be an object");
  expectError("{\n  \"vars\": {\n    \"A\": 1,\n    \"A\": 2\n  }\n}\n", 4, "duplicate key \"A\" (first on line 3)");
  expectError("{\"durable\": {}, \"durable\": {}}", 1, "duplicate key \"durable\"");
  expectError("{\n\"vars\": {\"N\": 18446744073709551615}}", 2, "integer 18446744073709551615 is out of range");
}

TEST(ConfigJson, BindingErrorsMatchToml) {
  const auto same = [](const std::string& json, int line, const std::string& toml, const std::string& fragment) {
    EXPECT_EQ(expectError(json, line, fragment), tomlMessage(toml));
  };
  same("{\"durable_objects\": {\"bindings\": [\n  {\"class_name\": \"C\"}]}}", 2,
       "[[durable_objects.bindings]]\nclass_name = \"C\"\n", "binding: missing name");
  same("{\"durable_objects\": {\"bindings\": [{\n  \"name\": 5, \"class_name\": \"C\"}]}}", 2,
       "[[durable_objects.bindings]]\nname = 5\nclass_name = \"C\"\n", "name must be a string, not an integer");
  same("{\"durable_objects\": {\"bindings\": [{\"name\":\n\n  \"\", \"class_name\": \"C\"}]}}", 3,
       "[[durable_objects.bindings]]\nname = \"\"\nclass_name = \"C\"\n", "name must not be empty");
  same("{\"durable_objects\": {\"bindings\": [\n{\"name\": \"N\"}]}}", 2, "[[durable_objects.bindings]]\nname = \"N\"\n",
       "binding N: missing class_name");
  same("{\"durable_objects\": {\"bindings\": [{\"name\": \"N\",\n \"class_name\": [\"C\"]}]}}", 2,
       "[[durable_objects.bindings]]\nname = \"N\"\nclass_name = [\"C\"]\n",
       "binding N: class_name must be a string, not an array");
  same("{\"durable_objects\": {\"bindings\": [{\"name\": \"N\", \"class_name\": \"C\",\n \"script_name\": \"other\"}]}}",
       2, "[[durable_objects.bindings]]\nname = \"N\"\nclass_name = \"C\"\nscript_name = \"other\"\n",
       "script_name is not supported");

  expectError(R"({
  "durable_objects": {
    "bindings": [
      { "name": "N", "class_name": "C" },

      { "name": "N", "class_name": "D" },
    ],
  },
})",
              6, "duplicate binding name N (first defined on line 4)");
  expectError("{\"durable_objects\":\n 3}", 2, "durable_objects must be an object, not an integer");
  expectError("{\"durable_objects\": {\"bindings\": \"x\"}}", 1,
              "durable_objects.bindings must be an array, not a string");
  expectError("{\"durable_objects\": {\"bindings\": [\n1]}}", 2,
              "each durable_objects.bindings entry must be an object, not an integer");
  expectError("{\"durable_objects\": {\"bindings\": [{\"name\":\n null}]}}", 2, "binding: name must be a string, not null");
  expectError("{\"durable_objects\": null}", 1, "durable_objects must be an object, not null");
}

TEST(ConfigJson, MigrationErrorsMatchToml) {
  const auto same = [](const std::string& json, int line, const std::string& toml, const std::string& fragment) {
    EXPECT_EQ(expectError(json, line, fragment), tomlMessage(toml));
  };
  same("{\"migrations\": [\n{\"new_classes\": [\"A\"]}]}", 2, "[[migrations]]\nnew_classes = [\"A\"]\n",
       "migration: missing tag");
  same("{\"migrations\": [{\n\"tag\": 1}]}", 2, "[[migrations]]\ntag = 1\n", "tag must be a string, not an integer");
  same("{\"migrations\": [{\"tag\": \"v1\", \"new_classes\": [\"A\",\n 2]}]}", 2,
       "[[migrations]]\ntag = \"v1\"\nnew_classes = [\"A\", 2]\n",
       "migration v1: new_classes[1] must be a string, not an integer");
  same("{\"migrations\": [{\"tag\": \"v1\",\n\"new_sqlite_classes\": \"A\"}]}", 2,
       "[[migrations]]\ntag = \"v1\"\nnew_sqlite_classes = \"A\"\n", "migration v1: new_sqlite_classes must be an array");
  same("{\"migrations\": [{\"tag\": \"v1\", \"deleted_classes\": [\n\"\"]}]}", 2,
       "[[migrations]]\ntag = \"v1\"\ndeleted_classes = [\"\"]\n", "deleted_classes[0] must not be empty");
  same("{\"migrations\": [{\"tag\": \"v1\", \"renamed_classes\": [\n{\"from\": \"A\"}]}]}", 2,
       "[[migrations]]\ntag = \"v1\"\nrenamed_classes = [{ from = \"A\" }]\n",
       "migration v1: renamed_classes entry: missing to");
  same("{\"migrations\": [{\"tag\": \"v1\", \"transferred_classes\":\n[]}]}", 2,
       "[[migrations]]\ntag = \"v1\"\ntransferred_classes = []\n", "transferred_classes is not supported");

  expectError("{\"migrations\": [\n  {\"tag\": \"v1\"},\n  {\"tag\": \"v1\"}\n]}", 3,
              "duplicate migration tag v1 (first used on line 2)");
  expectError("{\"migrations\": [{\"tag\": \"v1\", \"renamed_classes\": [\n\"A\"]}]}", 2,
              "each renamed_classes entry must be an object, not a string");
  expectError("{\"migrations\":\n {\"tag\": \"v1\"}}", 2, "migrations must be an array, not an object");
}

TEST(ConfigJson, VarsAndSettingsErrorsMatchToml) {
  const auto same = [](const std::string& json, int line, const std::string& toml, const std::string& fragment) {
    EXPECT_EQ(expectError(json, line, fragment), tomlMessage(toml));
  };
  same("{\"vars\": {\"OK\": \"x\",\n\"BAD\": [1]}}", 2, "[vars]\nOK = \"x\"\nBAD = [1]\n",
       "vars.BAD must be a string, number or boolean, not an array");
  same("{\"durable\": {\n\"durability\": \"eventual\"}}", 2, "[durable]\ndurability = \"eventual\"\n",
       "unknown durability \"eventual\"");
  same("{\"durable\": {\n\"durability\": true}}", 2, "[durable]\ndurability = true\n",
       "durable.durability must be a string, not a boolean");
  same("{\"durable\": {\"idle_timeout_ms\":\n 0}}", 2, "[durable]\nidle_timeout_ms = 0\n",
       "durable.idle_timeout_ms = 0 is out of range");
  same("{\"durable\": {\"idle_timeout_ms\": 1.5\n}}", 1, "[durable]\nidle_timeout_ms = 1.5\n",
       "durable.idle_timeout_ms must be an integer, not a float");
  same("{\"durable\": {\n\"max_value_bytes\": 2097153}}", 2, "[durable]\nmax_value_bytes = 2097153\n",
       "out of range (1 .. 2097152)");
  same("{\"durable\": {\n\"shards\": -1}}", 2, "[durable]\nshards = -1\n", "durable.shards = -1 is out of range");
  same("{\"durable\": {\n\"shard\": 2}}", 2, "[durable]\nshard = 2\n", "unknown setting durable.shard");
  same("{\"durable\": {\n\"access_log\": \"yes\"}}", 2, "[durable]\naccess_log = \"yes\"\n", "durable.access_log");
  same("{\n\"name\": \"../up\"}", 2, "name = \"../up\"\n", "is not a valid name");

  expectError("{\"vars\":\n 1}", 2, "vars must be an object, not an integer");
  expectError("{\"vars\": {\n\"X\": {}}}", 2, "vars.X must be a string, number or boolean, not an object");
  expectError("{\"vars\": {\n\"X\": null}}", 2, "vars.X must be a string, number or boolean, not null");
  expectError("{\"durable\": {\"shards\":\n null}}", 2, "durable.shards must be an integer, not null");
}

TEST(ConfigJson, LoadConfigChoosesTheFormatByExtension) {
  const auto dir = std::filesystem::temp_directory_path() / ("durable-config-json-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string body = "{\n  // the one binding\n  \"durable_objects\": {\"bindings\": [{\"name\": \"X\", \"class_name\": \"Y\"},]},\n}\n";
  for (const char* name : {"wrangler.jsonc", "wrangler.json"}) {
    const auto file = dir / name;
    std::ofstream(file) << body;
    const Config c = loadConfig(file);
    EXPECT_EQ(c.source, file.string());
    ASSERT_EQ(c.bindings.size(), 1u) << name;
    EXPECT_EQ(c.bindings[0].className, "Y");
    EXPECT_EQ(c.bindings[0].line, 3);
  }

  // JSON in a .toml file is read as TOML, and fails as TOML.
  std::ofstream(dir / "wrangler.toml") << body;
  try {
    loadConfig(dir / "wrangler.toml");
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("TOML syntax error"), std::string::npos) << e.what();
  }

  {
    const auto file = dir / "wrangler.jsonc";
    std::ofstream(file) << "{\"durable\": {\n  \"shards\": \"many\"\n}}\n";
    try {
      loadConfig(file);
      ADD_FAILURE();
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()), file.string() + ":2: durable.shards must be an integer, not a string");
    }
  }

  // Refused by name, before anything is read: these files do not even exist.
  for (const char* name : {"wrangler.yaml", "wrangler", "wrangler.JSONC", "wrangler.toml.bak"}) {
    const auto file = dir / "other" / name;
    try {
      loadConfig(file);
      ADD_FAILURE() << name;
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(file.string() + ": unsupported config file type", 0), 0u) << msg;
      EXPECT_NE(msg.find(".toml"), std::string::npos) << msg;
      EXPECT_NE(msg.find(".json"), std::string::npos) << msg;
      EXPECT_NE(msg.find(".jsonc"), std::string::npos) << msg;
    }
  }

  try {
    loadConfig(dir / "missing.jsonc");
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind((dir / "missing.jsonc").string() + ": cannot read config file", 0), 0u)
        << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace durable::config
