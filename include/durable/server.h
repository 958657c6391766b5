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
  std::string configPath;              // wrangler-style TOML
  std::string listen = "127.0.0.1:8787";
  std::string persistDir = ".durable/state";
  // Overrides of the config's [durable] settings, when set.
  std::optional<std::string> durability;  // "full" | "relaxed"
  std::optional<unsigned> shards;
  std::optional<std::int64_t> idleTimeoutMs;
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

  // The command line: `serve [--config F] [--listen H:P] [--persist-to DIR] [--durability
  // full|relaxed] [--shards N] [--idle-timeout-ms N]`, `--help`. Returns the exit code.
  int run(int argc, char** argv);
  // Serves until a signal arrives; the exit code. Throws nothing: errors are printed.
  int serve(const ServeOptions& options);

  // What serve() prints once it listens, for scripts and tests: "durable: listening on H:P".
  static constexpr const char* kListeningBanner = "durable: listening on ";

 private:
  std::map<std::string, Factory> classes_;
  std::shared_ptr<Worker> worker_;
};

}  // namespace durable
