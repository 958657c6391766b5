// Backups of a state directory: one tar file holding a copy of meta.sqlite and of every
// partition, each taken with SQLite's online backup API, so a server may keep writing while
// it is made. Each database is copied as of one moment; an object lives in one partition, so
// every object's keys and alarm are restored as they were at one commit.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace durable::detail {

struct BackupSummary {
  std::size_t databases = 0;
  std::uint64_t bytes = 0;  // of the databases, before packing
};

// `to` as the absolute path of a backup of `stateDir`, or Error (kInvalidArgument) saying why
// not: empty, a control character in it, no file name, a directory, its directory missing, or
// inside the state directory.
std::filesystem::path checkBackupTarget(const std::filesystem::path& stateDir, const std::string& to);

// Writes the backup of `stateDir` to `to` (checkBackupTarget() first): into a directory of its
// own beside it, synced, then renamed, so `to` is either the old file or a whole backup, mode
// 0600. Throws Error (kUnavailable) with the reason when it cannot read a database or write.
BackupSummary backupState(const std::filesystem::path& stateDir, const std::string& to);

// Unpacks a backup into `stateDir`, which must hold no state (no meta.sqlite, no partitions):
// Error (kFailedPrecondition) if it does, Error (kInvalidArgument) when `from` is not a backup
// this format wrote or a database in it fails SQLite's integrity check; then nothing of it is
// left in `stateDir`. The caller holds the directory's lock.
BackupSummary restoreState(const std::filesystem::path& from, const std::filesystem::path& stateDir);

// For each namespace id in `namespaces`, how many objects have stored keys or an alarm, read
// from the partitions' files on the calling thread (a read transaction per file, alongside the
// server's writers): what GET /admin/namespaces shows without holding a shard.
std::vector<std::size_t> countObjectsInState(const std::filesystem::path& stateDir,
                                             const std::vector<std::int64_t>& namespaces);

}  // namespace durable::detail
