// The seed's Error Handling section: SafeDO, and the caller-side pattern callDO.
#pragma once

#include <durable/durable.h>


namespace seed {

class SafeDO : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  durable::Task<durable::Response> fetch(durable::Request request) override {
    std::optional<durable::Response> failure;
    try {
      // DO logic: what the seed leaves to the reader. Here: /fail throws, anything else works.
      if (request.url().pathname() == "/fail") throw std::runtime_error("something broke");
      const boost::json::object body{{"success", true}};
      co_return durable::Response::json(body);
    } catch (const std::exception& error) {
      durable::console::error("DO error: ", error.what());
      const boost::json::object body{{"error", error.what()}};
      failure.emplace(durable::Response::json(body, {.status = 500}));
    } catch (...) {
      durable::console::error("DO error: unknown");
      const boost::json::object body{{"error", "Internal error"}};
      failure.emplace(durable::Response::json(body, {.status = 500}));
    }
    co_return std::move(*failure);
  }
};

// Caller-side error handling: throws std::runtime_error with the object's message when it
// answers with an error status; otherwise returns its JSON.
//
// Beyond the seed, what Cloudflare's docs add to this pattern: an error the runtime marks
// retryable() (the object was reset before it answered) is retried, a few times, because
// this call (a GET of `path`) is safe to repeat; an overloaded() one is not retried (that
// would add to the load) and reaches the Worker, which answers 503 with Retry-After.
inline durable::Task<durable::Json> callDO(durable::Env& env, std::string name, std::string path = "/action") {
  const auto& ns = env.ns("DO");
  const auto id = ns.idFromName(name);
  const auto stub = ns.get(id);

  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    try {
      durable::Request request("http://do" + path);
      const auto response = co_await stub.fetch(std::move(request));

      if (!response.ok()) {
        const auto error = response.json();
        throw std::runtime_error(std::string(error.as_object().at("error").as_string()));
      }

      co_return response.json();
    } catch (const durable::Error& error) {
      if (error.retryable() && !error.overloaded() && attempt < kAttempts) {
        durable::console::warn("DO call failed, retrying: ", error.what());
        continue;
      }
      // Network error or DO unavailable
      durable::console::error("DO call failed: ", error.what());
      throw;
    } catch (const std::exception& error) {
      durable::console::error("DO call failed: ", error.what());
      throw;
    }
  }
}

}  // namespace seed
