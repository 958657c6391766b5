// Node-to-node requests (cluster mode, docs/cluster.md) on one connection per peer and shard,
// many requests in flight on it at once, answered in any order.
//
// Why not HTTP/1.1 on pooled connections: each forwarded request then costs the sender a send
// and a receive of its own, and the owner the same, all on loopback-cheap but syscall-bound
// cores (bench/README.md, "Cluster mode"). Here the requests a shard forwards while its previous
// write is on the wire leave together in one write, and the owner's answers the same way, so
// the system calls are shared by every request of a batch.
//
// A channel starts as an HTTP upgrade (`Upgrade: durable-channel` to kPath, with the cluster's
// secret), so it needs no port of its own. Then frames, both ways:
//   u32 length of what follows, u64 request id, u8 kind (1 request, 2 response), payload
//   request:  str method, str url, u32 n, n × (str name, str value), u8 has body, str body
//   response: u32 status, str status text, u32 n, n × (str name, str value), str body
// where str is a u32 length and its bytes, and every integer is little endian.
//
// Shard thread only: a PeerChannels and the connections it opens belong to one io_context.
#pragma once

#include "net/websocket.h"

#include <durable/error.h>
#include <durable/http.h>
#include <durable/task.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace durable::detail {

// Thrown when nothing reached the node (it refused or never answered the connection): the
// request may be sent again, to whichever node the routes name next.
struct NotDelivered : Error {
  explicit NotDelivered(const std::string& why) : Error(ErrorCode::kUnavailable, why, {.retryable = true}) {}
};

class PeerChannels {
 public:
  static constexpr std::string_view kPath = "/.durable/cluster/channel";
  static constexpr std::string_view kProtocol = "durable-channel";

  PeerChannels(boost::asio::io_context& context, std::string secret, std::chrono::milliseconds timeout,
               std::size_t maxFrameBytes);
  ~PeerChannels();
  PeerChannels(const PeerChannels&) = delete;
  PeerChannels& operator=(const PeerChannels&) = delete;

  // Sends `request` to the node at `address` (host:port) and waits for its answer. Throws
  // NotDelivered when the node cannot be reached (the channel never opened), Error(kUnavailable)
  // when the connection ends before the answer (the request may have run there) or no answer
  // comes within the timeout.
  Task<Response> send(const std::string& address, const Request& request);

  struct Connection;

 private:
  boost::asio::io_context& context_;
  const std::string secret_;
  const std::chrono::milliseconds timeout_;
  const std::size_t maxFrameBytes_;
  std::map<std::string, std::shared_ptr<Connection>> connections_;  // by address
};

// A connection between nodes that goes silent (a machine lost, a partition) is found dead in
// about 25 s (TCP keepalives after 10 s idle, 3 probes 5 s apart), not the kernel's two hours.
void keepAliveBetweenNodes(boost::asio::ip::tcp::socket& socket);

// The owner's side: serves the frames of an upgraded channel connection with `handle`, each
// request as it comes, its answer written when ready. The first bytes written are the 101;
// `early` is what the peer sent after its upgrade request, read already.
void servePeerChannel(boost::asio::ip::tcp::socket socket, ConnectionSlot slot, std::string early, std::size_t maxFrameBytes,
                      std::function<Task<Response>(Request)> handle);

}  // namespace durable::detail
