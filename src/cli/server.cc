#include "config/config.h"
#include "config/migrations.h"
#include "net/http_server.h"
#include "runtime/log.h"
#include "runtime/runtime.h"

#include <durable/server.h>

#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <iostream>
#include <set>
#include <thread>

namespace durable {

namespace {

constexpr const char* kUsage = R"(durable: Durable Objects, self-hosted.

Usage:
  durable serve [--config FILE] [--listen HOST:PORT] [--persist-to DIR]
                [--durability full|relaxed] [--shards N] [--idle-timeout-ms N]
  durable --help

Options:
  --config FILE         wrangler-style TOML: [[durable_objects.bindings]], [[migrations]],
                        [vars], and durable's own [durable] table
  --listen HOST:PORT    where to serve HTTP and WebSocket (default 127.0.0.1:8787; port 0 picks one)
  --persist-to DIR      where objects' storage lives (default .durable/state)
  --durability MODE     full: a reply waits for fsync (default); relaxed: WAL synchronous=NORMAL
  --shards N            shard threads (default: one per core but one)
  --idle-timeout-ms N   evict an object after this long without events

SIGTERM or SIGINT drains in-flight requests, commits, and exits 0.
)";

std::pair<std::string, std::uint16_t> splitListen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("--listen wants HOST:PORT, got " + listen);
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1 || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    throw std::runtime_error("--listen wants HOST:PORT with a port 0-65535, got " + listen);
  }
  return {host, static_cast<std::uint16_t>(port)};
}

// The class names live after `migrations` (the config holds the whole history; recorded
// tags must be a prefix of it). Names only: keys and namespace IDs come from meta.sqlite.
config::MigrationState liveClassesAfter(const std::vector<config::Migration>& migrations) {
  std::set<std::string> live;
  for (const auto& m : migrations) {
    live.insert(m.newClasses.begin(), m.newClasses.end());
    live.insert(m.newSqliteClasses.begin(), m.newSqliteClasses.end());
    for (const auto& r : m.renamedClasses) {
      if (live.erase(r.from)) live.insert(r.to);
    }
    for (const auto& d : m.deletedClasses) live.erase(d);
  }
  config::MigrationState state;
  for (const auto& name : live) state.classes.push_back({name, 0, {}});
  return state;
}

// The classes that new_sqlite_classes created, under their names after every migration.
std::set<std::string> sqliteBackedClasses(const std::vector<config::Migration>& migrations) {
  std::set<std::string> sqlite;
  for (const auto& m : migrations) {
    sqlite.insert(m.newSqliteClasses.begin(), m.newSqliteClasses.end());
    for (const auto& r : m.renamedClasses) {
      if (sqlite.erase(r.from)) sqlite.insert(r.to);
    }
    for (const auto& d : m.deletedClasses) sqlite.erase(d);
  }
  return sqlite;
}

}  // namespace

Server::Server() : worker_(std::make_shared<Worker>()) {}
Server::~Server() = default;

Server& Server::exportClass(std::string name, Factory factory) {
  classes_[std::move(name)] = std::move(factory);
  return *this;
}

Server& Server::setWorker(Worker worker) {
  worker_ = std::make_shared<Worker>(std::move(worker));
  return *this;
}

int Server::run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] != "serve") {
    std::cerr << "durable: unknown command '" << args[0] << "'\n\n" << kUsage;
    return 2;
  }
  ServeOptions options;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (auto eq = a.find('='); eq != std::string::npos) return a.substr(eq + 1);
      if (i + 1 >= args.size()) throw std::runtime_error(a + " needs a value");
      return args[++i];
    };
    auto is = [&](const char* flag) { return a == flag || a.rfind(std::string(flag) + "=", 0) == 0; };
    try {
      if (a == "--help" || a == "-h") {
        std::cout << kUsage;
        return 0;
      } else if (is("--config")) {
        options.configPath = value();
      } else if (is("--listen")) {
        options.listen = value();
      } else if (is("--persist-to")) {
        options.persistDir = value();
      } else if (is("--durability")) {
        options.durability = value();
      } else if (is("--shards")) {
        options.shards = static_cast<unsigned>(std::stoul(value()));
      } else if (is("--idle-timeout-ms")) {
        options.idleTimeoutMs = std::stoll(value());
      } else {
        throw std::runtime_error("unknown option " + a);
      }
    } catch (const std::exception& e) {
      std::cerr << "durable: " << e.what() << "\n\n" << kUsage;
      return 2;
    }
  }
  return serve(options);
}

int Server::serve(const ServeOptions& options) {
  // Signals are taken by sigwait below; every thread started from here inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // Every connection is a descriptor: take all the process may have.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  try {
    config::Config cfg;
    if (!options.configPath.empty()) cfg = config::loadConfig(options.configPath);
    if (options.durability) {
      if (*options.durability == "full") {
        cfg.settings.durability = config::Durability::kFull;
      } else if (*options.durability == "relaxed") {
        cfg.settings.durability = config::Durability::kRelaxed;
      } else {
        throw config::ConfigError("--durability wants full or relaxed, got " + *options.durability);
      }
    }
    if (options.shards) cfg.settings.shards = *options.shards;
    if (options.idleTimeoutMs) {
      if (*options.idleTimeoutMs <= 0) throw config::ConfigError("--idle-timeout-ms must be positive");
      cfg.settings.idleTimeoutMs = *options.idleTimeoutMs;
    }
    auto [host, port] = splitListen(options.listen);

    std::set<std::string> exported;
    for (const auto& [name, _] : classes_) exported.insert(name);
    // Check the bindings against the classes the config's migrations leave live before
    // applying them: a config refused here must not leave its migrations recorded in
    // meta.sqlite (they would then conflict with the corrected config's).
    config::validateBindings(cfg, liveClassesAfter(cfg.migrations), exported);

    config::MetaStore meta(options.persistDir);
    auto state = meta.apply(cfg);
    config::validateBindings(cfg, state, exported);

    int partitions = meta.partitions().value_or(0);
    if (partitions <= 0) {
      // Fixed for the life of the state directory: a later run with more shards has no
      // partition to give them (Runtime caps shards at partitions).
      unsigned n = cfg.settings.shards ? cfg.settings.shards : detail::defaultShardCount();
      partitions = static_cast<int>(n);
      meta.setPartitions(partitions);
    }

    std::vector<std::unique_ptr<detail::NamespaceImpl>> namespaces;
    std::vector<detail::NamespaceImpl*> bindings;
    const std::set<std::string> sqliteClasses = sqliteBackedClasses(cfg.migrations);
    for (const auto& b : cfg.bindings) {
      for (const auto& c : state.classes) {
        if (c.name != b.className) continue;
        auto ns = std::make_unique<detail::NamespaceImpl>();
        ns->binding = b.name;
        ns->className = c.name;
        ns->nsId = c.nsId;
        ns->key = c.key;
        ns->sqliteBacked = sqliteClasses.count(c.name) > 0;
        ns->factory = classes_.at(c.name);
        bindings.push_back(ns.get());
        namespaces.push_back(std::move(ns));
      }
    }
    std::map<std::string, std::string, std::less<>> vars(cfg.vars.begin(), cfg.vars.end());

    detail::RuntimeOptions runtimeOptions{options.persistDir, cfg.settings};
    detail::Runtime runtime(runtimeOptions, bindings, std::move(vars), state.namespacesToPurge, partitions);
    for (auto ns : state.namespacesToPurge) meta.markPurged(ns);
    runtime.start();

    detail::HttpOptions httpOptions;
    httpOptions.host = host;
    httpOptions.port = port;
    httpOptions.maxBodyBytes = cfg.settings.maxBodyBytes;
    httpOptions.maxConnections = cfg.settings.maxConnections;
    httpOptions.readTimeout = std::chrono::milliseconds(cfg.settings.requestTimeoutMs);
    detail::HttpServer http(runtime, *worker_, httpOptions);
    http.start();
    std::cout << kListeningBanner << host << ":" << http.port() << std::endl;

    int sig = 0;
    sigwait(&signals, &sig);
    std::cerr << "durable: " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << ", draining" << std::endl;
    http.stopAccepting();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (http.inFlight() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    runtime.stop();
    std::cerr << "durable: stopped" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "durable: " << e.what() << std::endl;
    return 1;
  }
}

}  // namespace durable
