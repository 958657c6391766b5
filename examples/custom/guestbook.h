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
      // Named: g++ 12 rejects a braced list inside a co_await expression (README, "g++ 12").
      const durable::Entries entries{{"count", count}, {key, name}};
      co_await storage().put(entries);
      const boost::json::object body{{"signed", name}, {"number", count}};
      co_return durable::Response::json(body);
    }
    if (request.method() == "GET" && url.pathname() == "/entries") {
      const auto entries = co_await storage().list({.prefix = "entry:"});
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
    // Forward the rest of the path and the query to the object.
    const auto url = c.req().url();
    const std::string rest = url.pathname().substr(("/books/" + c.param("book")).size());
    const auto& books = c.env().ns("GUESTBOOK");
    co_return co_await books.getByName(c.param("book")).fetch("http://do" + rest + url.search(), {.method = c.req().method()});
  });
  return app;
}
