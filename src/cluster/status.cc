#include "cluster/status.h"

#include "storage/pg_connection.h"

#include <boost/json.hpp>

namespace durable::detail {

std::string clusterStatusJson(const std::string& url) {
  PgBlocking db(url);
  auto cluster = db.run("SELECT to_regclass('durable_cluster') IS NOT NULL");
  boost::json::object out;
  boost::json::array nodes;
  if (pgBytes(cluster.get(), 0, 0)[0] == 0) {
    out["slots"] = 0;
    out["unowned"] = 0;
    out["nodes"] = std::move(nodes);
    return boost::json::serialize(out);
  }
  auto slots = db.run("SELECT slots::int8 FROM durable_cluster WHERE id = 1");
  out["slots"] = PQntuples(slots.get()) ? pgInt8(slots.get(), 0, 0) : 0;
  // One statement, one snapshot: the leases and the slot counts agree.
  auto r = db.run(
      "SELECT n.name, n.address, n.incarnation, n.lease_until > clock_timestamp(), "
      "(extract(epoch FROM n.lease_until - clock_timestamp()) * 1000)::int8, "
      "(SELECT count(*) FROM durable_slots s WHERE s.owner = n.name)::int8, "
      "(SELECT count(*) FROM durable_slots s WHERE s.owner IS NULL OR NOT EXISTS (SELECT 1 FROM durable_nodes l "
      "WHERE l.name = s.owner AND l.lease_until > clock_timestamp()))::int8 "
      "FROM durable_nodes n RIGHT JOIN (SELECT 1) AS one ON true ORDER BY n.name");
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    out["unowned"] = pgInt8(r.get(), i, 6);
    if (pgNull(r.get(), i, 0)) continue;  // no node yet
    boost::json::object n;
    n["name"] = std::string(pgBytes(r.get(), i, 0));
    n["address"] = std::string(pgBytes(r.get(), i, 1));
    n["incarnation"] = pgInt8(r.get(), i, 2);
    n["live"] = pgBytes(r.get(), i, 3)[0] != 0;
    n["leaseRemainingMs"] = pgInt8(r.get(), i, 4);
    n["slots"] = pgInt8(r.get(), i, 5);
    nodes.push_back(std::move(n));
  }
  out["nodes"] = std::move(nodes);
  return boost::json::serialize(out);
}

}  // namespace durable::detail
