#include "admin/backup.h"

#include "base/file_sync.h"
#include "storage/sqlite_engine.h"

#include <durable/error.h>

#include <archive.h>
#include <archive_entry.h>
#include <sqlite3.h>

#include <boost/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

namespace durable::detail {

namespace {

namespace fs = std::filesystem;

// The first entry of every backup: what wrote it. Its absence says a file is not one.
constexpr const char* kManifest = "durable-backup.json";
constexpr int kFormat = 1;

[[noreturn]] void unavailable(const std::string& message) { throw Error(ErrorCode::kUnavailable, message); }

// The databases of a state directory, by their names inside it and inside the backup.
std::vector<std::string> databasesOf(const fs::path& stateDir) {
  if (!fs::exists(stateDir / "meta.sqlite")) {
    unavailable(stateDir.string() + " holds no durable state (no meta.sqlite)");
  }
  // SQLite-backed objects' own files first: a file is never ahead of its partition's log, and
  // copied before the log it stays so in the backup.
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(stateDir / "sql", ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (it->is_regular_file() && name.ends_with(".sqlite")) {
      names.push_back(it->path().lexically_relative(stateDir).generic_string());
    }
  }
  ec.clear();
  names.push_back("meta.sqlite");
  for (const auto& e : fs::directory_iterator(stateDir / "partitions", ec)) {
    const auto name = e.path().filename().string();
    if (e.is_regular_file() && name.ends_with(".sqlite")) names.push_back("partitions/" + name);
  }
  return names;
}

struct Db {
  sqlite3* db = nullptr;
  ~Db() { sqlite3_close(db); }
};

void openDb(Db& d, const fs::path& file, int flags) {
  if (sqlite3_open_v2(file.c_str(), &d.db, flags, nullptr) != SQLITE_OK) {
    unavailable("cannot open " + file.string() + ": " + (d.db ? sqlite3_errmsg(d.db) : "out of memory"));
  }
  sqlite3_busy_timeout(d.db, 10'000);
}

// SQLite's online backup of `from` into the new file `to`, all pages in one step: one read
// transaction, so one moment of the database, while its server's writers go on (WAL).
void copyDatabase(const fs::path& from, const fs::path& to) {
  Db src, dst;
  openDb(src, from, SQLITE_OPEN_READWRITE);
  openDb(dst, to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  sqlite3_backup* b = sqlite3_backup_init(dst.db, "main", src.db, "main");
  if (!b) unavailable("cannot back up " + from.string() + ": " + sqlite3_errmsg(dst.db));
  int rc;
  while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED) sqlite3_sleep(20);
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) unavailable("cannot back up " + from.string() + ": " + sqlite3_errstr(rc));
}

struct Archive {
  archive* a = nullptr;
  bool reading = false;
  ~Archive() {
    if (!a) return;
    if (reading) {
      archive_read_free(a);
    } else {
      archive_write_free(a);
    }
  }
};

// A regular file's header, mode 0600: a backup holds every object's data.
void writeHeader(archive* a, const std::string& name, std::uint64_t size) {
  std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e(archive_entry_new(), archive_entry_free);
  archive_entry_set_pathname(e.get(), name.c_str());
  archive_entry_set_size(e.get(), static_cast<la_int64_t>(size));
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_perm(e.get(), 0600);
  archive_entry_set_mtime(e.get(), ::time(nullptr), 0);
  if (archive_write_header(a, e.get()) != ARCHIVE_OK) unavailable(std::string("backup: ") + archive_error_string(a));
}

void writeEntry(archive* a, const std::string& name, const fs::path& file, std::uint64_t size) {
  writeHeader(a, name, size);
  std::ifstream in(file, std::ios::binary);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = in.gcount();
    if (n > 0 && archive_write_data(a, buf.data(), static_cast<std::size_t>(n)) != n) {
      unavailable(std::string("backup: ") + archive_error_string(a));
    }
  }
}

void writeText(archive* a, const std::string& name, const std::string& text) {
  writeHeader(a, name, text.size());
  if (archive_write_data(a, text.data(), text.size()) != static_cast<la_ssize_t>(text.size())) {
    unavailable(std::string("backup: ") + archive_error_string(a));
  }
}

void syncPath(const fs::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) unavailable("cannot open " + file.string() + ": " + std::strerror(errno));
  const int rc = syncDescriptor(fd);
  ::close(fd);
  if (rc) unavailable("cannot sync " + file.string() + ": " + std::strerror(rc));
}

// The number of databases a manifest of this format announces.
template <class Refuse>
std::size_t manifestDatabases(const std::string& text, Refuse refuse) {
  boost::system::error_code ec;
  const auto json = boost::json::parse(text, ec);
  const auto* o = ec ? nullptr : json.if_object();
  const auto* format = o ? o->if_contains("format") : nullptr;
  const auto* databases = o ? o->if_contains("databases") : nullptr;
  if (!format || !format->is_int64() || !databases || !databases->is_int64() || databases->as_int64() < 1) {
    throw refuse("its manifest is not one durable writes");
  }
  if (format->as_int64() != kFormat) {
    throw refuse("it is of format " + std::to_string(format->as_int64()) + ", this durable reads format " +
                 std::to_string(kFormat));
  }
  return static_cast<std::size_t>(databases->as_int64());
}

// Removes what it names when it goes, unless released.
struct Cleanup {
  std::vector<fs::path> paths;
  ~Cleanup() {
    std::error_code ec;
    for (const auto& p : paths) fs::remove_all(p, ec);
  }
};

}  // namespace

fs::path checkBackupTarget(const fs::path& stateDir, const std::string& to) {
  auto refuse = [&to](const std::string& why) {
    return Error(ErrorCode::kInvalidArgument, "backup target '" + to + "': " + why);
  };
  if (to.empty()) throw refuse("empty");
  for (unsigned char c : to) {
    // A NUL would cut the path short in the system calls; other control characters are typos.
    if (c < 0x20 || c == 0x7f) throw refuse("it holds a control character");
  }
  const fs::path target = fs::absolute(to).lexically_normal();
  const auto name = target.filename().string();
  if (name.empty() || name == "." || name == "..") throw refuse("it names no file");
  std::error_code ec;
  if (!fs::is_directory(target.parent_path(), ec)) {
    throw refuse("its directory " + target.parent_path().string() + " does not exist");
  }
  if (fs::is_directory(target, ec)) throw refuse("it is a directory");
  // Inside the state directory a backup would be written over the databases it copies.
  const fs::path state = fs::weakly_canonical(fs::absolute(stateDir), ec);
  const fs::path where = fs::weakly_canonical(target, ec);
  const auto rel = where.lexically_relative(state);
  if (!state.empty() && !rel.empty() && *rel.begin() != "..") {
    throw refuse("it is inside the state directory " + state.string());
  }
  return target;
}

BackupSummary backupState(const fs::path& stateDir, const std::string& to) {
  const fs::path target = checkBackupTarget(stateDir, to);
  const auto names = databasesOf(stateDir);
  // A directory of this backup's own beside the target: concurrent backups never share one,
  // and the cleanup removes only what this call made.
  std::string pattern = (target.parent_path() / ("." + target.filename().string() + ".partial-XXXXXX")).string();
  if (!::mkdtemp(pattern.data())) unavailable("cannot create a directory beside " + target.string() + ": " + std::strerror(errno));
  const fs::path temp = pattern;
  Cleanup cleanup{{temp}};
  std::error_code ec;

  BackupSummary summary;
  std::vector<std::pair<std::string, fs::path>> copies;
  for (const auto& name : names) {
    const fs::path copy = temp / std::to_string(copies.size());
    // Retention may remove a snapshot between the listing and its copy: it is not needed then.
    if (name.find(".snapshots/") != std::string::npos && !fs::exists(stateDir / name, ec)) continue;
    copyDatabase(stateDir / name, copy);
    summary.bytes += fs::file_size(copy, ec);
    copies.emplace_back(name, copy);
  }
  summary.databases = copies.size();

  const fs::path tar = temp / "backup.tar";
  Archive out;
  out.a = archive_write_new();
  archive_write_set_format_pax_restricted(out.a);
  if (archive_write_open_filename(out.a, tar.c_str()) != ARCHIVE_OK) {
    unavailable("cannot write " + tar.string() + ": " + archive_error_string(out.a));
  }
  const auto createdMs =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  writeText(out.a, kManifest,
            "{\"format\":" + std::to_string(kFormat) + ",\"createdMs\":" + std::to_string(createdMs) +
                ",\"databases\":" + std::to_string(copies.size()) + "}\n");
  for (const auto& [name, copy] : copies) writeEntry(out.a, name, copy, fs::file_size(copy));
  if (archive_write_close(out.a) != ARCHIVE_OK) unavailable(std::string("backup: ") + archive_error_string(out.a));
  // It holds every object's data: readable by its owner only, as the state directory is.
  ::chmod(tar.c_str(), 0600);
  syncPath(tar);
  fs::rename(tar, target, ec);
  if (ec) unavailable("cannot write " + target.string() + ": " + ec.message());
  syncDirectoryOf(target);
  return summary;
}

std::vector<std::size_t> countObjectsInState(const fs::path& stateDir, const std::vector<std::int64_t>& namespaces) {
  std::vector<std::size_t> counts(namespaces.size());
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(stateDir / "partitions", ec)) {
    if (!e.is_regular_file() || e.path().extension() != ".sqlite") continue;
    Db db;
    openDb(db, "file:" + e.path().string() + "?mode=ro", SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db.db, SqliteEngine::kCountObjectsSql, -1, &q, nullptr) != SQLITE_OK) {
      unavailable("cannot count the objects of " + e.path().string() + ": " + sqlite3_errmsg(db.db));
    }
    for (std::size_t i = 0; i < namespaces.size(); ++i) {
      sqlite3_bind_int64(q, 1, namespaces[i]);
      if (sqlite3_step(q) == SQLITE_ROW) counts[i] += static_cast<std::size_t>(sqlite3_column_int64(q, 0));
      sqlite3_reset(q);
    }
    sqlite3_finalize(q);
  }
  return counts;
}

BackupSummary restoreState(const fs::path& from, const fs::path& stateDir) {
  for (const char* existing : {"meta.sqlite", "partitions", "sql"}) {
    if (fs::exists(stateDir / existing)) {
      throw Error(ErrorCode::kFailedPrecondition, stateDir.string() + " already holds durable state (" + existing +
                                                      "): restore into a new directory");
    }
  }
  Archive in;
  in.a = archive_read_new();
  in.reading = true;
  archive_read_support_format_tar(in.a);
  if (archive_read_open_filename(in.a, from.c_str(), 1 << 16) != ARCHIVE_OK) {
    throw Error(ErrorCode::kInvalidArgument,
                from.string() + " is not a durable backup (durable backup --to FILE writes one): " +
                    archive_error_string(in.a));
  }
  auto notABackup = [&](const std::string& why) {
    return Error(ErrorCode::kInvalidArgument, from.string() + " is not a durable backup: " + why);
  };

  const fs::path staging = stateDir / ".restoring";
  Cleanup cleanup{{staging}};
  std::error_code ec;
  fs::create_directories(staging / "partitions", ec);
  if (ec) unavailable("cannot create " + staging.string() + ": " + ec.message());

  static const std::regex kPartition("partitions/p[0-9]{1,4}\\.sqlite");
  // An object's file, or a snapshot of it (storage/object_sql.h).
  static const std::regex kObjectFile(
      "sql/-?[0-9]{1,19}/[0-9a-f]{2}/[0-9a-f]{64}(\\.sqlite|\\.snapshots/[0-9a-f]{16}-[0-9a-f]{16}\\.sqlite)");
  BackupSummary summary;
  bool manifest = false, meta = false;
  std::size_t expected = 0;
  archive_entry* e = nullptr;
  for (;;) {
    const int rc = archive_read_next_header(in.a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK) throw notABackup(archive_error_string(in.a));
    const std::string name = archive_entry_pathname(e);
    if (archive_entry_filetype(e) != AE_IFREG) throw notABackup("'" + name + "' is not a regular file");
    if (!manifest) {
      if (name != kManifest) throw notABackup("it does not start with " + std::string(kManifest));
      manifest = true;
      std::string text;
      char buf[4096];
      la_ssize_t n;
      while ((n = archive_read_data(in.a, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
      expected = manifestDatabases(text, notABackup);
      continue;
    }
    if (name != "meta.sqlite" && !std::regex_match(name, kPartition) && !std::regex_match(name, kObjectFile)) {
      throw notABackup("unexpected entry '" + name + "'");
    }
    meta = meta || name == "meta.sqlite";
    const fs::path file = staging / name;
    fs::create_directories(file.parent_path(), ec);
    if (ec) unavailable("cannot create " + file.parent_path().string() + ": " + ec.message());
    {
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      std::vector<char> buf(1 << 20);
      for (;;) {
        const la_ssize_t n = archive_read_data(in.a, buf.data(), buf.size());
        if (n < 0) throw notABackup(archive_error_string(in.a));
        if (n == 0) break;
        out.write(buf.data(), n);
        summary.bytes += static_cast<std::uint64_t>(n);
      }
      if (!out.flush()) unavailable("cannot write " + file.string());
    }
    Db check;
    // immutable: no -shm or -wal is made beside the file by looking at it.
    openDb(check, "file:" + file.string() + "?immutable=1", SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
    sqlite3_stmt* q = nullptr;
    std::string verdict;
    if (sqlite3_prepare_v2(check.db, "PRAGMA quick_check", -1, &q, nullptr) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW) {
      verdict = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    } else {
      verdict = sqlite3_errmsg(check.db);
    }
    sqlite3_finalize(q);
    if (verdict != "ok") throw notABackup(name + " fails SQLite's integrity check: " + verdict);
    syncPath(file);
    ++summary.databases;
  }
  // The objects' directories, every level, so that their files survive a power cut too.
  for (auto it = fs::recursive_directory_iterator(staging / "sql", ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_directory()) syncDirectoryOf(it->path() / "x");
  }
  ec.clear();
  if (!manifest) throw notABackup("it is empty");
  if (!meta) throw notABackup("it holds no meta.sqlite");
  if (summary.databases != expected) {
    throw notABackup("its manifest counts " + std::to_string(expected) + " databases, it holds " +
                     std::to_string(summary.databases));
  }

  // Objects' files and partitions first, meta.sqlite last: a directory with meta.sqlite is one
  // with state.
  if (fs::exists(staging / "sql")) {
    fs::rename(staging / "sql", stateDir / "sql", ec);
    if (ec) unavailable("cannot move " + (staging / "sql").string() + ": " + ec.message());
    syncDirectoryOf(stateDir / "sql" / "x");
  }
  if (fs::exists(staging / "partitions")) {
    fs::rename(staging / "partitions", stateDir / "partitions", ec);
    if (ec) unavailable("cannot move " + (staging / "partitions").string() + ": " + ec.message());
    syncDirectoryOf(stateDir / "partitions" / "x");
  }
  fs::rename(staging / "meta.sqlite", stateDir / "meta.sqlite", ec);
  if (ec) {
    // Not half restored: without meta.sqlite the partitions go too, so a retry finds it new.
    std::error_code ignored;
    fs::remove_all(stateDir / "partitions", ignored);
    fs::remove_all(stateDir / "sql", ignored);
    unavailable("cannot move " + (staging / "meta.sqlite").string() + ": " + ec.message());
  }
  syncDirectoryOf(stateDir / "meta.sqlite");
  return summary;
}

}  // namespace durable::detail
