#include "support/postgres_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace durable_test {

namespace fs = std::filesystem;

namespace {

std::string readAll(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A port the kernel just handed out on 127.0.0.1; free again once the socket closes.
std::uint16_t freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("postgres harness: socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error(std::string("postgres harness: bind: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

fs::path findBin() {
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("DURABLE_POSTGRES_BIN")) candidates.emplace_back(env);
  candidates.emplace_back("/usr/lib/postgresql/15/bin");
  for (const auto& c : candidates) {
    if (fs::exists(c / "postgres") && fs::exists(c / "initdb")) return c;
  }
  throw std::runtime_error(
      "postgres harness: no PostgreSQL binaries in $DURABLE_POSTGRES_BIN or /usr/lib/postgresql/15/bin "
      "(scripts/deps.sh --test installs postgresql-15)");
}

std::vector<char*> cArgs(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

PostgresServer::PostgresServer() : PostgresServer(Options{}) {}

PostgresServer::PostgresServer(Options options) : options_(std::move(options)), bin_(findBin()) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/durable-pg-XXXXXX";
  if (!::mkdtemp(pattern.data())) {
    throw std::runtime_error(std::string("postgres harness: mkdtemp: ") + std::strerror(errno));
  }
  dir_ = pattern;
  if (::geteuid() == 0) {
    const passwd* pw = ::getpwnam("postgres");
    if (!pw) pw = ::getpwnam("nobody");
    if (!pw) throw std::runtime_error("postgres harness: running as root and no postgres or nobody account to run as");
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    dropPrivileges_ = true;
    if (::chown(dir_.c_str(), uid_, gid_) != 0) {
      throw std::runtime_error(std::string("postgres harness: chown: ") + std::strerror(errno));
    }
  }
  // mkdtemp's directory is 0700; under root the server's account must reach it through the
  // parent, which /tmp allows.
  try {
    initdb();
    port_ = freePort();
    start();
  } catch (...) {
    if (pid_ > 0) kill();
    std::error_code ec;
    fs::remove_all(dir_, ec);
    throw;
  }
}

PostgresServer::~PostgresServer() {
  if (pid_ > 0) {
    signalAll(SIGCONT);
    kill();
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

void PostgresServer::runAs(const std::vector<std::string>& argv, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("postgres harness: fork: ") + std::strerror(errno));
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    if (dropPrivileges_ && (::setgroups(0, nullptr) != 0 || ::setgid(gid_) != 0 || ::setuid(uid_) != 0)) _exit(126);
    auto args = cArgs(argv);
    ::execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("postgres harness: " + argv[0] + " failed:\n" + readAll(log));
  }
}

void PostgresServer::initdb() {
  // --no-sync: the empty cluster need not survive a crash of this machine; fsync stays on for
  // everything the server writes afterwards.
  runAs({(bin_ / "initdb").string(), "-D", (dir_ / "data").string(), "-U", "durable", "-A", "trust", "-E", "UTF8",
         "--locale=C", "--no-sync"},
        dir_ / "initdb.log");
}

void PostgresServer::start() {
  if (pid_ > 0) return;
  std::vector<std::string> argv = {(bin_ / "postgres").string(),
                                   "-D", (dir_ / "data").string(),
                                   "-p", std::to_string(port_),
                                   "-k", dir_.string(),
                                   "-c", "listen_addresses=127.0.0.1",
                                   "-c", "fsync=on",
                                   "-c", "synchronous_commit=on",
                                   "-c", "max_connections=200"};
  for (const auto& s : options_.settings) {
    argv.push_back("-c");
    argv.push_back(s);
  }
  const fs::path log = dir_ / "server.log";
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("postgres harness: fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);  // its own process group, so kill() reaches the backends too
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    if (dropPrivileges_ && (::setgroups(0, nullptr) != 0 || ::setgid(gid_) != 0 || ::setuid(uid_) != 0)) _exit(126);
    auto args = cArgs(argv);
    ::execv(args[0], args.data());
    _exit(127);
  }
  ::setpgid(pid, pid);  // also here: whichever runs first
  pid_ = pid;

  const auto deadline = std::chrono::steady_clock::now() + options_.readyTimeout;
  const std::string conn = connectionString() + " connect_timeout=2";
  while (true) {
    if (PQping(conn.c_str()) == PQPING_OK) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("postgres harness: the server exited while starting:\n" + logText());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill();
      throw std::runtime_error("postgres harness: the server did not accept connections within " +
                               std::to_string(options_.readyTimeout.count()) + " s:\n" + logText());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

namespace {
// The postmaster's children, from /proc. PostgreSQL makes each backend the leader of a
// process group of its own (InitPostmasterChild calls setsid), so a signal to the
// postmaster's group does not reach them.
std::vector<pid_t> childrenOf(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...; comm may hold spaces and parentheses, so read after the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    pid_t ppid = 0;
    if (rest >> state >> ppid && ppid == parent) out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

// Alive: exists and is not a zombie (a zombie holds no shared memory).
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}
}  // namespace

void PostgresServer::signalAll(int sig) {
  if (pid_ <= 0) return;
  // Children first for SIGSTOP, so none notices a stopped postmaster while still running.
  for (pid_t child : childrenOf(pid_)) ::kill(child, sig);
  ::kill(-pid_, sig);
}

void PostgresServer::stop() {
  if (pid_ <= 0) return;
  signalAll(SIGCONT);
  ::kill(pid_, SIGINT);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

void PostgresServer::kill() {
  if (pid_ <= 0) return;
  const std::vector<pid_t> backends = childrenOf(pid_);
  signalAll(SIGKILL);
  for (pid_t b : backends) ::kill(b, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  // The backends are the postmaster's children, not ours: wait until they are gone, or the
  // next postmaster finds their shared memory still attached and refuses to start.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (pid_t b : backends) {
    while (alive(b) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  pid_ = -1;
}

void PostgresServer::pause() { signalAll(SIGSTOP); }
void PostgresServer::resume() { signalAll(SIGCONT); }

std::string PostgresServer::connectionString() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=durable dbname=postgres";
}

std::string PostgresServer::createDatabase() {
  const std::string name = "test" + std::to_string(++databases_);
  PGconn* c = PQconnectdb(connectionString().c_str());
  PGresult* r = PQexec(c, ("CREATE DATABASE " + name).c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  const std::string why = ok ? "" : PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
  if (!ok) throw std::runtime_error("postgres harness: CREATE DATABASE " + name + ": " + why);
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=durable dbname=" + name;
}

PostgresServer& PostgresServer::shared() {
  static PostgresServer server;
  return server;
}

std::string PostgresServer::logText() const { return readAll(dir_ / "server.log"); }

}  // namespace durable_test
