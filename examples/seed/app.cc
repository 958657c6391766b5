#include "seed/app.h"

#include "seed/chat_page.h"
#include "seed/chat_room.h"
#include "seed/counter.h"
#include "seed/hibernating_room.h"
#include "seed/notes.h"
#include "seed/rate_limiter.h"
#include "seed/safe_do.h"
#include "seed/scheduled_task.h"

#include <cstdlib>

namespace seed {

namespace {

// `app.post('/counters/:id/increment', ...)` from the seed, and the same for the object's
// other paths: forward to the object of `binding` named by :id.
durable::Handler forwardTo(std::string binding, std::string path, std::string method) {
  return [binding = std::move(binding), path = std::move(path),
          method = std::move(method)](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& ns = c.env().ns(binding);
    const auto id = ns.idFromName(c.param("id"));
    const auto stub = ns.get(id);
    co_return co_await stub.fetch(durable::Request("http://do" + path, {.method = method}));
  };
}

// What `new Request(`http://do/websocket?user=${user}`)` does to the interpolated text: the
// URL parser percent-encodes what a query may not hold, and nothing else.
std::string encodeQueryText(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '`' || c == '\'' ) {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::int64_t fromEnvironment(const char* name, std::int64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return parseInt(v).value_or(fallback);
}

}  // namespace

durable::Worker makeApp() {
  durable::Worker app;
  addRoutes(app);
  return app;
}

void addRoutes(durable::Worker& app) {
  // Usage, from the seed: app.use('/api/*', rateLimit({ limit: 100, windowMs: 60000 }));
  app.use("/api/*", rateLimit({.limit = fromEnvironment("API_RATE_LIMIT", 100),
                               .windowMs = fromEnvironment("API_RATE_WINDOW_MS", 60000)}));
  app.use("/api-small/*", rateLimit({.limit = 5, .windowMs = 10000, .keyGenerator = [](durable::Context& c) {
                                       return "small:" + c.header("cf-connecting-ip").value_or("anonymous");
                                     }}));

  app.get("/health", [](durable::Context& c) -> durable::Task<durable::Response> { co_return c.text("ok"); });
  // Not in the seed: browsers ask every origin for /favicon.ico. The chat page names an inline
  // icon; this answers a browser on any other page with "no icon" instead of a 404.
  app.get("/favicon.ico", [](durable::Context&) -> durable::Task<durable::Response> {
    co_return durable::Response(nullptr, {.status = 204});
  });

  app.post("/counters/:id/increment", forwardTo("COUNTER", "/increment", "POST"));
  app.get("/counters/:id", forwardTo("COUNTER", "/get", "GET"));
  app.post("/counters/:id/reset", forwardTo("COUNTER", "/reset", "POST"));

  const auto pong = [](durable::Context& c) -> durable::Task<durable::Response> {
    const boost::json::object body{{"pong", true}};
    co_return c.json(body);
  };
  app.get("/api/ping", pong);
  app.get("/api-small/ping", pong);

  // The seed's WebSocket route, and the room's history.
  app.get("/rooms/:roomId/websocket", [](durable::Context& c) -> durable::Task<durable::Response> {
    const auto roomId = c.param("roomId");
    // `c.req.query('user') || 'anonymous'`: an empty user is falsy, so it is anonymous too.
    auto user = c.query("user").value_or("");
    if (user.empty()) user = "anonymous";

    const auto& rooms = c.env().ns("ROOM");
    const auto id = rooms.idFromName(roomId);
    const auto stub = rooms.get(id);

    durable::RequestInit init;
    init.headers = c.req().headers();
    durable::Request forwarded("http://do/websocket?user=" + encodeQueryText(user), std::move(init));
    co_return co_await stub.fetch(std::move(forwarded));
  });
  app.get("/rooms/:roomId/history", [](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& rooms = c.env().ns("ROOM");
    const auto stub = rooms.get(rooms.idFromName(c.param("roomId")));
    co_return co_await stub.fetch(durable::Request("http://do/history"));
  });
  app.get("/rooms/:roomId", [](durable::Context& c) -> durable::Task<durable::Response> {
    durable::Response page(kChatPage);
    page.headers().set("content-type", "text/html; charset=UTF-8");
    co_return page;
  });
  app.get("/hibernating/:id/websocket", [](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& rooms = c.env().ns("HIBERNATING_ROOM");
    const auto stub = rooms.get(rooms.idFromName(c.param("id")));
    durable::RequestInit init;
    init.headers = c.req().headers();
    durable::Request forwarded("http://do/websocket", std::move(init));
    co_return co_await stub.fetch(std::move(forwarded));
  });

  for (const char* method : {"GET", "POST"}) {
    app.on(method, "/tasks/:id/schedule", forwardTo("TASK", "/schedule", method));
    app.on(method, "/tasks/:id/cancel", forwardTo("TASK", "/cancel", method));
  }

  // Not in the seed: the SQLite-backed Notes (seed/notes.h). The request goes on as it came,
  // body and query included, to the notebook named :id.
  const auto toNotes = [](std::string path) {
    return [path = std::move(path)](durable::Context& c) -> durable::Task<durable::Response> {
      const auto& notes = c.env().ns("NOTES");
      const auto stub = notes.getByName(c.param("id"));
      std::string target = "http://do" + path;
      if (path == "/notes/") target += c.param("noteId");
      const auto query = c.req().url().search();
      if (!query.empty()) target += query;
      durable::RequestInit init;
      init.method = c.req().method();
      init.headers = c.req().headers();
      if (c.req().hasBody()) init.body = c.req().text();
      co_return co_await stub.fetch(durable::Request(target, std::move(init)));
    };
  };
  app.post("/notes/:id", toNotes("/notes"));
  app.get("/notes/:id", toNotes("/notes"));
  app.get("/notes/:id/bookmark", toNotes("/bookmark"));
  app.post("/notes/:id/restore", toNotes("/restore"));
  app.del("/notes/:id/:noteId", toNotes("/notes/"));
}

void exportClasses(durable::Server& server) {
  server.exportClass<Counter>("Counter");
  server.exportClass<RateLimiter>("RateLimiter");
  server.exportClass<ScheduledTask>("ScheduledTask");
  server.exportClass<SafeDO>("SafeDO");
  server.exportClass<ChatRoom>("ChatRoom");
  server.exportClass<HibernatingRoom>("HibernatingRoom");
  server.exportClass<Notes>("Notes");
}

}  // namespace seed
