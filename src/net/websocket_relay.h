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

#include "net/websocket.h"

#include <durable/http.h>
#include <durable/task.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <string>

namespace durable::detail {

// The owner's answer to an upgrade: the connection, and what the owner sent after its 101 (a
// history frame the object sends at once, say).
struct RelayedUpgrade {
  boost::asio::ip::tcp::socket peer;
  std::string early;
};

// Sends `request` (an upgrade) to `address` (host:port) on a new connection and reads the
// answer. A 101 comes back with a client-end WebSocket that carries the connection
// (WebSocketImpl::relayed), for the HTTP session to relay; anything else is an ordinary
// response and the connection is closed. Throws Error(kUnavailable) when the owner cannot be
// reached or answers nothing within `timeout`.
Task<Response> sendUpgrade(boost::asio::io_context& context, const std::string& address, const Request& request,
                           std::chrono::milliseconds timeout);

// Relays `client` (whose upgrade request was answered by `response`, a 101 from sendUpgrade)
// to the owner's connection, on the client socket's own io_context. `slot` is the client
// connection's place in max_connections, held until both ends are closed.
void startRelay(boost::asio::ip::tcp::socket client, const Response& response, ConnectionSlot slot);

// Ends every relay of this process: the client gets a close frame with `code` and `reason`
// (when the owner's stream is between frames) and the owner a closed connection. For a node
// that stops.
void closeRelays(int code, const std::string& reason);
// Relays still open.
std::size_t openRelays();

}  // namespace durable::detail
