// The command line's pieces that need no server: option values checked with messages that
// say what was wrong and what is accepted, the --listen address, the default state directory.
#pragma once

#include <durable/error.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

#ifndef DURABLE_VERSION
#define DURABLE_VERSION "0.1.0"
#endif

namespace durable::cli {

// A mistake on the command line (exit code 2), as opposed to a failure to serve (exit 1).
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& message) : Error(ErrorCode::kInvalidArgument, message) {}
};

// `text` as a whole decimal number in [lo, hi], or UsageError:
// "--shards wants a whole number from 0 to 1024, got 'abc'"; with `accepted`, that phrase
// instead: "--idle-timeout-ms wants a positive whole number of milliseconds, got 'x'".
std::int64_t parseInteger(std::string_view flag, std::string_view text, std::int64_t lo, std::int64_t hi,
                          std::string_view accepted = {});

struct ListenAddress {
  std::string host;  // as given, without IPv6 brackets
  std::uint16_t port = 0;
};
// "HOST:PORT", "[V6]:PORT"; UsageError naming the accepted forms otherwise.
ListenAddress splitListen(std::string_view listen);
// The numeric address to bind for `host`: itself when it is one, else the first IPv4 address
// it resolves to (then any). an Error (kInvalidArgument) when it does not resolve.
std::string resolveListenHost(const std::string& host);

// .durable/<name> for the config's `name`; without one, .durable/<the config file's stem>,
// or its directory's name when the stem is "wrangler" (every project has a wrangler.toml).
std::filesystem::path defaultStateDir(const std::string& configName, const std::filesystem::path& configPath);

}  // namespace durable::cli
