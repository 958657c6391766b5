// One process per state directory: an exclusive flock on <dir>/durable.lock, held for the
// life of the object. Two processes serving the same objects would each believe they hold
// the only live instance of an ID, and acknowledged writes would be lost.
#pragma once

#include <durable/error.h>

#include <filesystem>
#include <string>

namespace durable::detail {

class StateDirLocked : public Error {
 public:
  explicit StateDirLocked(const std::string& message) : Error(ErrorCode::kFailedPrecondition, message) {}
};

class StateDirLock {
 public:
  static constexpr const char* kFileName = "durable.lock";

  // Creates `dir` if needed, takes the lock without waiting and writes this process's PID
  // into the lock file. Throws StateDirLocked naming the directory and the holder's PID when
  // another process (or another StateDirLock in this one) holds it, Error (kUnavailable) when
  // the directory or file cannot be created.
  explicit StateDirLock(const std::filesystem::path& dir);
  ~StateDirLock();
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace durable::detail
