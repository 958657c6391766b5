// WebSockets to objects that another node holds (cluster mode, docs/cluster.md).
//
// The client's TCP connection stays on the node that accepted it. That node opens a connection
// of its own to the owner and sends it the upgrade; the owner runs the handshake and adopts the
// connection as the object's WebSocket, exactly as it would a client's (hibernation, tags,
// attachments, auto-response all live there). This node then passes bytes both ways unchanged:
// a client's frames are masked and the owner's are not, which is what each far end expects, so
// no frame is decoded or built again. It reads only the headers of the owner's frames, so that
// when the owner goes away it can still end the client's stream with a whole close frame
// (1012, "service restart": reconnect, and a new owner answers).
#pragma once

#include "net/peer_channel.h"
#include "net/websocket.h"

#include <durable/error.h>
#include <durable/http.h>
#include <durable/task.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <functional>
#include <cstddef>
#include <string>
#include <string_view>

namespace durable::detail {

// The owner's answer to an upgrade: the connection, and what the owner sent after its 101 (a
// history frame the object sends at once, say).
struct RelayedUpgrade {
  boost::asio::ip::tcp::socket peer;
  std::string early;
  // Whether the owner still holds the object by this node's routes. A relay to an owner that
  // went silent (its machine lost, a partition) would never see its connection end: it checks
  // this every second and ends with 1012 once the object has moved.
  std::function<bool()> stillRouted;
  // How long either side may take to accept a write before the relay ends (a client that
  // stopped reading, as for a WebSocket this node holds: [durable] websocket_write_timeout_ms).
  std::chrono::milliseconds writeTimeout{30000};
};


// Sends `request` (an upgrade) to `address` (host:port) on a new connection and reads the
// answer. The handshake on that connection is this node's own (its key, no extensions): the
// client's is answered by startRelay. A 101 comes back with a client-end WebSocket that carries
// the connection (WebSocketImpl::relayed), for the HTTP session to relay; anything else is an
// ordinary response and the connection is closed. Throws NotDelivered when the owner cannot be
// reached, Error(kUnavailable) when it answers nothing within `timeout`.
Task<Response> sendUpgrade(boost::asio::io_context& context, const std::string& address, const Request& request,
                           std::chrono::milliseconds timeout);

// Relays `client` to the owner's connection that `response` (a 101 from sendUpgrade, through
// the Worker) carries, on the client socket's own io_context. The client's 101 answers its own
// key (`clientKey`), with the owner's subprotocol and the response's other headers. `slot` is
// the client connection's place in max_connections, held until both ends are closed.
void startRelay(boost::asio::ip::tcp::socket client, const Response& response, std::string_view clientKey,
                ConnectionSlot slot);

// Ends every relay of this process: the client gets a close frame with `code` and `reason`
// (when the owner's stream is between frames) and the owner a closed connection. For a node
// that stops.
void closeRelays(int code, const std::string& reason);
// Relays still open.
std::size_t openRelays();

}  // namespace durable::detail
