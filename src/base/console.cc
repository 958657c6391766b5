#include <durable/console.h>

#include "base/log.h"
#include "base/request_tag.h"

namespace durable {

std::string requestId() { return std::string(detail::requestIdOf(detail::currentContext().request)); }

}  // namespace durable

namespace durable::console {

void write(Level level, std::string_view message) {
  using detail::LogLevel;
  detail::logAt(level == Level::kError ? LogLevel::kError : level == Level::kWarn ? LogLevel::kWarn : LogLevel::kInfo,
                message);
}

}  // namespace durable::console
