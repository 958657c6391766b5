#include "storage/fault_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace durable::detail {

namespace {

std::atomic<int> g_error{0};      // the SQLite error to return, 0 when disarmed
std::atomic<int> g_remaining{0};  // how many more failures; negative: until disarmed
std::atomic<int> g_injected{0};
std::atomic<bool> g_syncsOnly{false};

sqlite3_vfs* g_base = nullptr;
sqlite3_vfs g_vfs;

// Returns the armed error for this call, or 0 to let it through.
int takeFault() {
  int error = g_error.load();
  if (!error) return 0;
  int left = g_remaining.load();
  while (left != 0) {
    if (left < 0 || g_remaining.compare_exchange_weak(left, left - 1)) {
      g_injected.fetch_add(1);
      return error;
    }
  }
  return 0;
}

struct FaultFile {
  sqlite3_file base;  // must be first: SQLite sees a FaultFile as a sqlite3_file
  sqlite3_file* real;
};

sqlite3_file* real(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f)->real; }

int xClose(sqlite3_file* f) {
  int rc = real(f)->pMethods ? real(f)->pMethods->xClose(real(f)) : SQLITE_OK;
  sqlite3_free(real(f));
  return rc;
}
int xRead(sqlite3_file* f, void* p, int n, sqlite3_int64 off) { return real(f)->pMethods->xRead(real(f), p, n, off); }
int xWrite(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
  if (int e = g_syncsOnly.load() ? 0 : takeFault()) return e;
  return real(f)->pMethods->xWrite(real(f), p, n, off);
}
int xTruncate(sqlite3_file* f, sqlite3_int64 size) {
  if (int e = g_syncsOnly.load() ? 0 : takeFault()) return e;
  return real(f)->pMethods->xTruncate(real(f), size);
}
int xSync(sqlite3_file* f, int flags) {
  if (int e = takeSyncFault()) return e;
  return real(f)->pMethods->xSync(real(f), flags);
}
int xFileSize(sqlite3_file* f, sqlite3_int64* size) { return real(f)->pMethods->xFileSize(real(f), size); }
int xLock(sqlite3_file* f, int l) { return real(f)->pMethods->xLock(real(f), l); }
int xUnlock(sqlite3_file* f, int l) { return real(f)->pMethods->xUnlock(real(f), l); }
int xCheckReservedLock(sqlite3_file* f, int* out) { return real(f)->pMethods->xCheckReservedLock(real(f), out); }
int xFileControl(sqlite3_file* f, int op, void* arg) { return real(f)->pMethods->xFileControl(real(f), op, arg); }
int xSectorSize(sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); }
int xDeviceCharacteristics(sqlite3_file* f) { return real(f)->pMethods->xDeviceCharacteristics(real(f)); }
int xShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** p) {
  return real(f)->pMethods->xShmMap(real(f), region, size, extend, p);
}
int xShmLock(sqlite3_file* f, int offset, int n, int flags) { return real(f)->pMethods->xShmLock(real(f), offset, n, flags); }
void xShmBarrier(sqlite3_file* f) { real(f)->pMethods->xShmBarrier(real(f)); }
int xShmUnmap(sqlite3_file* f, int del) { return real(f)->pMethods->xShmUnmap(real(f), del); }
int xFetch(sqlite3_file* f, sqlite3_int64 off, int n, void** p) { return real(f)->pMethods->xFetch(real(f), off, n, p); }
int xUnfetch(sqlite3_file* f, sqlite3_int64 off, void* p) { return real(f)->pMethods->xUnfetch(real(f), off, p); }

const sqlite3_io_methods kMethods = {
    3,       xClose,     xRead,      xWrite,    xTruncate,   xSync,    xFileSize,
    xLock,   xUnlock,    xCheckReservedLock,    xFileControl,          xSectorSize,
    xDeviceCharacteristics, xShmMap, xShmLock,  xShmBarrier, xShmUnmap, xFetch,
    xUnfetch,
};

int xOpen(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* outFlags) {
  auto* ff = reinterpret_cast<FaultFile*>(file);
  ff->base.pMethods = nullptr;
  ff->real = static_cast<sqlite3_file*>(sqlite3_malloc(g_base->szOsFile));
  if (!ff->real) return SQLITE_NOMEM;
  std::memset(ff->real, 0, static_cast<std::size_t>(g_base->szOsFile));
  int rc = g_base->xOpen(g_base, name, ff->real, flags, outFlags);
  if (rc != SQLITE_OK) {
    sqlite3_free(ff->real);
    ff->real = nullptr;
    return rc;
  }
  ff->base.pMethods = &kMethods;
  return SQLITE_OK;
}

int xDelete(sqlite3_vfs*, const char* name, int syncDir) { return g_base->xDelete(g_base, name, syncDir); }
int xAccess(sqlite3_vfs*, const char* name, int flags, int* out) { return g_base->xAccess(g_base, name, flags, out); }
int xFullPathname(sqlite3_vfs*, const char* name, int n, char* out) { return g_base->xFullPathname(g_base, name, n, out); }
void* xDlOpen(sqlite3_vfs*, const char* name) { return g_base->xDlOpen(g_base, name); }
void xDlError(sqlite3_vfs*, int n, char* msg) { g_base->xDlError(g_base, n, msg); }
void (*xDlSym(sqlite3_vfs*, void* h, const char* sym))(void) { return g_base->xDlSym(g_base, h, sym); }
void xDlClose(sqlite3_vfs*, void* h) { g_base->xDlClose(g_base, h); }
int xRandomness(sqlite3_vfs*, int n, char* out) { return g_base->xRandomness(g_base, n, out); }
int xSleep(sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); }
int xCurrentTime(sqlite3_vfs*, double* t) { return g_base->xCurrentTime(g_base, t); }
int xGetLastError(sqlite3_vfs*, int n, char* out) { return g_base->xGetLastError(g_base, n, out); }
int xCurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* t) { return g_base->xCurrentTimeInt64(g_base, t); }

}  // namespace

const char* faultVfsName() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_base = sqlite3_vfs_find(nullptr);
    std::memset(&g_vfs, 0, sizeof g_vfs);
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(sizeof(FaultFile));
    g_vfs.mxPathname = g_base->mxPathname;
    g_vfs.zName = "durable-faults";
    g_vfs.xOpen = xOpen;
    g_vfs.xDelete = xDelete;
    g_vfs.xAccess = xAccess;
    g_vfs.xFullPathname = xFullPathname;
    g_vfs.xDlOpen = xDlOpen;
    g_vfs.xDlError = xDlError;
    g_vfs.xDlSym = xDlSym;
    g_vfs.xDlClose = xDlClose;
    g_vfs.xRandomness = xRandomness;
    g_vfs.xSleep = xSleep;
    g_vfs.xCurrentTime = xCurrentTime;
    g_vfs.xGetLastError = xGetLastError;
    g_vfs.xCurrentTimeInt64 = xCurrentTimeInt64;
    sqlite3_vfs_register(&g_vfs, 0);
  });
  return "durable-faults";
}

int takeSyncFault() {
  int e = takeFault();
  return e == SQLITE_FULL ? SQLITE_IOERR_FSYNC : e;
}

void armStorageFaults(StorageFault fault, int count, bool syncsOnly) {
  g_syncsOnly.store(syncsOnly);
  g_remaining.store(count);
  g_error.store(fault == StorageFault::kDiskFull ? SQLITE_FULL : SQLITE_IOERR_WRITE);
}

void disarmStorageFaults() {
  g_error.store(0);
  g_syncsOnly.store(false);
  g_remaining.store(0);
}

int injectedStorageFaults() { return g_injected.load(); }

}  // namespace durable::detail
