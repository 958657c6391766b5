#include "admin/admin.h"

#include "runtime/runtime.h"

#include <durable/error.h>

#include <boost/json.hpp>

#include <memory>

namespace durable::detail {

namespace {

// Runs `work` on `target`'s thread and answers on the calling shard's: engines and objects
// are touched by their own shard only.
template <class T>
Future<T> onShard(Shard& target, std::function<T()> work) {
  Promise<T> promise;
  Shard* home = Shard::current();
  postTo(target, [promise, home, work = std::move(work)]() mutable {
    std::optional<T> value;
    std::exception_ptr error;
    try {
      value.emplace(work());
    } catch (...) {
      error = std::current_exception();
    }
    postTo(*home, [promise, value = std::move(value), error]() mutable {
      if (error) return promise.setError(error);
      promise.setValue(std::move(*value));
    });
  });
  return promise.future();
}

// Compares without stopping at the first difference: how long it takes says nothing of where
// a guessed token went wrong.
bool sameSecret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

Response errorJson(int status, std::string message) {
  return Response::json(boost::json::object{{"error", std::move(message)}}, {.status = status});
}

}  // namespace

Worker makeAdminWorker(Runtime& runtime, AdminOptions options) {
  Worker w;
  if (!options.token.empty()) {
    w.use([token = options.token](Context& c, Next next) -> Task<Response> {
      const auto header = c.header("authorization").value_or("");
      constexpr std::string_view kBearer = "Bearer ";
      const bool ok = header.size() > kBearer.size() && header.compare(0, kBearer.size(), kBearer) == 0 &&
                      sameSecret(std::string_view(header).substr(kBearer.size()), token);
      if (!ok) {
        Response r = errorJson(401, "this admin listener needs the header \"Authorization: Bearer <admin token>\"");
        r.headers().set("www-authenticate", "Bearer");
        co_return r;
      }
      co_return co_await next();
    });
  }

  w.get("/metrics", [&runtime](Context&) -> Task<Response> {
    Response r(renderMetrics(runtime));
    r.headers().set("content-type", "text/plain; version=0.0.4; charset=utf-8");
    co_return r;
  });

  w.get("/admin/namespaces", [&runtime](Context&) -> Task<Response> {
    const auto& namespaces = runtime.namespaces();
    std::vector<std::size_t> counts(namespaces.size());
    for (unsigned s = 0; s < runtime.shardCount(); ++s) {
      Shard& shard = runtime.shard(s);
      auto perShard = co_await onShard<std::vector<std::size_t>>(shard, [&shard, &namespaces] {
        std::vector<std::size_t> n(namespaces.size());
        for (auto& p : shard.partitions) {
          for (std::size_t i = 0; i < namespaces.size(); ++i) n[i] += p->listObjects(namespaces[i]->nsId).size();
        }
        return n;
      });
      for (std::size_t i = 0; i < counts.size(); ++i) counts[i] += perShard[i];
    }
    boost::json::array out;
    for (std::size_t i = 0; i < namespaces.size(); ++i) {
      out.push_back(boost::json::object{{"binding", namespaces[i]->binding},
                                        {"class", namespaces[i]->className},
                                        {"backend", namespaces[i]->sqliteBacked ? "sqlite" : "kv"},
                                        {"objects", counts[i]}});
    }
    co_return Response::json(out);
  });

  w.notFound([](Context& c) -> Task<Response> {
    co_return errorJson(404, "no admin route for " + std::string(c.req().method()) + " " + c.req().url().pathname() +
                                 " (routes: GET /metrics, GET /admin/namespaces)");
  });
  return w;
}

}  // namespace durable::detail
