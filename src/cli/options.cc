#include "cli/options.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cctype>
#include <charconv>

namespace durable::cli {

std::int64_t parseInteger(std::string_view flag, std::string_view text, std::int64_t lo, std::int64_t hi,
                          std::string_view accepted) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < lo || value > hi) {
    const std::string wanted = accepted.empty()
                                   ? "a whole number from " + std::to_string(lo) + " to " + std::to_string(hi)
                                   : std::string(accepted);
    throw UsageError(std::string(flag) + " wants " + wanted + ", got '" + std::string(text) + "'");
  }
  return value;
}

ListenAddress splitListen(std::string_view listen) {
  const std::string accepted = " (accepted: HOST:PORT with a host name or an IPv4 address, [IPv6]:PORT; "
                               "port 0 to 65535, 0 picks a free one; e.g. 127.0.0.1:8787)";
  const auto colon = listen.rfind(':');
  if (!listen.empty() && listen.back() == ']') {
    throw UsageError("--listen: no port in '" + std::string(listen) + "'" + accepted);
  }
  if (colon == std::string_view::npos) {
    throw UsageError("--listen wants HOST:PORT, got '" + std::string(listen) + "'" + accepted);
  }
  std::string host(listen.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    throw UsageError("--listen: an IPv6 address goes in brackets, got '" + std::string(listen) + "'" + accepted);
  }
  if (host.empty()) throw UsageError("--listen: no host in '" + std::string(listen) + "'" + accepted);
  const std::string_view portText = listen.substr(colon + 1);
  std::uint16_t port = 0;
  const auto [end, ec] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
  if (portText.empty() || ec != std::errc() || end != portText.data() + portText.size()) {
    throw UsageError("--listen: bad port '" + std::string(portText) + "' in '" + std::string(listen) + "'" + accepted);
  }
  return {host, port};
}

std::string resolveListenHost(const std::string& host) {
  boost::system::error_code ec;
  const auto numeric = boost::asio::ip::make_address(host, ec);
  if (!ec) return numeric.to_string();
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  const auto results = resolver.resolve(host, "", boost::asio::ip::tcp::resolver::passive, ec);
  if (ec || results.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "--listen: cannot resolve host '" + host + "'" + (ec ? ": " + ec.message() : "") +
                             " (use a name that resolves, or an address such as 127.0.0.1 or [::1])");
  }
  // Where both families answer (localhost), IPv4: what 127.0.0.1 users and most tools expect.
  for (const auto& entry : results) {
    if (entry.endpoint().address().is_v4()) return entry.endpoint().address().to_string();
  }
  return results.begin()->endpoint().address().to_string();
}

namespace {

// A directory name from any text: unsafe characters become '-', nothing hidden, never empty.
std::string safeComponent(std::string text) {
  for (char& c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '-';
  }
  while (!text.empty() && text.front() == '.') text.erase(0, 1);
  if (text.size() > 255) text.resize(255);
  return text;
}

}  // namespace

std::filesystem::path defaultStateDir(const std::string& configName, const std::filesystem::path& configPath) {
  const std::filesystem::path root = ".durable";
  std::string name = safeComponent(configName);
  if (name.empty() && !configPath.empty()) {
    name = safeComponent(configPath.stem().string());
    if (name == "wrangler") {
      std::error_code ec;
      const auto dir = std::filesystem::absolute(configPath, ec).lexically_normal().parent_path().filename().string();
      if (!ec && !safeComponent(dir).empty()) name = safeComponent(dir);
    }
  }
  return root / (name.empty() ? std::string("state") : name);
}

}  // namespace durable::cli
