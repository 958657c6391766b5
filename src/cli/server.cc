#include "admin/admin.h"
#include "cli/options.h"
#include "cli/state.h"
#include "cli/tools.h"
#include "cluster/membership.h"
#include "cluster/status.h"
#include "config/config.h"
#include "config/migrations.h"
#include "net/http_server.h"
#include "base/log.h"
#include "runtime/runtime.h"
#include "runtime/state_lock.h"

#include <durable/server.h>

#include <boost/asio/ip/address.hpp>

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <set>
#include <thread>

namespace durable {

namespace {

constexpr const char* kUsageHead = R"(durable: Durable Objects, self-hosted.

Usage:
  durable serve [--config FILE] [--listen HOST:PORT] [--persist-to DIR]
                [--durability full|relaxed] [--shards N] [--idle-timeout-ms N]
                [--admin HOST:PORT|off]
                [--cluster POSTGRES_URL --node NAME [--advertise HOST:PORT]]
)";
constexpr const char* kUsageTail = R"(  durable cluster status [--cluster URL | --config FILE]
  durable --help
  durable --version

Options:
  --config FILE         wrangler.toml, wrangler.json or wrangler.jsonc: name,
                        durable_objects.bindings, migrations, vars, and durable's own
                        "durable" table (required unless the server was built with a
                        default config)
  --listen HOST:PORT    where to serve HTTP and WebSocket (default 127.0.0.1:8787; a host name
                        that resolves, an IPv4 address or [IPv6]; port 0 picks one)
  --persist-to DIR      where objects' storage lives (default .durable/<the config's name>);
                        one server per directory
  --durability MODE     full: a reply waits for fsync (default); relaxed: WAL synchronous=NORMAL
  --shards N            shard threads, 1 to 1024 (default, or 0: one per core but one)
  --idle-timeout-ms N   evict an object after this long without events
  --admin HOST:PORT     where to serve GET /metrics and the admin API (default 127.0.0.1 and
                        the --listen port + 1000; "off": nowhere). Anywhere but loopback it
                        needs a token: [durable] admin_token or DURABLE_ADMIN_TOKEN
  --cluster URL         run as a node of a cluster whose storage and slot ownership live in
                        this PostgreSQL (a postgres:// URL or libpq connection string;
                        [cluster] url); see docs/cluster.md
  --node NAME           this node's name in the cluster: 1-64 of A-Z a-z 0-9 . _ -
  --advertise HOST:PORT where the other nodes reach this one (default: the --listen address)

SIGTERM, SIGINT or SIGHUP drains in-flight requests, closes WebSockets with 1001
(going away; 1012, service restart, on a cluster node, whose objects move to the
others), commits, and exits 0.
)";

// Cluster mode: the front answers other nodes' forwarded requests (runtime/forward.cc) before
// the author's Worker sees anything; everything else is the Worker's.
Worker clusterFront(detail::Runtime& runtime, const Worker& user) {
  Worker front;
  front.all(std::string(detail::Runtime::kForwardPath),
            [&runtime](Context& c) -> Task<Response> { return runtime.acceptForwarded(std::move(c.req())); });
  front.all(std::string(detail::PeerChannels::kPath),
            [&runtime](Context& c) -> Task<Response> { co_return runtime.acceptChannel(c.req()); });
  front.all(std::string(detail::Runtime::kCallPath),
            [&runtime](Context& c) -> Task<Response> { return runtime.acceptForwarded(std::move(c.req())); });
  front.notFound([&user](Context& c) -> Task<Response> { return user.fetch(std::move(c.req()), c.env()); });
  return front;
}

void printUsage() { std::cout << kUsageHead << cli::kToolsUsage << kUsageTail << cli::kToolsWhere; }

// A bad command line: what was wrong, then where to look, without burying it under the usage.
int usageError(const std::string& message) {
  std::cerr << "durable: " << message << "\nRun 'durable --help' for usage.\n";
  return 2;
}

// durable cluster status [--cluster URL | --config FILE]: the cluster's nodes, leases and
// slot counts as JSON, read from PostgreSQL.
int clusterCommand(const std::vector<std::string>& args, const std::string& defaultConfig) {
  try {
    if (args.size() < 2 || args[1] != "status") throw cli::UsageError("durable cluster wants status");
    std::string url, configPath = defaultConfig;
    for (std::size_t i = 2; i < args.size(); ++i) {
      auto value = [&]() -> std::string {
        if (i + 1 >= args.size()) throw cli::UsageError(args[i] + " needs a value");
        return args[++i];
      };
      if (args[i] == "--cluster") {
        url = value();
      } else if (args[i] == "--config") {
        configPath = value();
      } else {
        throw cli::UsageError("unknown option " + args[i] + " (durable cluster status takes --cluster URL or --config FILE)");
      }
    }
    if (url.empty() && !configPath.empty()) url = config::loadConfig(configPath).cluster.url;
    if (url.empty()) {
      throw cli::UsageError("durable cluster status needs the cluster's PostgreSQL: --cluster URL, or --config FILE with [cluster] url");
    }
    std::cout << detail::clusterStatusJson(url) << "\n";
    return 0;
  } catch (const cli::UsageError& e) {
    return usageError(e.what());
  } catch (const std::exception& e) {
    std::cerr << "durable: " << e.what() << "\n";
    return 1;
  }
}

struct AdminListen {
  std::string host;
  std::uint16_t port = 0;
  std::string token;
};

// Where the admin listener goes, from --admin or [durable] admin (already in `settings`), and
// its token; nullopt when it is off. Throws UsageError when it cannot be served safely.
std::optional<AdminListen> adminListen(const config::Settings& settings, const cli::ListenAddress& main) {
  if (settings.admin == "off") return std::nullopt;
  AdminListen a;
  if (settings.admin.empty()) {
    a.host = "127.0.0.1";
    if (main.port != 0) {
      if (main.port > 65535 - 1000) {
        throw cli::UsageError("the admin listener's default port (the --listen port + 1000) would be past 65535: "
                              "pass --admin HOST:PORT, or --admin off");
      }
      a.port = static_cast<std::uint16_t>(main.port + 1000);
    }
  } else {
    const auto split = cli::splitListen(settings.admin);
    a.host = cli::resolveListenHost(split.host);
    a.port = split.port;
  }
  const char* env = std::getenv("DURABLE_ADMIN_TOKEN");
  a.token = env && *env ? std::string(env) : settings.adminToken;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(a.host, ec);
  if ((ec || !address.is_loopback()) && a.token.empty()) {
    throw cli::UsageError("the admin listener on " + a.host +
                          " is reachable from other machines: it needs a token ([durable] admin_token, or the "
                          "environment's DURABLE_ADMIN_TOKEN), or an address on loopback (--admin 127.0.0.1:PORT)");
  }
  return a;
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

Server& Server::setDefaultConfig(std::string path) {
  defaultConfig_ = std::move(path);
  return *this;
}

int Server::run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    printUsage();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << "durable " << DURABLE_VERSION << "\n";
    return 0;
  }
  if (args[0] == "cluster") return clusterCommand(args, defaultConfig_);
  if (cli::isTool(args[0])) return cli::runTool(args, classes_, defaultConfig_);
  if (args[0] != "serve") {
    return usageError("unknown command '" + args[0] +
                      "' (commands: serve, objects, storage, alarm, backup, restore, --help, --version)");
  }
  ServeOptions options;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (auto eq = a.find('='); eq != std::string::npos) return a.substr(eq + 1);
      if (i + 1 >= args.size()) throw cli::UsageError(a + " needs a value");
      return args[++i];
    };
    auto is = [&](const char* flag) { return a == flag || a.rfind(std::string(flag) + "=", 0) == 0; };
    try {
      if (a == "--help" || a == "-h") {
        printUsage();
        return 0;
      } else if (a == "--version") {
        std::cout << "durable " << DURABLE_VERSION << "\n";
        return 0;
      } else if (is("--config")) {
        options.configPath = value();
        if (options.configPath.empty()) throw cli::UsageError("--config wants a file name");
      } else if (is("--listen")) {
        options.listen = value();
        cli::splitListen(options.listen);
      } else if (is("--persist-to")) {
        options.persistDir = value();
        if (options.persistDir.empty()) throw cli::UsageError("--persist-to wants a directory");
      } else if (is("--durability")) {
        options.durability = value();
      } else if (is("--shards")) {
        options.shards = static_cast<unsigned>(cli::parseInteger("--shards", value(), 0, 1024));
      } else if (is("--admin")) {
        options.admin = value();
        if (*options.admin != "off") cli::splitListen(*options.admin);
      } else if (is("--cluster")) {
        options.cluster = value();
        if (options.cluster->empty()) throw cli::UsageError("--cluster wants a PostgreSQL URL, e.g. postgres://user@host/db");
      } else if (is("--node")) {
        options.node = value();
        if (!detail::validNodeName(*options.node)) {
          throw cli::UsageError("--node wants a name of 1-64 of the characters A-Z a-z 0-9 . _ -, got '" +
                                *options.node + "'");
        }
      } else if (is("--advertise")) {
        options.advertise = value();
        cli::splitListen(*options.advertise);
      } else if (is("--idle-timeout-ms")) {
        options.idleTimeoutMs =
            cli::parseInteger("--idle-timeout-ms", value(), 1, std::numeric_limits<std::int64_t>::max(),
                              "a positive whole number of milliseconds");
      } else {
        throw cli::UsageError("unknown option " + a);
      }
    } catch (const cli::UsageError& e) {
      return usageError(e.what());
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
  // No reload exists: a hangup (the terminal went away, or a supervisor's habit) stops the
  // server as gently as SIGTERM, never with the default abrupt exit.
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // Every connection is a descriptor: take all the process may have.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  // Large buffers (WebSocket frames and messages, request bodies) go back to the kernel when
  // freed. glibc's threshold otherwise rises after each large free, up to 32 MiB, and the heap
  // then kept what an attack had made it hold (bench/attack.sh).
  mallopt(M_MMAP_THRESHOLD, 1024 * 1024);

  config::Config cfg;
  std::string configPath = options.configPath.empty() ? defaultConfig_ : options.configPath;
  cli::ListenAddress listen;
  try {
    if (configPath.empty()) {
      throw cli::UsageError(
          "no config: pass --config FILE, a wrangler.toml (or .json, .jsonc) that binds your Durable "
          "Object classes (e.g. --config examples/seed/wrangler.toml)");
    }
    if (options.durability) {
      if (*options.durability == "full") {
        cfg.settings.durability = config::Durability::kFull;
      } else if (*options.durability == "relaxed") {
        cfg.settings.durability = config::Durability::kRelaxed;
      } else {
        throw cli::UsageError("--durability wants full or relaxed, got '" + *options.durability + "'");
      }
    }
    if (options.idleTimeoutMs && *options.idleTimeoutMs <= 0) {
      throw cli::UsageError("--idle-timeout-ms wants a positive number of milliseconds, got " +
                            std::to_string(*options.idleTimeoutMs));
    }
    if (options.shards && *options.shards > 1024) {
      throw cli::UsageError("--shards wants a whole number from 0 to 1024, got " + std::to_string(*options.shards));
    }
    listen = cli::splitListen(options.listen);
  } catch (const cli::UsageError& e) {
    return usageError(e.what());
  }

  // Known once the config is read; named in an error that may come from a full disk.
  std::filesystem::path stateDir;
  bool advertiseListen = false;  // cluster mode without --advertise: other nodes use --listen's address
  try {
    const auto overridden = cfg.settings;
    cfg = config::loadConfig(configPath);
    if (options.durability) cfg.settings.durability = overridden.durability;
    if (options.shards) cfg.settings.shards = *options.shards;
    if (options.idleTimeoutMs) cfg.settings.idleTimeoutMs = *options.idleTimeoutMs;
    if (options.admin) cfg.settings.admin = *options.admin;
    if (options.cluster) cfg.cluster.url = *options.cluster;
    if (options.node) cfg.cluster.node = *options.node;
    if (options.advertise) cfg.cluster.advertise = *options.advertise;
    if (cfg.cluster.enabled()) {
      if (cfg.cluster.node.empty()) throw cli::UsageError("cluster mode needs this node's name: --node NAME or [cluster] node");
      if (!detail::validNodeName(cfg.cluster.node)) {
        throw cli::UsageError("[cluster] node wants a name of 1-64 of the characters A-Z a-z 0-9 . _ -, got '" +
                              cfg.cluster.node + "'");
      }
      advertiseListen = cfg.cluster.advertise.empty();
      if (advertiseListen) {
        // Other nodes connect to the advertised address: "any address" is no address to them.
        const auto wildcard = cli::splitListen(options.listen).host;
        if (wildcard == "0.0.0.0" || wildcard == "::" || wildcard == "[::]") {
          throw cli::UsageError("--listen " + options.listen +
                                " listens on every address, which other nodes cannot connect to: pass --advertise "
                                "HOST:PORT (or [cluster] advertise) with an address they reach this node at");
        }
        cfg.cluster.advertise = options.listen;
      }
    } else if (options.node || options.advertise) {
      throw cli::UsageError("--node and --advertise are for cluster mode: pass --cluster POSTGRES_URL too");
    }
    detail::setJsonLogs(cfg.settings.logFormat == config::LogFormat::kJson);
    const std::string host = cli::resolveListenHost(listen.host);
    const std::optional<AdminListen> admin = adminListen(cfg.settings, listen);
    const std::filesystem::path persistDir =
        options.persistDir.empty() ? cli::defaultStateDir(cfg.name, configPath) : std::filesystem::path(options.persistDir);
    stateDir = persistDir;

    cli::OpenState state = cli::openState(cfg, configPath, persistDir, classes_, false);
    detail::Runtime& runtime = *state.runtime;
    runtime.start();

    detail::HttpOptions httpOptions;
    httpOptions.host = host;
    httpOptions.port = listen.port;
    httpOptions.maxBodyBytes = cfg.settings.maxBodyBytes;
    httpOptions.maxConnections = cfg.settings.maxConnections;
    httpOptions.maxBodyBytesInMemory = cfg.settings.maxBodyBytesInMemory;
    httpOptions.readTimeout = std::chrono::milliseconds(cfg.settings.requestTimeoutMs);
    httpOptions.accessLog = cfg.settings.accessLog;
    const Worker front = state.cluster ? clusterFront(runtime, *worker_) : Worker();
    detail::HttpServer http(runtime, state.cluster ? front : *worker_, httpOptions);
    std::unique_ptr<detail::HttpServer> adminHttp;
    std::unique_ptr<Worker> adminWorker;
    if (admin) {
      adminWorker = std::make_unique<Worker>(
          detail::makeAdminWorker(runtime, {.token = admin->token, .clusterUrl = cfg.cluster.url}));
      detail::HttpOptions adminOptions = httpOptions;
      adminOptions.host = admin->host;
      adminOptions.port = admin->port;
      adminOptions.accessLog = false;
      adminOptions.countInMetrics = false;
      adminOptions.maxConnections = 256;
      adminHttp = std::make_unique<detail::HttpServer>(runtime, *adminWorker, adminOptions);
    }
    // Both bound before either banner: a script that waits for "listening" finds both up.
    http.start();
    if (adminHttp) {
      adminHttp->start();
      std::cout << kAdminBanner << admin->host << ":" << adminHttp->port() << std::endl;
    }
    if (state.cluster) {
      if (advertiseListen) state.cluster->advertise(host + ":" + std::to_string(http.port()));
      // A hand-off asks the shards whether the slots' objects are quiet; a shard that does
      // not answer within a fraction of a lease round counts as busy.
      const auto askFor = std::min<std::chrono::milliseconds>(state.cluster->options().lease / 8, std::chrono::milliseconds(100));
      state.cluster->start([&runtime](const std::vector<int>&) { runtime.slotsClaimed(); },
                           [&runtime, askFor](const std::vector<int>& slots) { return runtime.slotsQuiet(slots, askFor); });
    }
    std::cout << kListeningBanner << host << ":" << http.port() << std::endl;

    int sig = 0;
    sigwait(&signals, &sig);
    detail::logInfo(sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "SIGTERM", ", draining");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    if (state.cluster) {
      // First the slots, while the node still takes requests: their running events finish,
      // new ones wait for the hand-off and then go to the new owners, and so do the requests
      // other nodes forward here meanwhile.
      state.cluster->leave();
      while (state.cluster->slots()->held() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      // A peer reads the new routes at the release's announcement, and at its next round at
      // the latest (L/4): until then it may still send here, and hears 421 rather than a
      // connection closing under its request.
      std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(state.cluster->options().lease / 4,
                                                                        std::chrono::seconds(2)));
    }
    http.stopAccepting();
    if (adminHttp) adminHttp->stopAccepting();
    if (!http.waitIdle(deadline) || (adminHttp && !adminHttp->waitIdle(deadline))) {
      detail::logWarn("requests still running after 10 s: stopping anyway");
    }
    // After the HTTP requests, so no upgrade lands after it: clients learn that the server
    // went away (1001) rather than seeing a dropped connection, and may reconnect at once.
    // In a cluster the objects live on at other nodes: 1012 (service restart) says to reconnect.
    if (state.cluster) {
      runtime.closeWebSockets(1012, "node leaving the cluster; reconnect", std::chrono::seconds(2));
    } else {
      runtime.closeWebSockets(1001, "server shutting down", std::chrono::seconds(2));
    }
    runtime.stop();
    // After every commit landed: the slots go back at once, not when the lease runs out.
    if (state.cluster) state.cluster->stop();
    detail::logInfo("stopped");
    return 0;
  } catch (const cli::UsageError& e) {
    return usageError(e.what());
  } catch (const std::exception& e) {
    // SQLite reports a full disk as "disk I/O error" or "database or disk is full", which
    // names neither the disk nor the remedy.
    std::error_code ec;
    const auto space = stateDir.empty() ? std::filesystem::space_info{} : std::filesystem::space(stateDir, ec);
    constexpr std::uintmax_t kLowSpace = 8 * 1024 * 1024;
    if (!stateDir.empty() && !ec && space.available < kLowSpace) {
      detail::logError(e.what(), " (the disk holding ", stateDir.string(), " is full: ", space.available,
                       " bytes free; free space on it and start again)");
    } else {
      detail::logError(e.what());
    }
    return 1;
  }
}

}  // namespace durable
