// Making files and their directory entries durable (the storage engine's WAL, backups).
#pragma once

#include <durable/error.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace durable::detail {

// fdatasync, retried on EINTR: 0, or the errno it failed with.
inline int syncDescriptor(int fd) {
  for (;;) {
    if (::fdatasync(fd) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

// Makes a file's directory entry durable, so a new or renamed file survives a power cut.
inline void syncDirectoryOf(const std::filesystem::path& file) {
  auto dir = file.parent_path();
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::kUnavailable, "cannot open " + dir.string() + ": " + std::strerror(errno));
  int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  if (rc) throw Error(ErrorCode::kUnavailable, "cannot sync " + dir.string() + ": " + std::strerror(rc));
}

}  // namespace durable::detail
