#include "config/config.h"

#include "config/config_json.h"

// The Debian/CMake package links toml++ as a shared library; its CMake target passes these
// defines, and a build without the target must agree with it or it compiles a second copy.
#ifndef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 0
#define TOML_SHARED_LIB 1
#endif
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_map>

namespace durable::config {
namespace {

constexpr std::int64_t kMaxValueBytesLimit = 2 * 1024 * 1024;
constexpr std::int64_t kMaxShards = 1024;
constexpr std::int64_t kMaxBodyBytesLimit = std::int64_t{1} << 30;

int tomlLine(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

std::string tomlTypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

// Shortest text that reads back as the same double, spelled the way JavaScript's String()
// spells the special values, since Workers see vars through the same lens.
std::string floatText(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v < 0 ? "-Infinity" : "Infinity";
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, ec == std::errc() ? end : buf);
}

class Parser {
 public:
  Parser(std::string_view source, const detail::JsonNodeInfos* json) : json_(json) { config_.source = source; }

  Config run(std::string_view text) {
    toml::table root;
    try {
      root = toml::parse(text, config_.source);
    } catch (const toml::parse_error& e) {
      fail(static_cast<int>(e.source().begin.line), "TOML syntax error: " + std::string(e.description()));
    }
    return run(root);
  }

  // Every format's tree comes through here, so a key added for TOML works in JSON as is.
  Config run(const toml::table& root) {
    if (const toml::node* n = root.get("name")) parseName(*n);
    if (const toml::node* n = root.get("durable_objects")) parseDurableObjects(*n);
    if (const toml::node* n = root.get("migrations")) parseMigrations(*n);
    if (const toml::node* n = root.get("vars")) parseVars(*n);
    if (const toml::node* n = root.get("durable")) parseSettings(*n);
    if (const toml::node* n = root.get("cluster")) parseCluster(*n);
    return std::move(config_);
  }

 private:
  int lineOf(const toml::node& node) const {
    if (json_ == nullptr) return tomlLine(node);
    const auto it = json_->find(&node);
    return it == json_->end() ? 0 : it->second.line;
  }

  // In JSON's words for a tree read from JSON.
  std::string typeName(const toml::node& node) const {
    if (json_ == nullptr) return tomlTypeName(node);
    if (node.is_table()) return "an object";
    if (const auto it = json_->find(&node); it != json_->end() && it->second.null) return "null";
    return tomlTypeName(node);
  }

  [[noreturn]] void fail(int line, const std::string& message) const {
    std::string where = config_.source;
    if (line > 0) where += ":" + std::to_string(line);
    throw ConfigError(where + ": " + message);
  }

  const toml::table& requireTable(const toml::node& node, const std::string& what) const {
    if (const toml::table* t = node.as_table()) return *t;
    fail(lineOf(node), what + (json_ ? " must be an object, not " : " must be a table, not ") + typeName(node));
  }

  const toml::array& requireArray(const toml::node& node, const std::string& what) const {
    if (const toml::array* a = node.as_array()) return *a;
    fail(lineOf(node), what + " must be an array, not " + typeName(node));
  }

  // A required, non-empty string member of `table`; `what` names the table in errors.
  std::string requireString(const toml::table& table, std::string_view key, const std::string& what) const {
    const toml::node* n = table.get(key);
    if (n == nullptr) fail(lineOf(table), what + ": missing " + std::string(key));
    const auto* s = n->as_string();
    if (s == nullptr) fail(lineOf(*n), what + ": " + std::string(key) + " must be a string, not " + typeName(*n));
    if (s->get().empty()) fail(lineOf(*n), what + ": " + std::string(key) + " must not be empty");
    return s->get();
  }

  void parseName(const toml::node& node) {
    const auto* s = node.as_string();
    if (s == nullptr) fail(lineOf(node), "name must be a string, not " + typeName(node));
    const std::string& name = s->get();
    // It becomes a directory name (.durable/<name>): no separators, no "..", nothing hidden.
    const bool safe = !name.empty() && name.size() <= 255 && name.front() != '.' &&
                      std::all_of(name.begin(), name.end(), [](char c) {
                        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
                      });
    if (!safe) {
      fail(lineOf(node), "name \"" + name +
                             "\" is not a valid name (letters, digits, '-', '_' and '.', not starting with '.', "
                             "at most 255 characters)");
    }
    config_.name = name;
  }

  void parseDurableObjects(const toml::node& node) {
    const toml::table& table = requireTable(node, "durable_objects");
    const toml::node* list = table.get("bindings");
    if (list == nullptr) return;
    std::unordered_map<std::string, int> firstLine;
    for (const toml::node& item : requireArray(*list, "durable_objects.bindings")) {
      const toml::table& t = requireTable(item, "each durable_objects.bindings entry");
      Binding b;
      b.line = lineOf(t);
      b.name = requireString(t, "name", "binding");
      const std::string what = "binding " + b.name;
      b.className = requireString(t, "class_name", what);
      // Another Worker's class cannot be reached from here; silently binding to a local class
      // of the same name would be worse than refusing.
      if (const toml::node* s = t.get("script_name")) {
        fail(lineOf(*s), what + ": script_name is not supported (every class lives in this server)");
      }
      if (auto [it, fresh] = firstLine.emplace(b.name, b.line); !fresh) {
        fail(b.line, "duplicate binding name " + b.name + " (first defined on line " + std::to_string(it->second) + ")");
      }
      config_.bindings.push_back(std::move(b));
    }
  }

  std::vector<std::string> stringList(const toml::table& t, std::string_view key, const std::string& what) const {
    std::vector<std::string> out;
    const toml::node* n = t.get(key);
    if (n == nullptr) return out;
    const std::string field = what + ": " + std::string(key);
    const toml::array& array = requireArray(*n, field);
    for (std::size_t i = 0; i < array.size(); ++i) {
      const toml::node& item = array[i];
      const std::string member = field + "[" + std::to_string(i) + "]";
      const auto* s = item.as_string();
      if (s == nullptr) fail(lineOf(item), member + " must be a string, not " + typeName(item));
      if (s->get().empty()) fail(lineOf(item), member + " must not be empty");
      out.push_back(s->get());
    }
    return out;
  }

  void parseMigrations(const toml::node& node) {
    std::unordered_map<std::string, int> firstLine;
    for (const toml::node& item : requireArray(node, "migrations")) {
      const toml::table& t = requireTable(item, "each migrations entry");
      Migration m;
      m.line = lineOf(t);
      m.tag = requireString(t, "tag", "migration");
      const std::string what = "migration " + m.tag;
      if (auto [it, fresh] = firstLine.emplace(m.tag, m.line); !fresh) {
        fail(m.line, "duplicate migration tag " + m.tag + " (first used on line " + std::to_string(it->second) + ")");
      }
      m.newClasses = stringList(t, "new_classes", what);
      m.newSqliteClasses = stringList(t, "new_sqlite_classes", what);
      m.deletedClasses = stringList(t, "deleted_classes", what);
      if (const toml::node* r = t.get("renamed_classes")) {
        for (const toml::node& entry : requireArray(*r, what + ": renamed_classes")) {
          const toml::table& rt = requireTable(entry, what + ": each renamed_classes entry");
          Rename rename;
          rename.from = requireString(rt, "from", what + ": renamed_classes entry");
          rename.to = requireString(rt, "to", what + ": renamed_classes entry");
          m.renamedClasses.push_back(std::move(rename));
        }
      }
      // Ignoring a step of a migration would record it as applied without doing it.
      if (const toml::node* x = t.get("transferred_classes")) {
        fail(lineOf(*x), what + ": transferred_classes is not supported (there is only one script)");
      }
      config_.migrations.push_back(std::move(m));
    }
  }

  void parseVars(const toml::node& node) {
    for (const auto& [key, value] : requireTable(node, "vars")) {
      std::string text;
      if (const auto* s = value.as_string()) {
        text = s->get();
      } else if (const auto* i = value.as_integer()) {
        text = std::to_string(i->get());
      } else if (const auto* f = value.as_floating_point()) {
        text = floatText(f->get());
      } else if (const auto* b = value.as_boolean()) {
        text = b->get() ? "true" : "false";
      } else {
        fail(lineOf(value), "vars." + std::string(key.str()) + " must be a string, number or boolean, not " +
                                typeName(value));
      }
      config_.vars.emplace(std::string(key.str()), std::move(text));
    }
  }

  std::int64_t integerIn(const toml::node& n, std::string_view key, std::int64_t lo, std::int64_t hi,
                         std::string_view table = "durable.") const {
    const std::string field = std::string(table) + std::string(key);
    const auto* i = n.as_integer();
    if (i == nullptr) fail(lineOf(n), field + " must be an integer, not " + typeName(n));
    const std::int64_t v = i->get();
    if (v < lo || v > hi) {
      fail(lineOf(n), field + " = " + std::to_string(v) + " is out of range (" + std::to_string(lo) + " .. " +
                          std::to_string(hi) + ")");
    }
    return v;
  }

  void parseCluster(const toml::node& node) {
    ClusterSettings& c = config_.cluster;
    auto text = [&](const toml::node& value, std::string_view key) {
      const auto* str = value.as_string();
      if (str == nullptr) fail(lineOf(value), "cluster." + std::string(key) + " must be a string, not " + typeName(value));
      if (str->get().empty()) fail(lineOf(value), "cluster." + std::string(key) + " must not be empty");
      return str->get();
    };
    for (const auto& [k, value] : requireTable(node, "cluster")) {
      const std::string_view key = k.str();
      if (key == "url") {
        c.url = text(value, key);
      } else if (key == "node") {
        c.node = text(value, key);
      } else if (key == "advertise") {
        c.advertise = text(value, key);
      } else if (key == "lease_ms") {
        c.leaseMs = integerIn(value, key, 200, 600'000, "cluster.");
      } else if (key == "slots") {
        c.slots = static_cast<int>(integerIn(value, key, 1, 65'536, "cluster."));
      } else if (key == "secret") {
        c.secret = text(value, key);
        if (c.secret.size() < 16) fail(lineOf(value), "cluster.secret must be at least 16 characters");
      } else {
        fail(lineOf(value),
             "unknown setting cluster." + std::string(key) + " (known: url, node, advertise, lease_ms, slots, secret)");
      }
    }
  }

  void parseSettings(const toml::node& node) {
    Settings& s = config_.settings;
    // Our own table, so a misspelt key is a mistake worth reporting rather than ignoring.
    for (const auto& [k, value] : requireTable(node, "durable")) {
      const std::string_view key = k.str();
      if (key == "durability") {
        const auto* str = value.as_string();
        if (str == nullptr) fail(lineOf(value), "durable.durability must be a string, not " + typeName(value));
        if (str->get() == "full") {
          s.durability = Durability::kFull;
        } else if (str->get() == "relaxed") {
          s.durability = Durability::kRelaxed;
        } else {
          fail(lineOf(value), "unknown durability \"" + str->get() + "\" (expected \"full\" or \"relaxed\")");
        }
      } else if (key == "idle_timeout_ms") {
        s.idleTimeoutMs = integerIn(value, key, 1, std::numeric_limits<std::int64_t>::max());
      } else if (key == "max_value_bytes") {
        s.maxValueBytes = static_cast<std::size_t>(integerIn(value, key, 1, kMaxValueBytesLimit));
      } else if (key == "shards") {
        s.shards = static_cast<unsigned>(integerIn(value, key, 0, kMaxShards));
      } else if (key == "max_body_bytes") {
        s.maxBodyBytes = static_cast<std::size_t>(integerIn(value, key, 1, kMaxBodyBytesLimit));
      } else if (key == "hibernation_timeout_ms") {
        s.hibernationTimeoutMs = integerIn(value, key, 1, std::numeric_limits<std::int64_t>::max());
      } else if (key == "max_websocket_message_bytes") {
        s.maxWebSocketMessageBytes = static_cast<std::size_t>(integerIn(value, key, 1, kMaxBodyBytesLimit));
      } else if (key == "max_connections") {
        s.maxConnections = static_cast<std::size_t>(integerIn(value, key, 0, 1000000));
      } else if (key == "request_timeout_ms") {
        s.requestTimeoutMs = integerIn(value, key, 1, 3600 * 1000);
      } else if (key == "max_body_bytes_in_memory") {
        s.maxBodyBytesInMemory = static_cast<std::size_t>(integerIn(value, key, 1, std::int64_t{16} << 30));
      } else if (key == "max_websocket_send_queue_bytes") {
        s.maxWebSocketSendQueueBytes = static_cast<std::size_t>(integerIn(value, key, 1, kMaxBodyBytesLimit));
      } else if (key == "max_websocket_reassembly_bytes") {
        s.maxWebSocketReassemblyBytes = static_cast<std::size_t>(integerIn(value, key, 1, std::int64_t{16} << 30));
      } else if (key == "websocket_write_timeout_ms") {
        s.webSocketWriteTimeoutMs = integerIn(value, key, 1, 3600 * 1000);
      } else if (key == "websocket_message_timeout_ms") {
        s.webSocketMessageTimeoutMs = integerIn(value, key, 1, 3600 * 1000);
      } else if (key == "websocket_ping_interval_ms") {
        s.webSocketPingIntervalMs = integerIn(value, key, 0, 24 * 3600 * 1000);
      } else if (key == "websocket_pong_timeout_ms") {
        s.webSocketPongTimeoutMs = integerIn(value, key, 1, 3600 * 1000);
      } else if (key == "fetch_timeout_ms") {
        s.fetchTimeoutMs = integerIn(value, key, 1, 3600 * 1000);
      } else if (key == "max_fetch_response_bytes") {
        s.maxFetchResponseBytes = static_cast<std::size_t>(integerIn(value, key, 1, kMaxBodyBytesLimit));
      } else if (key == "max_pending_calls") {
        s.maxPendingCalls = static_cast<std::size_t>(integerIn(value, key, 1, 1000000));
      } else if (key == "admin") {
        const auto* str = value.as_string();
        if (str == nullptr) fail(lineOf(value), "durable.admin must be a string \"HOST:PORT\" or \"off\", not " + typeName(value));
        if (str->get().empty()) fail(lineOf(value), "durable.admin must be \"HOST:PORT\" or \"off\", not empty");
        s.admin = str->get();
      } else if (key == "admin_token") {
        const auto* str = value.as_string();
        if (str == nullptr) fail(lineOf(value), "durable.admin_token must be a string, not " + typeName(value));
        if (str->get().size() < 16) fail(lineOf(value), "durable.admin_token must be at least 16 characters long");
        s.adminToken = str->get();
      } else if (key == "log_format") {
        const auto* str = value.as_string();
        if (str == nullptr) fail(lineOf(value), "durable.log_format must be a string, not " + typeName(value));
        if (str->get() == "plain") {
          s.logFormat = LogFormat::kPlain;
        } else if (str->get() == "json") {
          s.logFormat = LogFormat::kJson;
        } else {
          fail(lineOf(value), "unknown log_format \"" + str->get() + "\" (expected \"plain\" or \"json\")");
        }
      } else if (key == "sql_max_database_bytes") {
        s.sqlMaxDatabaseBytes = static_cast<std::uint64_t>(integerIn(value, key, 64 * 1024, std::int64_t{1} << 40));
      } else if (key == "sql_max_value_bytes") {
        s.sqlMaxValueBytes = static_cast<int>(integerIn(value, key, 1024, std::int64_t{1} << 30));
      } else if (key == "sql_max_statement_bytes") {
        s.sqlMaxStatementBytes = static_cast<int>(integerIn(value, key, 1024, std::int64_t{1} << 30));
      } else if (key == "sql_max_bound_parameters") {
        s.sqlMaxBoundParameters = static_cast<int>(integerIn(value, key, 1, 32766));
      } else if (key == "sql_max_columns") {
        s.sqlMaxColumns = static_cast<int>(integerIn(value, key, 1, 2000));
      } else if (key == "pitr_retention_ms") {
        s.pitrRetentionMs = integerIn(value, key, 1000, std::int64_t{10} * 366 * 24 * 3600 * 1000);
      } else if (key == "pitr_snapshot_every") {
        s.pitrSnapshotEvery = static_cast<std::uint64_t>(integerIn(value, key, 1, 10'000'000));
      } else if (key == "access_log") {
        const auto* b = value.as_boolean();
        if (b == nullptr) fail(lineOf(value), "durable.access_log must be true or false, not " + typeName(value));
        s.accessLog = b->get();
      } else {
        fail(lineOf(value), "unknown setting durable." + std::string(key) +
                                " (known: durability, idle_timeout_ms, max_value_bytes, shards, max_body_bytes, "
                                "hibernation_timeout_ms, max_websocket_message_bytes, max_connections, request_timeout_ms, "
                                "max_body_bytes_in_memory, max_websocket_send_queue_bytes, max_websocket_reassembly_bytes, "
                                "websocket_write_timeout_ms, websocket_message_timeout_ms, websocket_ping_interval_ms, "
                                "websocket_pong_timeout_ms, max_pending_calls, fetch_timeout_ms, max_fetch_response_bytes, "
                                "access_log, admin, admin_token, log_format, sql_max_database_bytes, sql_max_value_bytes, "
                                "sql_max_statement_bytes, sql_max_bound_parameters, sql_max_columns, pitr_retention_ms, "
                                "pitr_snapshot_every)");
      }
    }
  }

  const detail::JsonNodeInfos* json_;
  Config config_;
};

}  // namespace

Config parseConfig(std::string_view tomlText, std::string_view sourceName) {
  return Parser(sourceName, nullptr).run(tomlText);
}

Config detail::validateTree(const toml::table& root, std::string_view source, const JsonNodeInfos* json) {
  return Parser(source, json).run(root);
}

Config loadConfig(const std::filesystem::path& path) {
  std::error_code ec;
  // A directory opens fine and then reads as empty; name the real problem instead.
  if (std::filesystem::is_directory(path, ec)) {
    throw ConfigError(path.string() + ": cannot read config file: is a directory");
  }
  const std::string extension = path.extension().string();
  const bool json = extension == ".json" || extension == ".jsonc";
  if (!json && extension != ".toml") {
    throw ConfigError(path.string() + ": unsupported config file type " +
                      (extension.empty() ? "(no extension)" : "\"" + extension + "\"") +
                      ": name it .toml (wrangler.toml), .json or .jsonc (wrangler.jsonc)");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path.string() + ": cannot read config file: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path.string() + ": cannot read config file: " + std::strerror(errno));
  return json ? parseJsonConfig(text.str(), path.string()) : parseConfig(text.str(), path.string());
}

}  // namespace durable::config
