// One line per call on stderr, whole, even when shards log at once.
#pragma once

#include <cstdio>
#include <sstream>
#include <string>

namespace durable::detail {

template <class... Args>
void log(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  out << '\n';
  const std::string line = out.str();
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace durable::detail
