// The seed's HibernatingRoom (the WebSocket Hibernation section), line by line.
#pragma once

#include <durable/durable.h>


namespace seed {

class HibernatingRoom : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  durable::Task<durable::Response> fetch(durable::Request request) override {
    if (request.headers().get("Upgrade") == "websocket") {
      auto [client, server] = durable::WebSocketPair();

      // Accept with tags for identification
      state().acceptWebSocket(server, {"user-123"});

      co_return durable::Response(nullptr, {.status = 101, .webSocket = client});
    }

    co_return durable::Response("Not found", {.status = 404});
  }

  // Called when message received (wakes from hibernation)
  durable::Task<void> webSocketMessage(durable::WebSocket ws, durable::WebSocketMessage message) override {
    // Get tags to identify connection
    const auto tags = state().getTags(ws);
    durable::console::log("Message from: [", tags.empty() ? "" : tags.front(), "]");

    // Broadcast to all connected WebSockets (as it came: binary stays binary, byte for byte)
    for (auto& socket : state().getWebSockets()) {
      socket.send(message);
    }
    co_return;
  }

  durable::Task<void> webSocketClose(durable::WebSocket ws, int, std::string, bool) override {
    // Cleanup
    co_return;
  }
};

}  // namespace seed
