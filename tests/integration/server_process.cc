#include "integration/server_process.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace durable_it {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

fs::path binaryPath() { return fs::path(DURABLE_BINARY); }
fs::path sourceDir() { return fs::path(DURABLE_SOURCE_DIR); }
fs::path seedConfig() { return sourceDir() / "examples" / "seed" / "wrangler.toml"; }
fs::path testServerPath() {
#ifdef DURABLE_TEST_SERVER
  return fs::path(DURABLE_TEST_SERVER);
#else
  throw std::runtime_error("built without DURABLE_TEST_SERVER");
#endif
}
fs::path testServerConfig() { return sourceDir() / "tests" / "support" / "test_server.toml"; }

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// ---- TempDir ----

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/durable-it-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

// ---- processes ----

std::string ExitStatus::describe() const {
  if (exited) return "exit code " + std::to_string(code);
  if (signal) return "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "still running";
}

namespace {

ExitStatus fromWaitStatus(int status) {
  ExitStatus s;
  if (WIFEXITED(status)) {
    s.exited = true;
    s.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    s.signal = WTERMSIG(status);
  }
  return s;
}

// Everything the child needs is prepared before fork: between fork and exec only
// async-signal-safe calls.
struct ExecPlan {
  std::vector<std::string> args;  // args[0] is the binary
  std::vector<char*> argv;
  explicit ExecPlan(std::vector<std::string> a) : args(std::move(a)) {
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
  }
};

[[noreturn]] void execChild(const ExecPlan& plan, int stdinFd, int stdoutFd, int stderrFd) {
  // Back to default signal state: gtest or asio may have blocked or ignored some.
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  if (::dup2(stdinFd, 0) < 0 || ::dup2(stdoutFd, 1) < 0 || ::dup2(stderrFd, 2) < 0) ::_exit(126);
  // Do not leak the test process's sockets and pipes into the server.
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
#endif
  {
    for (int fd = 3; fd < 4096; ++fd) ::close(fd);
  }
  ::execv(plan.argv[0], plan.argv.data());
  ::_exit(127);
}

int openOrThrow(const fs::path& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("open " + path.string() + ": " + std::strerror(errno));
  return fd;
}

std::optional<ExitStatus> reap(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return fromWaitStatus(status);
    if (r < 0 && errno != EINTR) throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);  // polling for an exit, not for readiness
  }
}

}  // namespace

std::unique_ptr<ServerProcess> ServerProcess::start(Options options) {
  if (options.binary.empty()) options.binary = binaryPath();
  if (options.config.empty()) options.config = seedConfig();
  if (options.persistDir.empty() || options.stderrLog.empty()) {
    throw std::invalid_argument("ServerProcess: persistDir and stderrLog are required");
  }
  std::unique_ptr<ServerProcess> p(new ServerProcess(options));

  std::vector<std::string> args{options.binary.string(), "serve", "--config", options.config.string(),
                                "--listen",           "127.0.0.1:0", "--persist-to", options.persistDir.string()};
  args.insert(args.end(), options.extraArgs.begin(), options.extraArgs.end());
  ExecPlan plan(std::move(args));

  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  int errFd = openOrThrow(options.stderrLog, O_WRONLY | O_CREAT | O_APPEND);
  int nullFd = openOrThrow("/dev/null", O_RDONLY);

  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipeFds[0]);
    ::close(pipeFds[1]);
    ::close(errFd);
    ::close(nullFd);
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) execChild(plan, nullFd, pipeFds[1], errFd);

  ::close(pipeFds[1]);
  ::close(errFd);
  ::close(nullFd);
  p->pid_ = pid;
  p->stdoutFd_ = pipeFds[0];

  // Read the banner line.
  const std::string prefix = "durable: listening on ";
  std::string out;
  const auto deadline = Clock::now() + options.bannerTimeout;
  for (;;) {
    if (auto nl = out.find('\n'); nl != std::string::npos) {
      std::string line = out.substr(0, nl);
      if (line.rfind(prefix, 0) != 0) {
        const std::string adminPrefix = "durable: admin on ";
        if (line.rfind(adminPrefix, 0) == 0) {
          const std::string hostPort = line.substr(adminPrefix.size());
          p->adminPort_ = static_cast<std::uint16_t>(std::stoul(hostPort.substr(hostPort.rfind(':') + 1)));
        }
        out.erase(0, nl + 1);  // some other line; keep looking
        continue;
      }
      std::string hostPort = line.substr(prefix.size());
      auto colon = hostPort.rfind(':');
      if (colon == std::string::npos) throw std::runtime_error("unparseable banner: " + line);
      p->host_ = hostPort.substr(0, colon);
      p->port_ = static_cast<std::uint16_t>(std::stoul(hostPort.substr(colon + 1)));
      if (p->port_ == 0) throw std::runtime_error("banner names port 0: " + line);
      return p;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      p->kill9();
      throw std::runtime_error("server did not print its banner within " +
                               std::to_string(options.bannerTimeout.count()) + " ms; stdout so far: '" + out +
                               "'; stderr:\n" + p->stderrText());
    }
    pollfd pfd{p->stdoutFd_, POLLIN, 0};
    int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(p->stdoutFd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      bool timedOut = false;
      ExitStatus st = p->waitFor(5s, &timedOut);
      throw std::runtime_error("server closed stdout before its banner (" + st.describe() + "); stderr:\n" +
                               p->stderrText());
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
}

ServerProcess::~ServerProcess() {
  if (running()) {
    try {
      kill9();
    } catch (...) {
    }
  }
  if (stdoutFd_ >= 0) ::close(stdoutFd_);
}

std::string ServerProcess::stderrText() const { return readFile(options_.stderrLog); }

ExitStatus ServerProcess::waitFor(std::chrono::milliseconds timeout, bool* timedOut) {
  *timedOut = false;
  if (!running()) return {};
  auto st = reap(pid_, timeout);
  if (!st) {
    *timedOut = true;
    ::kill(pid_, SIGKILL);
    st = reap(pid_, 10s);
    if (!st) throw std::runtime_error("server pid " + std::to_string(pid_) + " does not die");
  }
  pid_ = -1;
  if (stdoutFd_ >= 0) {
    ::close(stdoutFd_);
    stdoutFd_ = -1;
  }
  return *st;
}

ExitStatus ServerProcess::stop(std::chrono::milliseconds timeout, int signal) {
  if (!running()) throw std::logic_error("ServerProcess::stop: not running");
  ::kill(pid_, signal);
  bool timedOut = false;
  ExitStatus st = waitFor(timeout, &timedOut);
  if (timedOut) {
    throw std::runtime_error("server did not exit within " + std::to_string(timeout.count()) + " ms of signal " +
                             std::to_string(signal) + " (killed with -9); stderr:\n" + stderrText());
  }
  return st;
}

ExitStatus ServerProcess::kill9() {
  if (!running()) throw std::logic_error("ServerProcess::kill9: not running");
  ::kill(pid_, SIGKILL);
  bool timedOut = false;
  return waitFor(10s, &timedOut);
}

CommandResult runBinary(const std::vector<std::string>& args, const fs::path& scratch,
                        std::chrono::milliseconds timeout) {
  std::vector<std::string> full{binaryPath().string()};
  full.insert(full.end(), args.begin(), args.end());
  return runCommand(std::move(full), scratch, timeout);
}

CommandResult runCommand(std::vector<std::string> argv, const fs::path& scratch, std::chrono::milliseconds timeout) {
  static int counter = 0;
  const int n = ++counter;
  const fs::path outPath = scratch / ("cmd-" + std::to_string(n) + ".out");
  const fs::path errPath = scratch / ("cmd-" + std::to_string(n) + ".err");
  ExecPlan plan(std::move(argv));
  int outFd = openOrThrow(outPath, O_WRONLY | O_CREAT | O_TRUNC);
  int errFd = openOrThrow(errPath, O_WRONLY | O_CREAT | O_TRUNC);
  int nullFd = openOrThrow("/dev/null", O_RDONLY);
  pid_t pid = ::fork();
  if (pid == 0) execChild(plan, nullFd, outFd, errFd);
  ::close(outFd);
  ::close(errFd);
  ::close(nullFd);
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  auto st = reap(pid, timeout);
  if (!st) {
    ::kill(pid, SIGKILL);
    reap(pid, 10s);
    throw std::runtime_error("command did not finish within " + std::to_string(timeout.count()) +
                             " ms; stderr:\n" + readFile(errPath));
  }
  return {*st, readFile(outPath), readFile(errPath)};
}

// ---- HTTP ----

std::string HttpResponse::header(const std::string& name) const {
  std::string lower;
  for (char c : name) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  auto it = headers.find(lower);
  return it == headers.end() ? std::string() : it->second;
}

namespace {

template <class Message>
HttpResponse fromBeast(const Message& res) {
  HttpResponse r;
  r.status = static_cast<int>(res.result_int());
  r.keepAlive = res.keep_alive();
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value(field.value());
    auto [it, inserted] = r.headers.emplace(name, value);
    if (!inserted) it->second += ", " + value;
  }
  r.body = res.body();
  return r;
}

}  // namespace

struct HttpConnection::Impl {
  std::string host;
  std::uint16_t port;
  std::chrono::milliseconds timeout;
  asio::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  // Runs the queued async operations to completion; the stream's expiry bounds them.
  void runAll() {
    ioc.restart();
    ioc.run();
  }

  void connect() {
    stream.emplace(ioc);
    buffer.clear();
    beast::error_code result;
    stream->expires_after(timeout);
    tcp::endpoint ep(asio::ip::make_address(host), port);
    stream->async_connect(ep, [&](beast::error_code ec) { result = ec; });
    runAll();
    if (result) {
      stream.reset();
      throw HttpError("connect to " + host + ":" + std::to_string(port) + ": " + result.message());
    }
    beast::error_code ignored;
    stream->socket().set_option(tcp::no_delay(true), ignored);
  }

  void close() {
    if (!stream) return;
    beast::error_code ec;
    stream->socket().shutdown(tcp::socket::shutdown_both, ec);
    stream->socket().close(ec);
    stream.reset();
  }
};

HttpConnection::HttpConnection(std::string host, std::uint16_t port, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  impl_->timeout = timeout;
}

HttpConnection::~HttpConnection() { impl_->close(); }

bool HttpConnection::isOpen() const { return impl_->stream.has_value(); }
void HttpConnection::close() { impl_->close(); }

HttpResponse HttpConnection::request(const std::string& method, const std::string& target, const std::string& body,
                                     const std::map<std::string, std::string>& headers) {
  auto& d = *impl_;
  if (!d.stream) d.connect();

  http::request<http::string_body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(http::field::host, d.host + ":" + std::to_string(d.port));
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  if (!body.empty() || method == "POST" || method == "PUT") req.prepare_payload();

  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  beast::error_code writeEc, readEc;
  d.stream->expires_after(d.timeout);
  http::async_write(*d.stream, req, [&](beast::error_code ec, std::size_t) {
    writeEc = ec;
    if (ec) return;
    http::async_read(*d.stream, d.buffer, parser, [&](beast::error_code ec2, std::size_t) { readEc = ec2; });
  });
  d.runAll();
  if (writeEc || readEc) {
    d.close();
    throw HttpError(method + " " + target + ": " + (writeEc ? "write: " + writeEc.message() : "read: " + readEc.message()));
  }
  HttpResponse r = fromBeast(parser.get());
  if (!r.keepAlive) d.close();
  return r;
}

HttpResponse httpRequest(const std::string& host, std::uint16_t port, const std::string& method,
                         const std::string& target, const std::string& body) {
  HttpConnection c(host, port);
  return c.request(method, target, body, {{"Connection", "close"}});
}

RawExchange rawExchange(const std::string& host, std::uint16_t port, const std::string& bytes,
                        std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw HttpError(std::string("socket: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) throw HttpError("bad IPv4 address " + host);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw HttpError(std::string("connect: ") + std::strerror(errno));
  }
  timeval sendTimeout{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, sizeof sendTimeout);
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;  // the server may close before taking everything; read what it said
    sent += static_cast<std::size_t>(n);
  }
  RawExchange x;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return x;
    pollfd pfd{fd, POLLIN, 0};
    int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      x.reset = errno == ECONNRESET;
      x.peerClosed = x.reset;
      return x;
    }
    if (n == 0) {
      x.peerClosed = true;
      return x;
    }
    x.received.append(buf, static_cast<std::size_t>(n));
  }
}

HttpResponse parseResponse(const std::string& raw) {
  http::response_parser<http::string_body> parser;
  parser.eager(true);
  beast::error_code ec;
  std::size_t used = parser.put(asio::buffer(raw), ec);
  if (!ec && !parser.is_done()) {
    // A body delimited by EOF.
    parser.put_eof(ec);
  }
  if (ec) throw HttpError("cannot parse response (" + ec.message() + "): '" + raw + "'");
  (void)used;
  return fromBeast(parser.get());
}

}  // namespace durable_it
