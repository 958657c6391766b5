// durable/server.h: a server of one's own: classes, a Worker, and the `durable` command line.
//
//   durable::Server server;
//   server.exportClass<Counter>("Counter");   // like `export { Counter }`
//   server.setWorker(makeApp());
//   return server.run(argc, argv);            // durable serve --config F --listen H:P --persist-to DIR
//
// run() blocks until SIGTERM or SIGINT, then drains in-flight requests, commits, and returns 0.
#pragma once

#include <durable/object.h>
#include <durable/worker.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace durable {

struct ServeOptions {
  std::string configPath;              // wrangler-style TOML; empty: the Server's default config
  std::string listen = "127.0.0.1:8787";
  // Empty: .durable/<name> for the config's top-level `name`, or, without one, the config
  // file's name without its extension (its directory's name when that is just "wrangler").
  std::string persistDir;
  // Overrides of the config's [durable] settings, when set.
  std::optional<std::string> durability;  // "full" | "relaxed"
  std::optional<unsigned> shards;
  std::optional<std::int64_t> idleTimeoutMs;
  // The admin listener: "HOST:PORT" or "off" (overrides [durable] admin).
  std::optional<std::string> admin;
  // Cluster mode (overrides [cluster] url, node, advertise): PostgreSQL's connection string,
  // this node's name, and the HOST:PORT other nodes reach it at.
  std::optional<std::string> cluster;
  std::optional<std::string> node;
  std::optional<std::string> advertise;
};

class Server {
 public:
  using Factory = std::function<std::unique_ptr<DurableObject>(State&, Env&)>;

  Server();
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  template <class T>
  Server& exportClass(std::string name) {
    return exportClass(std::move(name), [](State& s, Env& e) -> std::unique_ptr<DurableObject> {
      return std::make_unique<T>(s, e);
    });
  }
  Server& exportClass(std::string name, Factory factory);
  Server& setWorker(Worker worker);
  // The config used when the command line names none (relative paths are taken from the
  // working directory). Without one, `serve` without --config refuses to start.
  Server& setDefaultConfig(std::string path);

  // The command line: `serve [--config F] [--listen H:P] [--persist-to DIR] [--durability
  // full|relaxed] [--shards N] [--idle-timeout-ms N]`, `--help`, `--version`. Returns the
  // exit code: 0, 1 when serving failed, 2 for a bad command line.
  int run(int argc, char** argv);
  // Serves until a signal arrives; the exit code (2 for bad options, 1 when it cannot start).
  // Throws nothing: errors are printed. Holds an exclusive lock on the state directory while
  // it runs: a second process on the same directory refuses to start.
  int serve(const ServeOptions& options);

  // What serve() prints once it listens, for scripts and tests: "durable: listening on H:P",
  // after "durable: admin on H:P" when the admin listener is on.
  static constexpr const char* kListeningBanner = "durable: listening on ";
  static constexpr const char* kAdminBanner = "durable: admin on ";

 private:
  std::map<std::string, Factory> classes_;
  std::shared_ptr<Worker> worker_;
  std::string defaultConfig_;
};

}  // namespace durable
