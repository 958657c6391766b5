// The SQL benchmark's app (bench/sql/run.sh): the same counter three ways, so that one run
// compares them side by side.
//   POST /kv/:id     a key-value class (new_classes): get, then put, as the seed's Counter
//   POST /sql/:id    a SQLite-backed class: UPDATE ... SET n = n + 1 ... RETURNING n
//   POST /sqlkv/:id  a SQLite-backed class through its key-value API (its _cf_KV table)
// A GET reads the count without adding (bench/scale.sh's random access with CLASS=sql).
#include <durable/durable.h>

namespace {

durable::Task<durable::Response> countWithKv(durable::State& state) {
  auto n = (co_await state.storage().get<std::int64_t>("count")).value_or(0) + 1;
  co_await state.storage().put("count", n);
  co_return durable::Response(std::to_string(n));
}

class KvCounter : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<durable::Response> fetch(durable::Request) override { return countWithKv(state()); }
};

class SqlKvCounter : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<durable::Response> fetch(durable::Request) override { return countWithKv(state()); }
};

class SqlCounter : public durable::DurableObject {
 public:
  SqlCounter(durable::State& state, durable::Env& env) : DurableObject(state, env) {
    state.storage().sql().exec("CREATE TABLE IF NOT EXISTS c(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)");
  }
  durable::Task<durable::Response> fetch(durable::Request request) override {
    if (request.method() == "GET") {
      const auto rows = state().storage().sql().exec("SELECT n FROM c WHERE id = 1");
      co_return durable::Response(rows.empty() ? "0" : std::to_string(rows.one().get<std::int64_t>("n")));
    }
    const auto n = state()
                       .storage()
                       .sql()
                       .exec("INSERT INTO c VALUES (1, 1) ON CONFLICT(id) DO UPDATE SET n = n + 1 RETURNING n")
                       .one()
                       .get<std::int64_t>("n");
    co_return durable::Response(std::to_string(n));
  }
};

durable::Handler to(const char* binding) {
  return [binding](durable::Context& c) -> durable::Task<durable::Response> {
    const std::string method = c.req().method();
    co_return co_await c.env().ns(binding).getByName(c.param("id")).fetch("http://do/", {.method = method});
  };
}

}  // namespace

int main(int argc, char** argv) {
  durable::Server server;
  server.exportClass<KvCounter>("KvCounter");
  server.exportClass<SqlCounter>("SqlCounter");
  server.exportClass<SqlKvCounter>("SqlKvCounter");
  durable::Worker app;
  app.get("/health", [](durable::Context& c) -> durable::Task<durable::Response> { co_return c.text("ok"); });
  app.post("/kv/:id", to("KV"));
  app.post("/sql/:id", to("SQL"));
  app.get("/sql/:id", to("SQL"));
  app.post("/sqlkv/:id", to("SQLKV"));
  server.setWorker(std::move(app));
  return server.run(argc, argv);
}
