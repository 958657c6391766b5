// The admin listener: GET /metrics and the JSON admin API, served on their own address
// (`--admin`, `[durable] admin`), never on the public one. See docs/operating.md.
#pragma once

#include <durable/worker.h>

#include <string>

namespace durable::detail {

class Runtime;

struct AdminOptions {
  // When set, every request needs "Authorization: Bearer <token>". Required when the listener
  // is bound to anything but loopback (the server refuses to start without one).
  std::string token;
  // Cluster mode: PostgreSQL's URL, for GET /cluster (cluster/status.h).
  std::string clusterUrl;
};

// The admin routes, as a Worker served by its own HttpServer.
Worker makeAdminWorker(Runtime& runtime, AdminOptions options);

// The Prometheus text format of every counter of every shard, summed (metrics/metrics.h).
std::string renderMetrics(Runtime& runtime);

}  // namespace durable::detail
