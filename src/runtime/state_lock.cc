#include "runtime/state_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <chrono>
#include <thread>

namespace durable::detail {

namespace {

std::string describe(const std::filesystem::path& dir) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(dir, ec);
  return (ec ? dir : abs).lexically_normal().string();
}

// The holder writes its PID right after it takes the lock, so a reader that comes in between
// sees an empty file for a moment: look again briefly before giving up on the number.
std::string holderPid(int fd) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) {
      std::string pid(buf, static_cast<std::size_t>(n));
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      if (!pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos) return pid;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return "unknown";
}

}  // namespace

StateDirLock::StateDirLock(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create state directory " + describe(dir) + ": " + ec.message());
  const auto file = dir / kFileName;
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw std::runtime_error("cannot open lock file " + describe(file) + ": " + std::strerror(errno));
  }
  int r;
  do {
    r = ::flock(fd_, LOCK_EX | LOCK_NB);
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    const int err = errno;
    std::string message;
    if (err == EWOULDBLOCK) {
      message = "state directory " + describe(dir) + " is in use by another process (pid " + holderPid(fd_) +
                "); one process per state directory: stop that one or use another directory";
    } else {
      message = "cannot lock state directory " + describe(dir) + ": " + std::strerror(err);
    }
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) throw StateDirLocked(message);
    throw std::runtime_error(message);
  }
  // The lock, not the file's content, is what excludes; the PID is for the message above. A
  // PID left behind by a killed process is harmless: the kernel dropped its lock.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error("cannot write lock file " + describe(file) + ": " + std::strerror(err));
  }
}

StateDirLock::~StateDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace durable::detail
