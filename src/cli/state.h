// A state directory opened as `durable serve` opens it, for the server and for the command-line
// tools that read a stopped server's state (cli/tools.h).
#pragma once

#include "cluster/membership.h"
#include "config/config.h"
#include "runtime/runtime.h"
#include "runtime/state_lock.h"

#include <durable/object.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace durable::cli {

using Factories = std::map<std::string, std::function<std::unique_ptr<DurableObject>(State&, Env&)>>;

// Members in this order: the runtime goes first, then the namespaces it serves, then the lock.
struct OpenState {
  std::unique_ptr<detail::StateDirLock> lock;
  // Cluster mode: this node's lease and slots, released after the runtime stopped. Its lease
  // thread is for the caller to start, once the node is reachable.
  std::unique_ptr<detail::ClusterMembership> cluster;
  std::vector<std::unique_ptr<detail::NamespaceImpl>> namespaces;
  std::unique_ptr<detail::Runtime> runtime;  // built, not started

  OpenState() = default;
  OpenState(OpenState&&) = default;
  OpenState& operator=(OpenState&&) = default;
  // The runtime stops (its last commits land) before the node gives up its slots, and the
  // node's lease thread, which calls into the runtime, ends before the runtime goes.
  ~OpenState() {
    if (runtime) runtime->stop();
    if (cluster) cluster->stop();
  }
};

// Checks the config's bindings against `classes`, takes the directory's lock (StateDirLocked
// when a server holds it), applies the config's migrations to meta.sqlite and builds the
// runtime over the directory's partitions. `forTool`: a command-line tool looks at a stopped
// server's state: it applies no migration (a config ahead of the state is refused), purges no
// deleted class, and no alarm fires.
OpenState openState(const config::Config& cfg, const std::string& configPath, const std::filesystem::path& dir,
                    const Factories& classes, bool forTool);

}  // namespace durable::cli
