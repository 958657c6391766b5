#include "cli/tools.h"

#include "admin/admin.h"
#include "admin/backup.h"
#include "base/log.h"
#include "cli/options.h"
#include "config/config.h"
#include "net/http_server.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>

namespace durable::cli {

const char* const kToolsUsage = R"(  durable objects list NAMESPACE [--limit N] [--cursor C]        [WHERE]
  durable objects get NAMESPACE ID                                [WHERE]
  durable storage list NAMESPACE ID [--prefix P] [--limit N] [--cursor C] [WHERE]
  durable storage get NAMESPACE ID KEY                            [WHERE]
  durable storage delete NAMESPACE ID                             [WHERE]
  durable alarm run NAMESPACE ID                                  [WHERE]
  durable backup --to FILE                                        [WHERE]
  durable restore --from FILE [--config FILE] [--persist-to DIR]
)";

const char* const kToolsWhere = R"(
WHERE is a running server, --admin HOST:PORT [--token T] (or DURABLE_ADMIN_TOKEN), or a
stopped server's state, [--config FILE] [--persist-to DIR] as `serve` takes them (its lock
is taken; no alarm fires). Answers are the admin API's JSON on stdout; NAMESPACE is a binding
or a class name, ID 64 hex digits. restore unpacks a backup into a new state directory.
)";

namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;

struct ToolOptions {
  std::vector<std::string> positional;
  std::optional<std::string> admin, token, config, persistDir, limit, cursor, prefix, to, from;
};

struct Reply {
  int status = 0;
  std::string body;
};

struct AdminRequest {
  http::verb method = http::verb::get;
  std::string target;
  std::string body;  // JSON, when not empty
};

// Percent-encodes one path segment or query value.
std::string enc(const std::string& s) { return boost::urls::encode(s, boost::urls::unreserved_chars); }

Reply send(const std::string& host, std::uint16_t port, const std::string& token, const AdminRequest& r) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  boost::beast::tcp_stream stream(io);
  boost::system::error_code ec;
  auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (!ec) stream.connect(endpoints, ec);
  if (ec) {
    throw Error(ErrorCode::kUnavailable,
                "cannot reach the admin listener at " + host + ":" + std::to_string(port) + ": " + ec.message());
  }
  // A server that stops answering does not hold the tool forever (a backup may take long).
  const int seconds = r.target == "/admin/backup" ? 3600 : 120;
  const timeval limit{seconds, 0};
  ::setsockopt(stream.socket().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  ::setsockopt(stream.socket().native_handle(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  http::request<http::string_body> req(r.method, r.target, 11);
  req.set(http::field::host, host + ":" + std::to_string(port));
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  if (!r.body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = r.body;
  }
  req.prepare_payload();
  http::write(stream, req, ec);
  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  if (!ec) http::read(stream, buffer, parser, ec);
  if (ec) throw Error(ErrorCode::kUnavailable, "the admin listener at " + host + ": " + ec.message());
  return {static_cast<int>(parser.get().result_int()), std::move(parser.get().body())};
}

// The request a tool command makes, or UsageError.
AdminRequest requestFor(const std::string& command, const ToolOptions& o) {
  const auto& p = o.positional;
  auto want = [&](std::size_t n, const char* shape) {
    if (p.size() != n) throw UsageError("usage: durable " + command + " " + shape);
  };
  auto query = [&](std::initializer_list<std::pair<const char*, const std::optional<std::string>*>> params) {
    std::string q;
    for (const auto& [name, value] : params) {
      if (*value) q += std::string(q.empty() ? "?" : "&") + name + "=" + enc(**value);
    }
    return q;
  };
  if (o.limit) parseInteger("--limit", *o.limit, 1, 1000);
  const std::string sub = p.empty() ? "" : p[0];
  if (command == "objects" && sub == "list") {
    want(2, "list NAMESPACE [--limit N] [--cursor C]");
    return {http::verb::get, "/admin/namespaces/" + enc(p[1]) + "/objects" + query({{"limit", &o.limit}, {"cursor", &o.cursor}})};
  }
  if (command == "objects" && sub == "get") {
    want(3, "get NAMESPACE ID");
    return {http::verb::get, "/admin/namespaces/" + enc(p[1]) + "/objects/" + enc(p[2])};
  }
  if (command == "storage" && sub == "list") {
    want(3, "list NAMESPACE ID [--prefix P] [--limit N] [--cursor C]");
    return {http::verb::get, "/admin/namespaces/" + enc(p[1]) + "/objects/" + enc(p[2]) + "/storage" +
                                 query({{"prefix", &o.prefix}, {"limit", &o.limit}, {"cursor", &o.cursor}})};
  }
  if (command == "storage" && sub == "get") {
    want(4, "get NAMESPACE ID KEY");
    return {http::verb::get, "/admin/namespaces/" + enc(p[1]) + "/objects/" + enc(p[2]) + "/storage?key=" + enc(p[3])};
  }
  if (command == "storage" && sub == "delete") {
    want(3, "delete NAMESPACE ID");
    return {http::verb::delete_, "/admin/namespaces/" + enc(p[1]) + "/objects/" + enc(p[2]) + "/storage"};
  }
  if (command == "alarm" && sub == "run") {
    want(3, "run NAMESPACE ID");
    return {http::verb::post, "/admin/namespaces/" + enc(p[1]) + "/objects/" + enc(p[2]) + "/alarm/run"};
  }
  if (command == "backup") {
    if (!p.empty() || !o.to || o.to->empty()) throw UsageError("usage: durable backup --to FILE");
    const std::string to = fs::absolute(*o.to).string();
    return {http::verb::post, "/admin/backup", boost::json::serialize(boost::json::object{{"to", to}})};
  }
  if (command == "objects") throw UsageError("durable objects wants list or get");
  if (command == "storage") throw UsageError("durable storage wants list, get or delete");
  throw UsageError("durable alarm wants run");
}

ToolOptions parseOptions(const std::vector<std::string>& args) {
  ToolOptions o;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) {
      o.positional.push_back(a);
      continue;
    }
    const auto eq = a.find('=');
    const std::string flag = a.substr(0, eq);
    auto value = [&]() -> std::string {
      if (eq != std::string::npos) return a.substr(eq + 1);
      if (i + 1 >= args.size()) throw UsageError(flag + " needs a value");
      return args[++i];
    };
    std::optional<std::string>* slot = flag == "--admin"        ? &o.admin
                                       : flag == "--token"      ? &o.token
                                       : flag == "--config"     ? &o.config
                                       : flag == "--persist-to" ? &o.persistDir
                                       : flag == "--limit"      ? &o.limit
                                       : flag == "--cursor"     ? &o.cursor
                                       : flag == "--prefix"     ? &o.prefix
                                       : flag == "--to"         ? &o.to
                                       : flag == "--from"       ? &o.from
                                                                : nullptr;
    if (!slot) {
      throw UsageError("unknown option " + flag + " for durable " + args[0] +
                       " (options: --admin, --token, --config, --persist-to, --limit, --cursor, --prefix, --to, --from)");
    }
    *slot = value();
  }
  if (o.admin && (o.config || o.persistDir)) {
    throw UsageError("--admin asks a running server; --config and --persist-to open a stopped one's state: pick one");
  }
  return o;
}

struct LocalState {
  config::Config cfg;
  std::string configPath;
  fs::path dir;
};

LocalState localState(const ToolOptions& o, const std::string& defaultConfig) {
  LocalState s;
  s.configPath = o.config.value_or(defaultConfig);
  if (s.configPath.empty()) {
    throw UsageError("no config: pass --config FILE (the one the server runs with), or --admin HOST:PORT");
  }
  s.cfg = config::loadConfig(s.configPath);
  s.dir = o.persistDir ? fs::path(*o.persistDir) : defaultStateDir(s.cfg.name, s.configPath);
  return s;
}

// A tool opens only a directory that holds a state: it must not make one by asking.
void requireState(const fs::path& dir) {
  if (!fs::exists(dir / "meta.sqlite")) {
    throw Error(ErrorCode::kNotFound, dir.string() + " holds no durable state: pass --persist-to DIR (the server's "
                                                     "state directory) or --admin HOST:PORT (a running server)");
  }
}

// Serves `request` from a stopped server's state: the runtime opened over it with alarms
// paused, the admin API on an ephemeral loopback port for the one request.
Reply askState(const LocalState& s, const Factories& classes, const AdminRequest& request) {
  requireState(s.dir);
  OpenState state;
  try {
    state = openState(s.cfg, s.configPath, s.dir, classes, true);
  } catch (const detail::StateDirLocked& e) {
    throw Error(ErrorCode::kFailedPrecondition,
                std::string(e.what()) + " (to ask a running server, pass its --admin HOST:PORT)");
  }
  state.runtime->start();
  Worker admin = detail::makeAdminWorker(*state.runtime, {});
  detail::HttpOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.countInMetrics = false;
  options.accessLog = false;
  detail::HttpServer server(*state.runtime, admin, options);
  server.start();
  std::optional<Reply> reply;
  std::exception_ptr error;
  try {
    reply = send("127.0.0.1", server.port(), "", request);
  } catch (...) {
    error = std::current_exception();
  }
  server.stopAccepting();
  server.waitIdle(std::chrono::steady_clock::now() + std::chrono::seconds(10));
  state.runtime->stop();
  if (error) std::rethrow_exception(error);
  return *reply;
}

// A stopped server's state needs no runtime to be copied: the files, under the lock.
int backupStopped(const ToolOptions& o, const std::string& defaultConfig) {
  if (!o.positional.empty() || !o.to || o.to->empty()) throw UsageError("usage: durable backup --to FILE");
  const fs::path dir = o.persistDir ? fs::path(*o.persistDir) : localState(o, defaultConfig).dir;
  requireState(dir);
  std::optional<detail::StateDirLock> lock;
  try {
    lock.emplace(dir);
  } catch (const detail::StateDirLocked& e) {
    throw Error(ErrorCode::kFailedPrecondition,
                std::string(e.what()) + " (to back up a running server, pass its --admin HOST:PORT)");
  }
  const std::string to = fs::absolute(*o.to).string();
  const auto summary = detail::backupState(dir, to);
  std::cout << boost::json::serialize(boost::json::object{
                   {"file", to}, {"databases", summary.databases}, {"bytes", summary.bytes}})
            << "\n";
  return 0;
}

int restore(const ToolOptions& o, const std::string& defaultConfig) {
  if (!o.positional.empty() || !o.from || o.from->empty() || o.admin) {
    throw UsageError("usage: durable restore --from FILE [--config FILE] [--persist-to DIR] (into a new directory)");
  }
  fs::path dir;
  if (o.persistDir) {
    dir = *o.persistDir;
  } else {
    dir = localState(o, defaultConfig).dir;
  }
  std::error_code ec;
  if (!fs::is_regular_file(*o.from, ec)) throw Error(ErrorCode::kNotFound, *o.from + ": no such file");
  const bool existed = fs::exists(dir, ec);
  detail::BackupSummary summary;
  try {
    detail::StateDirLock lock(dir);
    summary = detail::restoreState(*o.from, dir);
  } catch (const detail::StateDirLocked&) {
    throw;
  } catch (...) {
    // Nothing of a failed restore is left: not even the directory, when it made it.
    if (!existed) fs::remove_all(dir, ec);
    throw;
  }
  std::cout << boost::json::serialize(boost::json::object{
                   {"restored", dir.string()}, {"databases", summary.databases}, {"bytes", summary.bytes}})
            << "\n";
  return 0;
}

}  // namespace

bool isTool(const std::string& command) {
  return command == "objects" || command == "storage" || command == "alarm" || command == "backup" ||
         command == "restore";
}

int runTool(const std::vector<std::string>& args, const Factories& classes, const std::string& defaultConfig) {
  const std::string& command = args.at(0);
  try {
    const ToolOptions o = parseOptions(args);
    if (command == "restore") return restore(o, defaultConfig);
    if (command == "backup" && !o.admin) return backupStopped(o, defaultConfig);
    const AdminRequest request = requestFor(command, o);
    Reply reply;
    if (o.admin) {
      const auto listen = splitListen(*o.admin);
      const char* env = std::getenv("DURABLE_ADMIN_TOKEN");
      const std::string token = o.token ? *o.token : env ? env : "";
      reply = send(listen.host, listen.port, token, request);
    } else {
      reply = askState(localState(o, defaultConfig), classes, request);
    }
    if (reply.status >= 200 && reply.status < 300) {
      if (command == "storage" && o.positional[0] == "get") {
        // The one entry, not a page of one.
        reply.body = boost::json::serialize(boost::json::parse(reply.body).at("entries").at(0));
      }
      if (!reply.body.empty()) std::cout << reply.body << "\n";
      return 0;
    }
    std::string message = reply.body;
    try {
      message = std::string(boost::json::parse(reply.body).at("error").as_string());
    } catch (const std::exception&) {
    }
    std::cerr << "durable: " << message << " (HTTP " << reply.status << ")\n";
    return 1;
  } catch (const UsageError& e) {
    std::cerr << "durable: " << e.what() << "\nRun 'durable --help' for usage.\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "durable: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace durable::cli
