#include "runtime/state_lock.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <system_error>

namespace durable::detail {

namespace {

std::string describe(const std::filesystem::path& dir) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(dir, ec);
  return (ec ? dir : abs).lexically_normal().string();
}

std::string readPid(int fd) {
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return {};
  std::string pid(buf, static_cast<std::size_t>(n));
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) return {};
  return pid;
}

// The holder writes its PID right after it takes the lock, so a reader that comes in between
// sees an empty file for a moment: it waits for the holder's write (inotify), for at most
// 100 ms, before giving up on the number. The watch is set before the second read, so a write
// between the two reads is not missed.
std::string holderPid(int fd, const std::filesystem::path& file) {
  if (std::string pid = readPid(fd); !pid.empty()) return pid;
  const int watcher = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (watcher < 0) return "unknown";
  std::string pid;
  if (::inotify_add_watch(watcher, file.c_str(), IN_MODIFY | IN_CLOSE_WRITE) >= 0) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
    while ((pid = readPid(fd)).empty()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{watcher, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
      char events[4096];
      while (::read(watcher, events, sizeof events) > 0) {
        // Drained only to re-arm poll(); which event it was does not matter, the file is read again.
      }
    }
  }
  ::close(watcher);
  return pid.empty() ? "unknown" : pid;
}

}  // namespace

StateDirLock::StateDirLock(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(ErrorCode::kUnavailable, "cannot create state directory " + describe(dir) + ": " + ec.message());
  const auto file = dir / kFileName;
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw Error(ErrorCode::kUnavailable, "cannot open lock file " + describe(file) + ": " + std::strerror(errno));
  }
  int r;
  do {
    r = ::flock(fd_, LOCK_EX | LOCK_NB);
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    const int err = errno;
    std::string message;
    if (err == EWOULDBLOCK) {
      message = "state directory " + describe(dir) + " is in use by another process (pid " + holderPid(fd_, file) +
                "); one process per state directory: stop that one or use another directory";
    } else {
      message = "cannot lock state directory " + describe(dir) + ": " + std::strerror(err);
    }
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) throw StateDirLocked(message);
    throw Error(ErrorCode::kUnavailable, message);
  }
  // The lock, not the file's content, is what excludes; the PID is for the message above. A
  // PID left behind by a killed process is harmless: the kernel dropped its lock.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw Error(ErrorCode::kUnavailable, "cannot write lock file " + describe(file) + ": " + std::strerror(err));
  }
}

StateDirLock::~StateDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace durable::detail
