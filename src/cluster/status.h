// What `durable cluster status` and the admin API's GET /cluster show: the cluster's nodes,
// their leases and how many slots each holds, read from PostgreSQL (docs/cluster.md).
#pragma once

#include <string>

namespace durable::detail {

// JSON: {"slots": N, "unowned": U, "nodes": [{"name", "address", "incarnation", "live",
// "leaseRemainingMs", "slots"}]}, nodes by name. Throws Error(kUnavailable) when PostgreSQL
// cannot be reached.
std::string clusterStatusJson(const std::string& url);

}  // namespace durable::detail
