// The seed's ChatRoom (src/durable-objects/chat-room.ts), line by line, with one deliberate
// improvement: the seed keeps who joined only in memory (`sessions`), so after hibernation
// the room would drop messages and leaves silently. Here each socket's user also lives in its
// attachment, and the constructor rebuilds `sessions` from the sockets that stayed open.
//
// Where JavaScript's types decide, the translation keeps them: `message.text()` throws for a
// binary message as `JSON.parse(arrayBuffer)` does, so binary frames are ignored; `||` treats
// an empty user as missing; the Upgrade header is compared exactly.
#pragma once

#include <durable/durable.h>

#include <optional>
#include <unordered_map>
#include <utility>

namespace seed {

class ChatRoom : public durable::DurableObject {
 public:
  struct Session {
    std::string user;
  };

  ChatRoom(durable::State& state, durable::Env& env) : DurableObject(state, env) {
    for (const auto& ws : state.getWebSockets()) {
      const auto attachment = ws.deserializeAttachment();
      if (!attachment.isNull()) sessions_[ws] = Session{attachment.as<std::string>()};
    }
  }

  durable::Task<durable::Response> fetch(durable::Request request) override {
    const auto url = request.url();

    if (url.pathname() == "/websocket") {
      if (request.headers().get("Upgrade") != "websocket") {
        co_return durable::Response("Expected WebSocket", {.status = 426});
      }

      // `get("user") || "anonymous"`: an empty user is falsy, so it is anonymous too.
      auto user = url.searchParams().get("user").value_or("");
      if (user.empty()) user = "anonymous";
      auto [client, server] = durable::WebSocketPair();

      co_await handleWebSocket(server, user);

      co_return durable::Response(nullptr, {.status = 101, .webSocket = client});
    }

    if (url.pathname() == "/history") {
      const auto history = (co_await state().storage().get<boost::json::array>("history")).value_or(boost::json::array{});
      co_return durable::Response::json(lastOf(history, 100));  // Last 100 messages
    }

    co_return durable::Response("Not found", {.status = 404});
  }

  durable::Task<void> handleWebSocket(durable::WebSocket ws, std::string user) {
    // Accept the WebSocket
    state().acceptWebSocket(ws);
    ws.serializeAttachment(user);
    sessions_[ws] = Session{user};

    // Broadcast join
    boost::json::object join{{"type", "join"}, {"user", user}};
    join["timestamp"] = durable::now();
    co_await broadcast(join);

    // Send recent history
    const auto history = (co_await state().storage().get<boost::json::array>("history")).value_or(boost::json::array{});
    boost::json::object frame{{"type", "history"}};
    frame["messages"] = lastOf(history, 50);
    ws.send(durable::stringify(frame));
  }

  durable::Task<void> webSocketMessage(durable::WebSocket ws, durable::WebSocketMessage message) override {
    const auto session = sessions_.find(ws);
    if (session == sessions_.end()) co_return;

    try {
      // text() throws for a binary message, as JSON.parse(arrayBuffer) does in the seed.
      const auto data = durable::parseJson(message.text());
      const auto* object = data.if_object();
      const auto* type = object ? object->if_contains("type") : nullptr;
      const auto* content = object ? object->if_contains("content") : nullptr;

      if (type && type->is_string() && type->as_string() == "message" && content && truthy(*content)) {
        boost::json::object chatMessage{{"type", "message"}, {"user", session->second.user}};
        chatMessage["content"] = *content;
        chatMessage["timestamp"] = durable::now();

        // Save to history
        auto history = (co_await state().storage().get<boost::json::array>("history")).value_or(boost::json::array{});
        history.push_back(chatMessage);

        // Keep only last 1000 messages
        if (history.size() > 1000) {
          history.erase(history.begin(), history.begin() + static_cast<std::ptrdiff_t>(history.size() - 1000));
        }

        // put() takes its value by value: at the array's last use, moving it skips a deep copy.
        co_await state().storage().put("history", std::move(history));

        // Broadcast to all
        co_await broadcast(chatMessage);
      }
    } catch (const std::exception& e) {
      durable::console::error("Invalid message: ", e.what());
    }
  }

  durable::Task<void> webSocketClose(durable::WebSocket ws, int code, std::string reason, bool wasClean) override {
    const auto session = sessions_.find(ws);
    std::optional<std::string> user;
    if (session != sessions_.end()) {
      user = session->second.user;
      sessions_.erase(session);
    } else if (const auto attachment = ws.deserializeAttachment(); !attachment.isNull()) {
      // Woken from hibernation by this close: the closed socket is no longer among those
      // the constructor rebuilt `sessions` from, but its attachment still names the user.
      user = attachment.as<std::string>();
    }
    if (user) {
      boost::json::object leave{{"type", "leave"}, {"user", *user}};
      leave["timestamp"] = durable::now();
      co_await broadcast(leave);
    }
  }

  durable::Task<void> webSocketError(durable::WebSocket ws, std::string error) override {
    durable::console::error("WebSocket error: ", error);
    // Not in the seed, which keeps the dead socket in `sessions` for the object's life: no
    // message can come from it again, so dropping it changes nothing but the memory held.
    sessions_.erase(ws);
    try {
      ws.close(1011, "Internal error");
    } catch (const std::exception&) {
      // Already closed.
    }
    co_return;
  }

 private:
  durable::Task<void> broadcast(const boost::json::object& message) {
    const auto payload = durable::stringify(message);

    for (auto& ws : state().getWebSockets()) {
      try {
        ws.send(payload);
      } catch (const std::exception&) {
        // WebSocket might be closed
      }
    }
    co_return;
  }

  static boost::json::array lastOf(const boost::json::array& a, std::size_t n) {
    if (a.size() <= n) return a;
    return boost::json::array(a.end() - static_cast<std::ptrdiff_t>(n), a.end());
  }
  static bool truthy(const boost::json::value& v) {
    if (v.is_null()) return false;
    if (v.is_bool()) return v.as_bool();
    if (v.is_string()) return !v.as_string().empty();
    if (v.is_int64()) return v.as_int64() != 0;
    if (v.is_uint64()) return v.as_uint64() != 0;
    if (v.is_double()) return v.as_double() != 0 && v.as_double() == v.as_double();
    return true;
  }

  std::unordered_map<durable::WebSocket, Session> sessions_;
};

}  // namespace seed
