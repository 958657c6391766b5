// Backups of a state directory: one tar file holding a copy of meta.sqlite and of every
// partition, each taken with SQLite's online backup API, so a server may keep writing while
// it is made. Each database is copied as of one moment; an object lives in one partition, so
// every object's keys and alarm are restored as they were at one commit.
#pragma once

#include <cstdint>
#include <filesystem>

namespace durable::detail {

struct BackupSummary {
  std::size_t databases = 0;
  std::uint64_t bytes = 0;  // of the databases, before packing
};

// Writes the backup of `stateDir` to `to`: into a temporary file beside it, synced, then
// renamed, so `to` is either the old file or a whole backup. Throws Error (kUnavailable) with
// the reason when it cannot read a database or write the file.
BackupSummary backupState(const std::filesystem::path& stateDir, const std::filesystem::path& to);

// Unpacks a backup into `stateDir`, which must hold no state (no meta.sqlite, no partitions):
// Error (kFailedPrecondition) if it does, Error (kInvalidArgument) when `from` is not a backup
// this format wrote or a database in it fails SQLite's integrity check; then nothing of it is
// left in `stateDir`. The caller holds the directory's lock.
BackupSummary restoreState(const std::filesystem::path& from, const std::filesystem::path& stateDir);

}  // namespace durable::detail
