#include "seed/app.h"

#include "seed/counter.h"

namespace seed {

namespace {
// `app.post('/counters/:id/increment', ...)` from the seed, and the same for the object's
// other paths: forward to the counter named by :id.
durable::Handler forwardToCounter(std::string path, std::string method) {
  return [path = std::move(path), method = std::move(method)](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& counters = c.env().ns("COUNTER");
    const auto id = counters.idFromName(c.param("id"));
    const auto stub = counters.get(id);
    co_return co_await stub.fetch(durable::Request("http://do" + path, {.method = method}));
  };
}
}  // namespace

durable::Worker makeApp() {
  durable::Worker app;

  app.get("/health", [](durable::Context& c) -> durable::Task<durable::Response> { co_return c.text("ok"); });

  app.post("/counters/:id/increment", forwardToCounter("/increment", "POST"));
  app.get("/counters/:id", forwardToCounter("/get", "GET"));
  app.post("/counters/:id/reset", forwardToCounter("/reset", "POST"));

  return app;
}

void exportClasses(durable::Server& server) { server.exportClass<Counter>("Counter"); }

}  // namespace seed
