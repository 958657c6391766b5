// Log lines on stderr: "2026-12-04T17:03:12.345Z INFO durable: <message>", or JSON lines. One fwrite per
// line (stderr is unbuffered, so one write(2)), whole even when shards log at once; the
// timestamp's date-and-second part is formatted once a second per thread.
#pragma once

#include <charconv>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

namespace durable::detail {

enum class LogLevel { kInfo, kWarn, kError };

// Appends "YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL durable: " to `out`.
void appendLogPrefix(std::string& out, LogLevel level);

// What a line written during an event is tagged with: the object whose event it is (its
// binding and hex ID) and the request it serves. Empty parts are left out.
struct LogObject {
  std::string_view ns;
  std::string_view id;
};
struct LogTags {
  LogObject object;
  std::string_view requestId;
};
// How the log finds the object of ExecContext::host: set once by the runtime, which knows
// what a host is.
using ObjectOfHost = LogObject (*)(void* host);
void setObjectOfHost(ObjectOfHost fn);
LogTags currentLogTags();
// "[ns=COUNTER object=<hex> request=<id>] ", or nothing outside an event.
void appendLogTags(std::string& out);

template <class T>
void appendLogArg(std::string& out, const T& arg) {
  using U = std::decay_t<T>;
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    out += std::string_view(arg);
  } else if constexpr (std::is_same_v<U, char>) {
    out += arg;
  } else if constexpr (std::is_same_v<U, bool>) {
    out += arg ? "true" : "false";
  } else if constexpr (std::is_integral_v<U>) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, arg);
    out.append(buf, r.ptr);
  } else {
    std::ostringstream s;
    s << arg;
    out += s.str();
  }
}

// A message may carry a client's bytes: from `from` on, a line break becomes "\\n" (and CR
// "\\r", any other control character "\\xNN"), so that no message can forge a line of its own.
void escapeLogControls(std::string& line, std::size_t from);

// Log lines as JSON objects, one per line ([durable] log_format = "json"): set once at
// start-up, before other threads log.
void setJsonLogs(bool json);
bool jsonLogs();
// {"time":"…","level":"info","msg":"<message>"} and a newline.
std::string jsonLogLine(LogLevel level, std::string_view message);

template <class... Args>
std::string formatLogLine(LogLevel level, const Args&... args) {
  std::string line;
  line.reserve(128);
  const bool json = jsonLogs();
  if (!json) appendLogPrefix(line, level);
  const std::size_t message = line.size();
  if (!json) appendLogTags(line);
  (appendLogArg(line, args), ...);
  if (json) return jsonLogLine(level, line);
  escapeLogControls(line, message);
  line += '\n';
  return line;
}

template <class... Args>
void logAt(LogLevel level, const Args&... args) {
  const std::string line = formatLogLine(level, args...);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

template <class... Args>
void logInfo(const Args&... args) {
  logAt(LogLevel::kInfo, args...);
}
template <class... Args>
void logWarn(const Args&... args) {
  logAt(LogLevel::kWarn, args...);
}
template <class... Args>
void logError(const Args&... args) {
  logAt(LogLevel::kError, args...);
}

// The message of an exception for a log line: what() of a std::exception, else a sentence
// saying it was something else (an object may throw anything, an int included).
std::string describeException(const std::exception_ptr& error);

// What the runtime logs without a level is something that went wrong: an object that threw,
// a commit that failed.
template <class... Args>
void log(const Args&... args) {
  logAt(LogLevel::kError, args...);
}

}  // namespace durable::detail
