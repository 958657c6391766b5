// config/config.h: the server's Wrangler-style configuration, wrangler.toml or wrangler.jsonc.
//
// The file is a subset of wrangler.toml, or of wrangler.jsonc: Durable Object bindings,
// migrations and [vars], plus a [durable] table for this runtime's own settings. Keys Wrangler
// knows and we do not need (name, main, compatibility_date, ...) are ignored so the same file
// serves both tools.
#pragma once

#include <durable/error.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace durable::config {

struct Binding {
  std::string name;
  std::string className;
  int line = 0;
  bool operator==(const Binding&) const = default;
};

struct Rename {
  std::string from;
  std::string to;
  bool operator==(const Rename&) const = default;
};

struct Migration {
  std::string tag;
  std::vector<std::string> newClasses, newSqliteClasses, deletedClasses;
  std::vector<Rename> renamedClasses;
  int line = 0;
  bool operator==(const Migration&) const = default;
};

enum class Durability { kFull, kRelaxed };
enum class LogFormat { kPlain, kJson };

struct Settings {
  Durability durability = Durability::kFull;     // [durable] durability = "full" | "relaxed"
  std::int64_t idleTimeoutMs = 60000;            // [durable] idle_timeout_ms (> 0)
  std::size_t maxValueBytes = 128 * 1024;        // [durable] max_value_bytes (1 .. 2 MiB)
  unsigned shards = 0;                           // [durable] shards (0 = one per core but one, at least 1; at most 1024)
  std::size_t maxBodyBytes = 100 * 1024 * 1024;  // [durable] max_body_bytes (1 .. 1 GiB)
  // An object whose only live work is hibernatable WebSockets leaves memory after this long.
  std::int64_t hibernationTimeoutMs = 10000;     // [durable] hibernation_timeout_ms (> 0)
  std::size_t maxWebSocketMessageBytes = 32 * 1024 * 1024;  // [durable] max_websocket_message_bytes (1 .. 1 GiB)
  // HTTP connections open at once; 0: three quarters of the descriptor limit.
  std::size_t maxConnections = 0;                // [durable] max_connections (0 .. 1,000,000)
  // A connection that takes longer to send a whole request, or to start the next one, is dropped.
  std::int64_t requestTimeoutMs = 30000;         // [durable] request_timeout_ms (1 .. 1 hour)
  bool accessLog = false;                        // [durable] access_log: one log line per request
  // Request bodies held in memory by all connections at once; a request past it gets 503.
  std::size_t maxBodyBytesInMemory = 128 * 1024 * 1024;  // [durable] max_body_bytes_in_memory (1 .. 16 GiB)
  // Bytes queued for one WebSocket beyond the frame being written; past it the socket is closed 1008.
  std::size_t maxWebSocketSendQueueBytes = 8 * 1024 * 1024;  // [durable] max_websocket_send_queue_bytes (1 .. 1 GiB)
  // Unfinished WebSocket messages held by all sockets at once; past it the socket is closed 1009.
  std::size_t maxWebSocketReassemblyBytes = 128 * 1024 * 1024;  // [durable] max_websocket_reassembly_bytes (1 .. 16 GiB)
  // A WebSocket that does not take a frame we are writing within this long is dropped.
  std::int64_t webSocketWriteTimeoutMs = 30000;  // [durable] websocket_write_timeout_ms (1 .. 1 hour)
  // A message whose fragments do not all arrive within this long closes its socket 1008.
  std::int64_t webSocketMessageTimeoutMs = 60000;  // [durable] websocket_message_timeout_ms (1 .. 1 hour)
  // A WebSocket silent this long gets a ping; 0: never (dead peers are then never reaped).
  std::int64_t webSocketPingIntervalMs = 60000;  // [durable] websocket_ping_interval_ms (0 .. 1 day)
  // After a ping, a peer that sends nothing (not even the pong) within this long is dropped.
  std::int64_t webSocketPongTimeoutMs = 30000;   // [durable] websocket_pong_timeout_ms (1 .. 1 hour)
  // Calls (fetch, RPC) one object has accepted and not yet answered; past it, a new call fails
  // at once with Error::overloaded() (an uncaught one answers 503 with Retry-After).
  std::size_t maxPendingCalls = 1000;            // [durable] max_pending_calls (1 .. 1,000,000)
  // durable::fetch(): how long one request may take (connect, TLS, send and the whole answer),
  // and how large an answer may be.
  std::int64_t fetchTimeoutMs = 30000;           // [durable] fetch_timeout_ms (1 .. 1 hour)
  std::size_t maxFetchResponseBytes = 32 * 1024 * 1024;  // [durable] max_fetch_response_bytes (1 .. 1 GiB)
  // The admin listener (metrics, admin API): "HOST:PORT", or "off"; empty: 127.0.0.1 and the
  // main port + 1000.
  std::string admin;                             // [durable] admin
  // Required by the admin listener when it is not on loopback; DURABLE_ADMIN_TOKEN overrides it.
  std::string adminToken;                        // [durable] admin_token
  LogFormat logFormat = LogFormat::kPlain;       // [durable] log_format = "plain" | "json"
  // The SQL database of each SQLite-backed object (durable/sql.h); Cloudflare's limits by default.
  std::uint64_t sqlMaxDatabaseBytes = 10ull * 1024 * 1024 * 1024;  // [durable] sql_max_database_bytes (64 KiB .. 1 TiB)
  int sqlMaxValueBytes = 2 * 1024 * 1024;        // [durable] sql_max_value_bytes: a string, blob or row (1 KiB .. 1 GiB)
  int sqlMaxStatementBytes = 100 * 1000;         // [durable] sql_max_statement_bytes (1 KiB .. 1 GiB)
  int sqlMaxBoundParameters = 100;               // [durable] sql_max_bound_parameters (1 .. 32766)
  int sqlMaxColumns = 100;                       // [durable] sql_max_columns (1 .. 2000)
  // Point-in-time recovery of SQLite-backed objects: how far back a bookmark may go, and how
  // many log entries an object makes between two snapshots of its database (restore speed).
  std::int64_t pitrRetentionMs = 30ll * 24 * 3600 * 1000;  // [durable] pitr_retention_ms (1 s .. 10 years)
  std::uint64_t pitrSnapshotEvery = 10'000;      // [durable] pitr_snapshot_every (1 .. 10,000,000)
  bool operator==(const Settings&) const = default;
};

// [cluster]: run as one node of a cluster on PostgreSQL (docs/cluster.md). Off while url is empty.
struct ClusterSettings {
  std::string url;                // [cluster] url: a libpq connection string or postgres:// URL
  std::string node;               // [cluster] node: this node's name, unique in the cluster
  std::string advertise;          // [cluster] advertise: HOST:PORT other nodes reach it at (default: --listen)
  std::int64_t leaseMs = 5000;    // [cluster] lease_ms (200 .. 600,000)
  int slots = 4096;               // [cluster] slots: fixed when the cluster is created (1 .. 65,536)
  // [cluster] secret (or DURABLE_CLUSTER_SECRET): what node-to-node requests carry, at least 16
  // characters, the same on every node. Empty: the one the cluster made when it was created.
  std::string secret;
  bool enabled() const { return !url.empty(); }
  bool operator==(const ClusterSettings&) const = default;
};

struct Config {
  std::string source;                        // file name used in error messages
  // Top-level `name` (wrangler's Worker name); empty when absent. Names the default state
  // directory, so it is one safe path component: letters, digits, '-', '_', '.', not
  // starting with '.'.
  std::string name;
  std::vector<Binding> bindings;             // [[durable_objects.bindings]] name, class_name
  std::vector<Migration> migrations;         // [[migrations]]
  std::map<std::string, std::string> vars;  // [vars]; numbers and booleans as their text
  Settings settings;
  ClusterSettings cluster;
  // Whole-value comparison, so that a test can show two files giving the same configuration.
  bool operator==(const Config&) const = default;
};

// Messages are "<source>:<line>: <message>", or "<source>: <message>" when no line applies.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& message) : Error(ErrorCode::kInvalidArgument, message) {}
};

Config parseConfig(std::string_view tomlText, std::string_view sourceName);
// wrangler.json / wrangler.jsonc: the same keys in wrangler's JSON shape, with comments and
// trailing commas allowed; the same checks and messages, a JSON object called an object.
Config parseJsonConfig(std::string_view jsonText, std::string_view sourceName);
// TOML for a .toml file, JSON for .json and .jsonc; any other name is a ConfigError. Throws
// ConfigError naming the file if it cannot be read.
Config loadConfig(const std::filesystem::path& path);

}  // namespace durable::config
