#include "base/log.h"

#include <durable/console.h>

#include "base/request_tag.h"
#include "base/utf8.h"

#include <boost/json.hpp>

#include <ctime>

namespace durable::detail {

namespace {
bool g_jsonLogs = false;
ObjectOfHost g_objectOfHost = nullptr;

// "YYYY-MM-DDTHH:MM:SS.mmmZ"
void appendTime(std::string& out) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  // gmtime_r and the formatting cost more than the rest of a line; a thread logs many lines
  // within one second.
  thread_local time_t cachedSecond = -1;
  thread_local char cachedText[64];
  if (now.tv_sec != cachedSecond) {
    std::tm tm{};
    ::gmtime_r(&now.tv_sec, &tm);
    std::snprintf(cachedText, sizeof cachedText, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cachedSecond = now.tv_sec;
  }
  out += cachedText;
  const long ms = now.tv_nsec / 1000000;
  out += '.';
  out += static_cast<char>('0' + ms / 100);
  out += static_cast<char>('0' + ms / 10 % 10);
  out += static_cast<char>('0' + ms % 10);
  out += 'Z';
}
}  // namespace

void setObjectOfHost(ObjectOfHost fn) { g_objectOfHost = fn; }

LogTags currentLogTags() {
  const ExecContext& ctx = currentContext();
  LogTags tags;
  if (ctx.host && g_objectOfHost) tags.object = g_objectOfHost(ctx.host);
  tags.requestId = requestIdOf(ctx.request);
  return tags;
}

void appendLogTags(std::string& out) {
  const LogTags tags = currentLogTags();
  if (tags.object.ns.empty() && tags.requestId.empty()) return;
  out += '[';
  if (!tags.object.ns.empty()) {
    out += "ns=";
    out += tags.object.ns;
    out += " object=";
    out += tags.object.id;
    if (!tags.requestId.empty()) out += ' ';
  }
  if (!tags.requestId.empty()) {
    out += "request=";
    out += tags.requestId;
  }
  out += "] ";
}

void escapeLogControls(std::string& line, std::size_t from) {
  std::size_t i = from;
  while (i < line.size() && (static_cast<unsigned char>(line[i]) >= 0x20 || line[i] == '\t') && line[i] != 0x7f) ++i;
  if (i == line.size()) return;
  std::string out(line, 0, i);
  for (; i < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  line.swap(out);
}

void setJsonLogs(bool json) { g_jsonLogs = json; }
bool jsonLogs() { return g_jsonLogs; }

std::string jsonLogLine(LogLevel level, std::string_view message) {
  std::string out;
  out.reserve(message.size() + 64);
  out += "{\"time\":\"";
  appendTime(out);
  out += "\",\"level\":\"";
  out += level == LogLevel::kInfo ? "info" : level == LogLevel::kWarn ? "warn" : "error";
  out += '"';
  // A binding is the config's (escaped, whatever it holds); hex IDs and request ids
  // (validRequestId) need no escaping.
  const LogTags tags = currentLogTags();
  if (!tags.object.ns.empty()) {
    out += ",\"namespace\":";
    out += boost::json::serialize(boost::json::string(toWellFormedUtf8(std::string(tags.object.ns))));
    out += ",\"object\":\"";
    out += tags.object.id;
    out += '"';
  }
  if (!tags.requestId.empty()) {
    out += ",\"requestId\":\"";
    out += tags.requestId;
    out += '"';
  }
  out += ",\"msg\":";
  // A message may carry a client's bytes: made well-formed UTF-8 so that the line stays JSON.
  out += boost::json::serialize(boost::json::string(toWellFormedUtf8(std::string(message))));
  out += "}\n";
  return out;
}

void appendLogPrefix(std::string& out, LogLevel level) {
  appendTime(out);
  out += ' ';
  switch (level) {
    case LogLevel::kInfo: out += "INFO"; break;
    case LogLevel::kWarn: out += "WARN"; break;
    case LogLevel::kError: out += "ERROR"; break;
  }
  out += " durable: ";
}

std::string describeException(const std::exception_ptr& error) {
  if (!error) return "no error";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

}  // namespace durable::detail
