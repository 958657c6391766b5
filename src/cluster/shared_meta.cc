#include "cluster/shared_meta.h"

#include "storage/pg_connection.h"
#include "storage/postgres_engine.h"

#include <durable/error.h>

#include <fstream>
#include <iterator>
#include <sstream>

namespace durable::detail {

namespace {
constexpr std::int64_t kMetaLockKey = 0x6d657461;  // "meta"

std::string readFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(ErrorCode::kUnavailable, "cannot read " + p.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void writeFile(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) throw Error(ErrorCode::kUnavailable, "cannot write " + p.string());
}
}  // namespace

void withSharedMeta(const std::string& url, int slots, const std::filesystem::path& workDir,
                    const std::function<void(config::MetaStore&, PgBlocking&)>& change) {
  PgBlocking db(url);
  ensurePostgresSchema(db, slots);
  std::filesystem::create_directories(workDir);
  const auto file = workDir / "meta.sqlite";
  db.script("BEGIN");
  try {
    db.run("SELECT pg_advisory_xact_lock($1::int8)", PgParams().int8(kMetaLockKey));
    auto current = db.run("SELECT meta FROM durable_meta WHERE id = 1");
    // The local copy is only a working copy: the cluster's, or none for a new cluster.
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::filesystem::remove(file.string() + suffix);
    }
    if (PQntuples(current.get()) > 0) writeFile(file, pgBytes(current.get(), 0, 0));
    {
      config::MetaStore meta(workDir);
      change(meta, db);
    }  // closed: its WAL is checkpointed into the file
    db.run("INSERT INTO durable_meta(id, meta) VALUES(1, $1::bytea) ON CONFLICT (id) DO UPDATE SET meta = excluded.meta",
           PgParams().bytes(readFile(file)));
    db.script("COMMIT");
  } catch (...) {
    PQclear(PQexec(db.raw(), "ROLLBACK"));
    throw;
  }
}

}  // namespace durable::detail
