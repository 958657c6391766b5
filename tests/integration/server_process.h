// Helpers for integration tests that drive the real `durable` binary: a temporary
// directory, the server as a child process (fork/exec, banner on a stdout pipe, stderr to a
// log file), a one-shot command runner, and a small synchronous HTTP/1.1 client over
// Boost.Beast.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace durable_it {

using namespace std::chrono_literals;

// Path of the built binary and of the source tree (compile definitions from CMake).
std::filesystem::path binaryPath();
std::filesystem::path sourceDir();
std::filesystem::path seedConfig();  // examples/seed/wrangler.toml
// The tests' own server (tests/support/test_server.cc: the seed plus AlarmProbe) and its config.
std::filesystem::path testServerPath();
std::filesystem::path testServerConfig();  // tests/support/test_server.toml

std::string readFile(const std::filesystem::path& path);
void writeFile(const std::filesystem::path& path, const std::string& text);

// mkdtemp under $TMPDIR (or /tmp); removed recursively by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// How a child ended: `code` when it exited, `signal` when a signal killed it.
struct ExitStatus {
  bool exited = false;
  int code = -1;
  int signal = 0;
  std::string describe() const;
};

// One run of the `serve` command. start() returns once the banner
// "durable: listening on HOST:PORT" arrived on stdout, or throws (with the stderr log in the
// message) when the child exits first or the banner does not come within `bannerTimeout`.
class ServerProcess {
 public:
  struct Options {
    std::filesystem::path binary;      // default: binaryPath()
    std::filesystem::path config;      // default: seedConfig()
    std::filesystem::path persistDir;  // required
    std::filesystem::path stderrLog;   // required
    std::vector<std::string> extraArgs;
    std::chrono::milliseconds bannerTimeout = 10s;
  };

  static std::unique_ptr<ServerProcess> start(Options options);
  ~ServerProcess();  // kill -9 if still running
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  std::uint16_t port() const { return port_; }
  // The admin listener's port from its banner, or 0 when it is off.
  std::uint16_t adminPort() const { return adminPort_; }
  const std::string& host() const { return host_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  std::string stderrText() const;
  const std::filesystem::path& stderrLog() const { return options_.stderrLog; }

  // `signal` (SIGTERM or SIGINT), then wait for the exit. If it has not exited within
  // `timeout`, kill -9 and throw.
  ExitStatus stop(std::chrono::milliseconds timeout = 20s, int signal = SIGTERM);
  // SIGKILL and reap.
  ExitStatus kill9();

 private:
  explicit ServerProcess(Options options) : options_(std::move(options)) {}
  ExitStatus waitFor(std::chrono::milliseconds timeout, bool* timedOut);

  Options options_;
  pid_t pid_ = -1;
  int stdoutFd_ = -1;
  std::string host_;
  std::uint16_t port_ = 0;
  std::uint16_t adminPort_ = 0;
};

// Runs the binary with `args` to completion (stdout and stderr to files in `scratch`).
// Kills it and throws if it runs longer than `timeout`.
struct CommandResult {
  ExitStatus status;
  std::string out;
  std::string err;
};
CommandResult runBinary(const std::vector<std::string>& args, const std::filesystem::path& scratch,
                        std::chrono::milliseconds timeout = 20s);
// The same for any program: argv[0] is its absolute path.
CommandResult runCommand(std::vector<std::string> argv, const std::filesystem::path& scratch,
                         std::chrono::milliseconds timeout = 20s);

// ---- HTTP ----

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lowercased; repeated fields joined with ", "
  std::string body;
  bool keepAlive = true;
  std::string header(const std::string& name) const;  // "" when absent
};

class HttpError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A keep-alive HTTP/1.1 connection, opened lazily, reopened lazily after the server closed it.
// Requests never retry: a failed request throws HttpError and leaves the connection closed.
class HttpConnection {
 public:
  HttpConnection(std::string host, std::uint16_t port, std::chrono::milliseconds timeout = 15s);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  HttpResponse request(const std::string& method, const std::string& target, const std::string& body = "",
                       const std::map<std::string, std::string>& headers = {});
  HttpResponse get(const std::string& target) { return request("GET", target); }
  HttpResponse post(const std::string& target, const std::string& body = "") { return request("POST", target, body); }
  bool isOpen() const;
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One request on a fresh connection (Connection: close).
HttpResponse httpRequest(const std::string& host, std::uint16_t port, const std::string& method,
                         const std::string& target, const std::string& body = "");

// Raw TCP: connect, send `bytes`, read until the peer closes or `timeout` passes.
struct RawExchange {
  std::string received;
  bool peerClosed = false;  // saw EOF (or a reset after the data)
  bool reset = false;       // the read ended with ECONNRESET
};
RawExchange rawExchange(const std::string& host, std::uint16_t port, const std::string& bytes,
                        std::chrono::milliseconds timeout = 5s);

// Parses one HTTP/1.x response from `raw` (as received from rawExchange). Throws HttpError.
HttpResponse parseResponse(const std::string& raw);

}  // namespace durable_it
