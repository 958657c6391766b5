// Storage fault injection: an SQLite VFS that forwards to the default one and, while armed,
// fails writes, truncates and syncs with an I/O error or a full disk.
//
// Why a VFS and not a hook in our own code: the failure then travels through SQLite's real
// error paths (a half-written WAL frame, a rolled-back transaction), which is what a real disk
// does to us. Only partitions opened with `faultInjection` use it; the server never does.
#pragma once

namespace durable::detail {

enum class StorageFault { kIoError, kDiskFull };

// The registered VFS's name, registering it on first use.
const char* faultVfsName();
// Fails the next `count` writes/syncs (negative: all of them until disarmed); with `syncsOnly`,
// only syncs.
void armStorageFaults(StorageFault fault, int count = -1, bool syncsOnly = false);
// For a sync done outside SQLite (the partition's fdatasync of its WAL): the armed SQLite
// error if this sync is to fail, else 0.
int takeSyncFault();
void disarmStorageFaults();
// How many failures were injected so far.
int injectedStorageFaults();

}  // namespace durable::detail
