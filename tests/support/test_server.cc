// The server the alarm and rate-limit integration tests run: the seed's classes and routes
// (seed::exportClasses, seed::addRoutes) plus AlarmProbe, an object that counts its alarms.
//
//   GET /probe/:id/set?in=MS  -> setAlarm(now + MS); {"scheduledTime": T}
//   GET /probe/:id/get        -> {"fired": N, "alarm": getAlarm() or null,
//                                 "last": scheduledTime of the last run or null,
//                                 "firedAt": durable::now() during the last run, or null}
//   GET /probe/:id/put?key=K&type=int|string|bytes|json&value=V -> put(K, V as that type); 204
//   GET /probe/:id/whoami     -> logs "probe whoami"; {"requestId": durable::requestId(), "header":
//                                its x-request-id header}; the Worker adds "workerRequestId"
//   GET /probe/:id/trace?port=P -> what GET /echo/trace on port P, called with durable::fetch
//                                from the object, saw: {"traceparent", "requestId"}
//   GET /probe/:id/whoami-as?as=ID -> whoami, called with its own x-request-id: ID
//   GET /probe/:id/pass       -> /get, with the client's headers passed on to the object
//   GET /probe/:id/rpc?text=T -> the RPC note(T), which logs "probe note T" and returns T (or,
//                                for T = "fail:M", throws Error(kInvalidArgument, M))
//
// Config: tests/support/test_server.toml.
#include "seed/app.h"

#include <boost/json.hpp>

#include <durable/durable.h>

#include <chrono>
#include <string>
#include <thread>

namespace {

class AlarmProbe : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  durable::Task<durable::Response> fetch(durable::Request request) override {
    const auto url = request.url();
    const auto path = url.pathname();
    if (path == "/set") {
      const auto in = std::stoll(url.searchParams().get("in").value_or("0"));
      const std::int64_t scheduledTime = durable::now() + in;
      // hang=1: the alarm's first run stops in the middle (until its node is killed).
      if (url.searchParams().get("hang") == "1") co_await storage().put("hang", true);
      co_await storage().setAlarm(scheduledTime);
      boost::json::object body;
      body["scheduledTime"] = scheduledTime;
      co_return durable::Response::json(body);
    }
    if (path == "/get") {
      const auto fired = (co_await storage().get<std::int64_t>("fired")).value_or(0);
      const auto last = co_await storage().get<std::int64_t>("last");
      const auto firedAt = co_await storage().get<std::int64_t>("firedAt");
      const auto alarm = co_await storage().getAlarm();
      boost::json::object body;
      body["fired"] = fired;
      body["alarm"] = alarm ? boost::json::value(*alarm) : boost::json::value(nullptr);
      body["last"] = last ? boost::json::value(*last) : boost::json::value(nullptr);
      body["firedAt"] = firedAt ? boost::json::value(*firedAt) : boost::json::value(nullptr);
      const auto hungAt = co_await storage().get<std::int64_t>("hungAt");
      body["hungAt"] = hungAt ? boost::json::value(*hungAt) : boost::json::value(nullptr);
      body["retryCount"] = (co_await storage().get<std::int64_t>("retryCount")).value_or(-1);
      body["isRetry"] = (co_await storage().get<bool>("isRetry")).value_or(false);
      body["closedWith"] = (co_await storage().get<std::int64_t>("closedWith")).value_or(0);
      body["slow"] = (co_await storage().get<std::int64_t>("slow")).value_or(0);
      body["slowDone"] = (co_await storage().get<std::int64_t>("slowDone")).value_or(0);
      co_return durable::Response::json(body);
    }
    if (path == "/slow") {
      // Writes, waits `ms` (an event that takes a while), writes again and answers.
      const auto ms = std::stoll(url.searchParams().get("ms").value_or("0"));
      const auto n = (co_await storage().get<std::int64_t>("slow")).value_or(0) + 1;
      co_await storage().put("slow", n);
      co_await durable::sleep(ms);
      co_await storage().put("slowDone", n);
      co_return durable::Response(std::to_string(n));
    }
    if (path == "/ws") {
      auto [client, server] = durable::WebSocketPair();
      state().acceptWebSocket(server);
      co_return durable::Response(nullptr, {.status = 101, .webSocket = client});
    }
    if (path == "/whoami") {
      durable::console::log("probe whoami");
      boost::json::object body;
      body["requestId"] = durable::requestId();
      body["header"] = request.headers().get("x-request-id").value_or("");
      co_return durable::Response::json(body);
    }
    if (path == "/trace") {
      // What a service called from here sees: the traceparent goes on, the request id does not.
      const std::string port = url.searchParams().get("port").value_or("0");
      durable::Response echoed = co_await durable::fetch(durable::Request("http://127.0.0.1:" + port + "/echo/trace"));
      co_return durable::Response(echoed.text(), {.headers = {{"content-type", "application/json"}}});
    }
    if (path == "/put") {
      const auto params = url.searchParams();
      const std::string key = params.get("key").value_or("");
      const std::string type = params.get("type").value_or("string");
      const std::string value = params.get("value").value_or("");
      if (type == "int") {
        co_await storage().put(key, std::stoll(value));
      } else if (type == "bytes") {
        co_await storage().put(key, durable::Bytes(value));
      } else if (type == "json") {
        co_await storage().put(key, boost::json::parse(value));
      } else {
        co_await storage().put(key, value);
      }
      durable::ResponseInit noContent;
      noContent.status = 204;
      co_return durable::Response("", std::move(noContent));
    }
    durable::ResponseInit notFound;
    notFound.status = 404;
    co_return durable::Response("Not found", std::move(notFound));
  }

  // "stall:MS" holds the shard thread that long (a stand-in for a thread that stalls: no
  // timer of its runs meanwhile), then answers; anything else is echoed.
  durable::Task<void> webSocketMessage(durable::WebSocket ws, durable::WebSocketMessage message) override {
    if (message.data.rfind("stall:", 0) == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::stoll(message.data.substr(6))));
      ws.send("after-stall");
      co_return;
    }
    ws.send("echo:" + message.data);
  }

  // The code its last WebSocket closed with, for /get.
  durable::Task<void> webSocketClose(durable::WebSocket, int code, std::string, bool) override {
    co_await storage().put("closedWith", static_cast<std::int64_t>(code));
  }

  durable::Task<std::string> note(std::string text) {
    durable::console::log("probe note ", text);
    if (text.rfind("fail:", 0) == 0) throw durable::Error(durable::ErrorCode::kInvalidArgument, text.substr(5));
    co_return text;
  }
  using Rpc = durable::Rpc<&AlarmProbe::note>;

  durable::Task<void> alarm(durable::AlarmInfo info) override {
    if ((co_await storage().get<bool>("hang")).value_or(false) && !(co_await storage().get<std::int64_t>("hungAt"))) {
      // Committed while it sleeps (the turn ends there); its alarm's deletion never is.
      co_await storage().put("hungAt", durable::now());
      co_await durable::sleep(60000);
    }
    co_await storage().put("retryCount", static_cast<std::int64_t>(info.retryCount));
    co_await storage().put("isRetry", info.isRetry);
    const auto fired = (co_await storage().get<std::int64_t>("fired")).value_or(0);
    co_await storage().put("fired", fired + 1);
    co_await storage().put("last", info.scheduledTime);
    co_await storage().put("firedAt", durable::now());
  }
};

durable::Handler toProbe(std::string path) {
  return [path = std::move(path)](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& ns = c.env().ns("PROBE");
    const auto stub = ns.get(ns.idFromName(c.param("id")));
    std::string target = "http://do" + path;
    if (auto query = c.req().url().search(); !query.empty()) target += query;
    durable::Request request(target);
    co_return co_await stub.fetch(std::move(request));
  };
}

}  // namespace

int main(int argc, char** argv) {
  durable::Server server;
  seed::exportClasses(server);
  server.exportClass<AlarmProbe>("AlarmProbe");

  durable::Worker app;
  app.get("/probe/:id/set", toProbe("/set"));
  app.get("/probe/:id/get", toProbe("/get"));
  app.get("/probe/:id/put", toProbe("/put"));
  app.get("/probe/:id/whoami", [](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& ns = c.env().ns("PROBE");
    const auto stub = ns.get(ns.idFromName(c.param("id")));
    durable::Request request("http://do/whoami");
    durable::Response inner = co_await stub.fetch(std::move(request));
    auto body = boost::json::parse(inner.text()).as_object();
    body["workerRequestId"] = durable::requestId();
    co_return durable::Response::json(body);
  });
  app.get("/probe/:id/trace", toProbe("/trace"));
  // As a Worker must for a WebSocket from its object (Cloudflare refuses a WebSocket answered
  // to a request without "Upgrade: websocket"; so does a cluster node relaying it).
  app.get("/probe/:id/ws", [](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& ns = c.env().ns("PROBE");
    const auto stub = ns.get(ns.idFromName(c.param("id")));
    durable::Request request("http://do/ws");
    request.headers().set("Upgrade", "websocket");
    co_return co_await stub.fetch(std::move(request));
  });
  app.get("/probe/:id/slow", toProbe("/slow"));
  // GET /probe/:id/get with the client's own headers passed on, as a Worker that proxies does.
  app.get("/probe/:id/pass", [](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& ns = c.env().ns("PROBE");
    const auto stub = ns.get(ns.idFromName(c.param("id")));
    durable::Request request("http://do/get");
    for (const auto& [name, value] : c.req().headers().entries()) request.headers().append(name, value);
    co_return co_await stub.fetch(std::move(request));
  });
  app.get("/echo/trace", [](durable::Context& c) -> durable::Task<durable::Response> {
    co_return c.json(boost::json::object{{"traceparent", c.req().headers().get("traceparent").value_or("")},
                                         {"requestId", durable::requestId()}});
  });
  // Forwards a URL of its own choosing with a header of its own: the header's id wins.
  app.get("/probe/:id/whoami-as", [](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& ns = c.env().ns("PROBE");
    const auto stub = ns.get(ns.idFromName(c.param("id")));
    const std::string as = c.query("as").value_or("");
    durable::Request request("http://do/whoami", {.headers = {{"x-request-id", as}}});
    co_return co_await stub.fetch(std::move(request));
  });
  app.get("/probe/:id/rpc", [](durable::Context& c) -> durable::Task<durable::Response> {
    durable::console::log("worker saw ", c.req().url().pathname());
    const auto& ns = c.env().ns("PROBE");
    const auto stub = ns.get(ns.idFromName(c.param("id")));
    const std::string text = c.query("text").value_or("");
    std::string echoed = co_await stub.call<&AlarmProbe::note>(text);
    co_return durable::Response(std::move(echoed));
  });
  // What the Worker sees of the request's address (the RFC 9112 tests: absolute-form targets).
  app.get("/echo/url", [](durable::Context& c) -> durable::Task<durable::Response> {
    const durable::URL url = c.req().url();
    co_return c.json(boost::json::object{{"host", url.host()}, {"pathname", std::string(url.pathnameView())},
                                         {"headerHost", c.req().headers().get("host").value_or("")}});
  });
  // A Worker that asks its object for a WebSocket with a request of its own, holding none of
  // the client's handshake headers (as Cloudflare's examples may): the runtime answers the
  // client's handshake, on one node or relayed from another.
  app.get("/fresh-upgrade/:id", [](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& rooms = c.env().ns("HIBERNATING_ROOM");
    const auto stub = rooms.get(rooms.idFromName(c.param("id")));
    durable::Request own("http://do/websocket");
    own.headers().set("Upgrade", "websocket");
    co_return co_await stub.fetch(std::move(own));
  });
  seed::addRoutes(app);
  server.setWorker(std::move(app));
  return server.run(argc, argv);
}
