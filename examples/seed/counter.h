// The seed's Counter (src/durable-objects/counter.ts), line by line.
#pragma once

#include <durable/durable.h>

namespace seed {

class Counter : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;  // Counter(durable::State&, durable::Env&)

  durable::Task<durable::Response> fetch(durable::Request request) override {
    const auto url = request.url();

    const auto pathname = url.pathname();
    if (pathname == "/increment") {
      auto count = (co_await state().storage().get<std::int64_t>("count")).value_or(0);
      count++;
      co_await state().storage().put("count", count);
      co_return durable::Response(durable::stringify({{"count", count}}));
    }

    if (pathname == "/get") {
      const auto count = (co_await state().storage().get<std::int64_t>("count")).value_or(0);
      co_return durable::Response(durable::stringify({{"count", count}}));
    }

    if (pathname == "/reset") {
      co_await state().storage().remove("count");
      co_return durable::Response(durable::stringify({{"count", 0}}));
    }

    co_return durable::Response("Not found", {.status = 404});
  }
};

}  // namespace seed
