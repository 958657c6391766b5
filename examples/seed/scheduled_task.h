// The seed's ScheduledTask (the Alarms section), line by line.
#pragma once

#include <durable/durable.h>


namespace seed {

class ScheduledTask : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  durable::Task<durable::Response> fetch(durable::Request request) override {
    const auto url = request.url();

    if (url.pathname() == "/schedule") {
      // Schedule alarm for 1 hour from now
      const auto scheduledTime = durable::now() + 60 * 60 * 1000;
      co_await state().storage().setAlarm(scheduledTime);

      const boost::json::object body{{"scheduledTime", scheduledTime}};
      co_return durable::Response::json(body);
    }

    if (url.pathname() == "/cancel") {
      co_await state().storage().deleteAlarm();
      const boost::json::object body{{"cancelled", true}};
      co_return durable::Response::json(body);
    }

    co_return durable::Response("Not found", {.status = 404});
  }

  // Called when alarm fires
  durable::Task<void> alarm(durable::AlarmInfo) override {
    durable::console::log("Alarm fired!");

    // Do scheduled work...
    const auto task = co_await state().storage().get("pendingTask");
    if (task) {
      // Process task
      co_await state().storage().remove("pendingTask");
    }

    // Optionally schedule next alarm
    // co_await state().storage().setAlarm(durable::now() + 24 * 60 * 60 * 1000);
  }
};

}  // namespace seed
