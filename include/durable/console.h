// durable/console.h: console.log, console.warn and console.error for objects and Workers.
//
// Each call writes one whole line on stderr in the server's own format,
// "2026-12-04T17:03:12.345Z INFO durable: <args>", even when shards log at once. Arguments
// are written with operator<<, one after another, as given.
//
// A line written during an object's event is tagged with the object's binding and ID and the
// id of the request it serves, "… INFO durable: [ns=COUNTER object=<hex> request=<id>] <args>"
// (in JSON lines: "namespace", "object", "requestId"); a Worker's lines with the request id.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace durable {

// The id of the request the running code serves, as its log lines show it: the client's
// x-request-id when that was 1 to 64 characters of [A-Za-z0-9._:/+=@-], else one made for the
// request; "" outside any request (an alarm, start-up).
std::string requestId();

}  // namespace durable

namespace durable::console {

enum class Level { kInfo, kWarn, kError };

// The line `message` under `level`.
void write(Level level, std::string_view message);

template <class... Args>
void log(const Args&... args) {
  std::ostringstream line;
  (line << ... << args);
  write(Level::kInfo, line.view());
}

template <class... Args>
void warn(const Args&... args) {
  std::ostringstream line;
  (line << ... << args);
  write(Level::kWarn, line.view());
}

template <class... Args>
void error(const Args&... args) {
  std::ostringstream line;
  (line << ... << args);
  write(Level::kError, line.view());
}

}  // namespace durable::console
