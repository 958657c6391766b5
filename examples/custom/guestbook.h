// A guestbook: each book is one object; signing appends an entry under a sortable key.
#pragma once

#include <durable/durable.h>

#include <cstdio>

class Guestbook : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  durable::Task<durable::Response> fetch(durable::Request request) override {
    const auto url = request.url();
    if (request.method() == "POST" && url.pathname() == "/sign") {
      const auto name = url.searchParams().get("name").value_or("anonymous");
      const auto count = (co_await storage().get<std::int64_t>("count")).value_or(0) + 1;
      char key[32];
      std::snprintf(key, sizeof key, "entry:%012lld", static_cast<long long>(count));
      // Named, not braced inside the co_await/co_return: see RequestInit in durable/http.h.
      const std::vector<std::pair<std::string, durable::Value>> entries{{"count", count}, {key, name}};
      co_await storage().put(entries);
      const boost::json::object body{{"signed", name}, {"number", count}};
      co_return durable::Response::json(body);
    }
    if (request.method() == "GET" && url.pathname() == "/entries") {
      durable::ListOptions options;
      options.prefix = "entry:";
      const auto entries = co_await storage().list(options);
      boost::json::array names;
      for (const auto& [key, value] : entries) names.push_back(boost::json::value(value.as<std::string>()));
      co_return durable::Response::json(names);
    }
    co_return durable::Response("Not found", {.status = 404});
  }
};

inline durable::Worker makeGuestbookApp() {
  durable::Worker app;
  app.all("/books/:book/*", [](durable::Context& c) -> durable::Task<durable::Response> {
    const auto& books = c.env().ns("GUESTBOOK");
    const auto stub = books.getByName(c.param("book"));
    // Forward the rest of the path and the query to the object.
    const auto url = c.req().url();
    const std::string prefix = "/books/" + c.param("book");
    std::string rest = url.pathname().substr(prefix.size());
    durable::Request forwarded("http://do" + rest + url.search(), {.method = c.req().method()});
    co_return co_await stub.fetch(std::move(forwarded));
  });
  return app;
}
