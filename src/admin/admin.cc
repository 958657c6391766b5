#include "admin/admin.h"
#include "cluster/status.h"

#include "admin/backup.h"
#include "admin/inspector_page.h"
#include "base/encoding.h"
#include "base/utf8.h"
#include "runtime/runtime.h"
#include "storage/object_sql_reader.h"
#include "storage/object_store.h"

#include <durable/error.h>

#include <boost/asio/ip/address.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <iterator>
#include <memory>
#include <mutex>
#include <thread>

namespace durable::detail {

namespace {

// Runs `work` on `target`'s thread and answers on the calling shard's: engines and objects
// are touched by their own shard only. `work` is a named std::function, not a lambda made in
// the co_await expression: g++ 12 may destroy such a temporary twice.
template <class T>
Future<T> onShard(Shard& target, const std::function<Task<T>()>& work) {
  Promise<T> promise;
  Shard* home = Shard::current();
  postTo(target, [promise, home, work]() mutable {
    Task<T> task = [](std::function<Task<T>()> w) -> Task<T> { co_return co_await w(); }(std::move(work));
    spawn<T>(std::move(task), [promise, home](Result<T> result) mutable {
      postTo(*home, [promise, result = std::move(result)]() mutable {
        if (!result.ok()) return promise.setError(result.error());
        promise.setValue(std::move(result).value());
      });
    });
  });
  return promise.future();
}

// Compares without stopping at the first difference: how long it takes says nothing of where
// a guessed token went wrong.
bool sameSecret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

Response errorJson(int status, std::string message) {
  return Response::json(boost::json::object{{"error", std::move(message)}}, {.status = status});
}

// A refusal that becomes a JSON error response (the notFound and error paths below).
struct AdminError {
  int status;
  std::string message;
};

// A key: as text when it is UTF-8, else as base64.
void putKey(boost::json::object& o, const std::string& key) {
  if (validUtf8(key)) {
    o["key"] = key;
  } else {
    o["keyBase64"] = base64(key);
  }
}

// A stored value as JSON: its type, and the value itself (bytes as base64).
void putValue(boost::json::object& o, std::string_view encoded) {
  static constexpr const char* kTypes[] = {"null", "bool", "int", "double", "string", "bytes", "json"};
  Value v;
  try {
    v = Value::decode(encoded);
  } catch (const std::exception&) {
    if (auto repaired = decodeRepairingText(encoded)) {
      v = std::move(*repaired);
    } else {
      o["type"] = "undecodable";
      o["base64"] = base64(encoded);
      return;
    }
  }
  o["type"] = kTypes[static_cast<int>(v.type())];
  if (v.type() == Value::Type::kBytes) {
    o["base64"] = base64(v.as<Bytes>().data);
  } else {
    o["value"] = v.toJson();
  }
}

std::size_t pageLimit(Context& c) {
  const auto text = c.query("limit");
  if (!text) return 100;
  std::size_t n = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
  if (ec != std::errc() || end != text->data() + text->size() || n < 1 || n > 1000) {
    throw AdminError{400, "limit wants a whole number from 1 to 1000, got '" + *text + "'"};
  }
  return n;
}

// A SQLite-backed object's file, or nullopt (another class, or an engine without files).
std::optional<std::filesystem::path> sqlFile(Runtime& runtime, const NamespaceImpl& ns, const ObjectId::Raw& id) {
  if (!ns.sqliteBacked || runtime.options().engine) return std::nullopt;
  return sqlFileOf(runtime.options().persistDir, ns.nsId, ObjectId(id, std::nullopt).toString());
}

// A SQLite-backed object keeps its keys in its own file: the partition knows only its alarm
// and that it has a log.
void addSqlFacts(Runtime& runtime, const NamespaceImpl& ns, StoredObject& o) {
  const auto file = sqlFile(runtime, ns, o.id);
  if (!file) return;
  ObjectSqlReader reader(*file);
  o.keys = reader.kvSize().first;
  o.bytes = ObjectSqlReader::bytesOnDisk(*file);
}

boost::json::object describe(const StoredObject& o, bool live, const std::optional<std::string>& liveName) {
  boost::json::object j;
  j["id"] = ObjectId(o.id, std::nullopt).toString();
  const auto& name = o.name ? o.name : liveName;
  if (name) {
    j["name"] = *name;
  } else {
    j["name"] = nullptr;
  }
  j["live"] = live;
  j["keys"] = o.keys;
  j["bytes"] = o.bytes;
  if (o.alarm) {
    j["alarm"] = *o.alarm;
  } else {
    j["alarm"] = nullptr;
  }
  return j;
}

}  // namespace

namespace {

const NamespaceImpl& findNamespace(Runtime& runtime, const std::string& name) {
  std::string known;
  for (const NamespaceImpl* ns : runtime.namespaces()) {
    if (ns->binding == name || ns->className == name) return *ns;
    known += (known.empty() ? "" : ", ") + ns->binding;
  }
  throw AdminError{404, "no namespace '" + name + "' (bindings: " + known + ")"};
}

ObjectId parseId(const NamespaceImpl& ns, const std::string& hex, std::string_view what) {
  try {
    return makeNamespace(&ns).idFromString(hex);
  } catch (const std::exception& e) {
    throw AdminError{400, std::string(what) + ": " + e.what()};
  }
}

// A handler whose AdminError becomes its JSON answer.
Handler guarded(std::function<Task<Response>(Context&)> body) {
  return [body = std::move(body)](Context& c) -> Task<Response> {
    std::optional<AdminError> refused;
    try {
      co_return co_await body(c);
    } catch (const AdminError& e) {
      refused = e;
    }
    co_return errorJson(refused->status, refused->message);
  };
}

// Work that must not hold a shard thread (a backup, a count over every row) on threads of its
// own, each posting its answer back to the calling shard. The admin Worker owns it and joins
// every thread when it goes, which is before the runtime does.
class OffShard {
 public:
  ~OffShard() {
    std::lock_guard lock(mu_);
    for (auto& job : jobs_) job.thread.join();
  }

  // `work` named by the caller, not a temporary in its co_await (g++ 12: see onShard).
  template <class T>
  Future<T> run(const std::function<T()>& work) {
    Promise<T> promise;
    Shard* home = Shard::current();
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::lock_guard lock(mu_);
    // Joined as soon as they have ended: an ended thread keeps its stack until then.
    std::erase_if(jobs_, [](Job& job) {
      if (!job.done->load()) return false;
      job.thread.join();
      return true;
    });
    jobs_.push_back({std::thread([promise, home, work, done]() mutable {
                       std::optional<T> value;
                       std::exception_ptr error;
                       try {
                         value.emplace(work());
                       } catch (...) {
                         error = std::current_exception();
                       }
                       postTo(*home, [promise, value = std::move(value), error]() mutable {
                         if (error) return promise.setError(error);
                         promise.setValue(std::move(*value));
                       });
                       done->store(true);
                     }),
                     done});
    return promise.future();
  }

 private:
  struct Job {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::mutex mu_;
  std::vector<Job> jobs_;
};

// A Host header naming this machine: a loopback address or localhost, with any port.
bool loopbackHost(std::string_view host) {
  if (host.starts_with("[")) {
    const auto close = host.find(']');
    return close != std::string_view::npos && host.substr(1, close - 1) == "::1";
  }
  host = host.substr(0, host.find(':'));
  if (host == "localhost") return true;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(host), ec);
  return !ec && address.is_loopback();
}

bool startsWithIgnoringCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    char p = prefix[i];
    if (p >= 'A' && p <= 'Z') p = static_cast<char>(p - 'A' + 'a');
    if (c != p) return false;
  }
  return true;
}

struct Listed {
  StoredObject stored;
  bool live = false;
  std::optional<std::string> liveName;
};

}  // namespace

Worker makeAdminWorker(Runtime& runtime, AdminOptions options) {
  Worker w;
  auto offShard = std::make_shared<OffShard>();
  auto backupRunning = std::make_shared<std::atomic<bool>>(false);

  // A web page the operator has open must not reach this listener: a cross-site request
  // carries an Origin other than the listener's own, and a DNS-rebound one a Host that is
  // not this machine (checked when no token guards the listener).
  w.use([hasToken = !options.token.empty()](Context& c, Next next) -> Task<Response> {
    const std::string host = c.header("host").value_or("");
    if (!hasToken && !loopbackHost(host)) {
      co_return errorJson(403, "this admin listener answers requests for a loopback address only, not for Host '" +
                                   host + "'");
    }
    if (auto origin = c.header("origin"); origin && *origin != "http://" + host) {
      co_return errorJson(403, "this admin listener answers no request from another site (Origin " + *origin + ")");
    }
    co_return co_await next();
  });
  if (!options.token.empty()) {
    w.use([token = options.token](Context& c, Next next) -> Task<Response> {
      // The inspector page holds no data: it asks for the token and sends it with each call.
      const auto method = c.req().method();
      if ((method == "GET" || method == "HEAD") && c.req().url().pathname() == "/") co_return co_await next();
      const auto header = c.header("authorization").value_or("");
      constexpr std::string_view kBearer = "bearer ";
      const bool ok = header.size() > kBearer.size() && startsWithIgnoringCase(header, kBearer) &&
                      sameSecret(std::string_view(header).substr(kBearer.size()), token);
      if (!ok) {
        Response r = errorJson(401, "this admin listener needs the header \"Authorization: Bearer <admin token>\"");
        r.headers().set("www-authenticate", "Bearer");
        co_return r;
      }
      co_return co_await next();
    });
  }

  w.get("/", [](Context&) -> Task<Response> {
    Response page(kInspectorPage);
    page.headers().set("content-type", "text/html; charset=utf-8");
    page.headers().set("cache-control", "no-store");
    co_return page;
  });

  if (!options.clusterUrl.empty()) {
    w.get("/cluster", [url = options.clusterUrl, offShard](Context&) -> Task<Response> {
      const std::function<std::string()> read = [url] { return clusterStatusJson(url); };
      Response r(co_await offShard->run(read));
      r.headers().set("content-type", "application/json");
      co_return r;
    });
  }

  w.get("/metrics", [&runtime](Context&) -> Task<Response> {
    Response r(renderMetrics(runtime));
    r.headers().set("content-type", "text/plain; version=0.0.4; charset=utf-8");
    co_return r;
  });

  // Counting reads every row of a namespace: on a thread of its own over the partitions'
  // files, never on a shard (over the in-memory engine, which has no files, on the shards).
  w.get("/admin/namespaces", [&runtime, offShard](Context&) -> Task<Response> {
    const auto& namespaces = runtime.namespaces();
    std::vector<std::size_t> counts(namespaces.size());
    if (!runtime.options().engine) {
      std::vector<std::int64_t> ids;
      for (const auto* ns : namespaces) ids.push_back(ns->nsId);
      const std::function<std::vector<std::size_t>()> count = [dir = runtime.options().persistDir, ids] {
        return countObjectsInState(dir, ids);
      };
      counts = co_await offShard->run(count);
    } else {
      for (unsigned s = 0; s < runtime.shardCount(); ++s) {
        Shard& shard = runtime.shard(s);
        const std::function<Task<std::vector<std::size_t>>()> count = [&shard, &namespaces]() -> Task<std::vector<std::size_t>> {
          std::vector<std::size_t> n(namespaces.size());
          for (auto& p : shard.partitions) {
            for (std::size_t i = 0; i < namespaces.size(); ++i) {
              auto counted = p->countObjects(namespaces[i]->nsId);
              n[i] += co_await answerOf(std::move(counted));
            }
          }
          co_return n;
        };
        auto perShard = co_await onShard(shard, count);
        for (std::size_t i = 0; i < counts.size(); ++i) counts[i] += perShard[i];
      }
    }
    boost::json::array out;
    for (std::size_t i = 0; i < namespaces.size(); ++i) {
      out.push_back(boost::json::object{{"binding", namespaces[i]->binding},
                                        {"class", namespaces[i]->className},
                                        {"backend", namespaces[i]->sqliteBacked ? "sqlite" : "kv"},
                                        {"objects", counts[i]}});
    }
    co_return Response::json(out);
  });

  // Objects in ID order, merged from every partition: each gives its first `limit + 1` past
  // the cursor, so the merged page is exact and one more tells whether another page follows.
  w.get("/admin/namespaces/:ns/objects", guarded([&runtime](Context& c) -> Task<Response> {
    const NamespaceImpl& ns = findNamespace(runtime, c.param("ns"));
    const std::size_t limit = pageLimit(c);
    std::optional<ObjectId::Raw> after;
    if (auto cursor = c.query("cursor"); cursor && !cursor->empty()) after = parseId(ns, *cursor, "cursor").raw();
    std::vector<Listed> all;
    for (unsigned s = 0; s < runtime.shardCount(); ++s) {
      Shard& shard = runtime.shard(s);
      const std::function<Task<std::vector<Listed>>()> list = [&runtime, &shard, &ns, after,
                                                               limit]() -> Task<std::vector<Listed>> {
        std::vector<Listed> out;
        for (auto& p : shard.partitions) {
          auto listed = p->listObjects(ns.nsId, after, limit + 1);
          std::vector<StoredObject> stored = co_await answerOf(std::move(listed));
          for (auto& o : stored) {
            addSqlFacts(runtime, ns, o);
            ObjectHost* host = shard.findHost(ns, ObjectId(o.id, std::nullopt));
            out.push_back({std::move(o), host != nullptr, host ? host->id().name() : std::nullopt});
          }
        }
        co_return out;
      };
      auto page = co_await onShard(shard, list);
      std::move(page.begin(), page.end(), std::back_inserter(all));
    }
    std::sort(all.begin(), all.end(), [](const Listed& a, const Listed& b) { return a.stored.id < b.stored.id; });
    const bool more = all.size() > limit;
    if (more) all.resize(limit);
    boost::json::array objects;
    for (const auto& o : all) objects.push_back(describe(o.stored, o.live, o.liveName));
    boost::json::object out{{"objects", std::move(objects)}};
    if (more) {
      out["cursor"] = ObjectId(all.back().stored.id, std::nullopt).toString();
    } else {
      out["cursor"] = nullptr;
    }
    co_return Response::json(out);
  }));

  w.get("/admin/namespaces/:ns/objects/:id", guarded([&runtime](Context& c) -> Task<Response> {
    const NamespaceImpl& ns = findNamespace(runtime, c.param("ns"));
    const ObjectId id = parseId(ns, c.param("id"), "id");
    Shard& shard = runtime.shardOf(id);
    const std::function<Task<boost::json::object>()> look = [&runtime, &shard, &ns, id]() -> Task<boost::json::object> {
      auto described = runtime.partitionOf(id).describeObject(ns.nsId, id.raw());
      StoredObject stored = co_await answerOf(std::move(described));
      ObjectHost* host = shard.findHost(ns, id);
      if (host) host->commitSql();
      addSqlFacts(runtime, ns, stored);
      boost::json::object j = describe(stored, host != nullptr, host ? host->id().name() : std::nullopt);
      boost::json::array sockets;
      if (ObjectSockets* open = shard.findSockets(ns, id)) {
        static constexpr const char* kStates[] = {"connecting", "open", "closing", "closed"};
        for (const auto& ws : open->sockets) {
          boost::json::array tags;
          for (const auto& t : ws->tags) tags.push_back(boost::json::string(t));
          sockets.push_back(boost::json::object{
              {"tags", std::move(tags)},
              {"state", ws->readyState >= 0 && ws->readyState < 4 ? kStates[ws->readyState] : "unknown"},
              {"hasAttachment", ws->attachment.has_value()}});
        }
      }
      j["sockets"] = std::move(sockets);
      co_return j;
    };
    auto out = co_await onShard(shard, look);
    co_return Response::json(out);
  }));

  // What the engine has for the object, read without waking it: not the writes its cache
  // still holds for the next commit.
  w.get("/admin/namespaces/:ns/objects/:id/storage", guarded([&runtime](Context& c) -> Task<Response> {
    const NamespaceImpl& ns = findNamespace(runtime, c.param("ns"));
    const ObjectId id = parseId(ns, c.param("id"), "id");
    const std::optional<std::string> key = c.query("key");
    const std::size_t limit = key ? 1 : pageLimit(c);
    const std::string prefix = key ? *key : c.query("prefix").value_or("");
    std::string lower = prefix;
    bool lowerInclusive = true;
    if (auto cursor = c.query("cursor"); !key && cursor && !cursor->empty()) {
      auto key = fromHex(*cursor);
      if (!key) throw AdminError{400, "cursor: not a cursor this API gave out (hex digits), got '" + *cursor + "'"};
      if (*key >= prefix) {
        lower = std::move(*key);
        lowerInclusive = false;
      }
    }
    // One key: [key, key + "\0") holds it and nothing else.
    const std::optional<std::string> upper = key ? std::optional<std::string>(*key + '\0') : prefixEnd(prefix);
    const std::function<Task<Rows>()> read = [&runtime, &ns, id, lower, lowerInclusive, upper, limit]() -> Task<Rows> {
      if (const auto file = sqlFile(runtime, ns, id.raw())) {
        // A live object's file commits in steps (storage/object_sql.h): what is durable goes in
        // first, so that the file shows every acknowledged write.
        if (ObjectHost* host = runtime.shardOf(id).findHost(ns, id)) host->commitSql();
        ObjectSqlReader reader(*file);
        co_return reader.kv(lower, lowerInclusive, upper, limit + 1);
      }
      Deferred<Rows> answer =
          runtime.partitionOf(id).scan(ns.nsId, id.raw(), lower, lowerInclusive, upper, false, limit + 1);
      co_return co_await answerOf(std::move(answer));
    };
    Rows rows = co_await onShard(runtime.shardOf(id), read);
    if (key && rows.empty()) throw AdminError{404, "object " + id.toString() + " has no key '" + *key + "'"};
    const bool more = !key && rows.size() > limit;
    if (rows.size() > limit) rows.resize(limit);
    boost::json::array entries;
    for (const Row& row : rows) {
      boost::json::object e;
      putKey(e, row.key);
      putValue(e, row.value);
      entries.push_back(std::move(e));
    }
    boost::json::object out{{"entries", std::move(entries)}};
    if (more) {
      out["cursor"] = toHex(rows.back().key);
    } else {
      out["cursor"] = nullptr;
    }
    co_return Response::json(out);
  }));

  // Read-only SQL over a SQLite-backed object's file, on a thread of its own: what the file has
  // committed, without waking the object. At most 1,000 rows.
  w.get("/admin/namespaces/:ns/objects/:id/sql", guarded([&runtime, offShard](Context& c) -> Task<Response> {
    const NamespaceImpl& ns = findNamespace(runtime, c.param("ns"));
    const ObjectId id = parseId(ns, c.param("id"), "id");
    if (!ns.sqliteBacked) {
      throw AdminError{400, "namespace " + ns.binding + " (class " + ns.className +
                                ") is key-value backed: only classes made by new_sqlite_classes have SQL"};
    }
    const auto query = c.query("query");
    if (!query || query->empty()) throw AdminError{400, "?query= wants one read-only SQL statement"};
    const auto file = sqlFile(runtime, ns, id.raw());
    if (!file) throw AdminError{400, "this server keeps no SQL files (an in-memory engine)"};
    Shard& shard = runtime.shardOf(id);
    const std::function<Task<bool>()> commit = [&shard, &ns, id]() -> Task<bool> {
      ObjectHost* host = shard.findHost(ns, id);
      if (host) host->commitSql();
      co_return host != nullptr;
    };
    co_await onShard(shard, commit);
    const std::function<ObjectSqlReader::Result()> run = [file = *file, query = *query] {
      ObjectSqlReader reader(file);
      return reader.query(query, 1000);
    };
    std::optional<ObjectSqlReader::Result> result;
    std::string refused;
    try {
      result = co_await offShard->run(run);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kInvalidArgument) throw;
      refused = e.what();
    }
    if (!result) throw AdminError{400, refused};
    boost::json::array columns;
    for (const auto& name : result->columns) columns.push_back(boost::json::string(name));
    boost::json::array rows;
    for (const auto& row : result->rows) {
      boost::json::array values;
      for (const auto& v : row) {
        if (v.type() == Value::Type::kBytes) {
          values.push_back(boost::json::object{{"base64", base64(v.as<Bytes>().data)}});
        } else if (v.type() == Value::Type::kString && !validUtf8(v.as<std::string>())) {
          values.push_back(boost::json::object{{"base64", base64(v.as<std::string>())}});
        } else {
          values.push_back(v.toJson());
        }
      }
      rows.push_back(std::move(values));
    }
    co_return Response::json(boost::json::object{
        {"columns", std::move(columns)}, {"rows", std::move(rows)}, {"truncated", result->truncated}});
  }));

  // Through the object, as its own deleteAll(): its gates hold, and its cache forgets.
  w.del("/admin/namespaces/:ns/objects/:id/storage", guarded([&runtime](Context& c) -> Task<Response> {
    const NamespaceImpl& ns = findNamespace(runtime, c.param("ns"));
    const ObjectId id = parseId(ns, c.param("id"), "id");
    Promise<void> deleted;
    Shard* home = Shard::current();
    runtime.dispatchRun(
        ns, id, [](DurableObject&, State& state) -> Task<void> { co_await state.storage().deleteAll(); },
        [deleted, home](std::exception_ptr error) {
          postTo(*home, [deleted, error]() mutable {
            if (error) return deleted.setError(error);
            deleted.setValue();
          });
        });
    co_await deleted.future();
    co_return Response(std::string(), {.status = 204});
  }));

  w.post("/admin/namespaces/:ns/objects/:id/alarm/run", guarded([&runtime](Context& c) -> Task<Response> {
    const NamespaceImpl& ns = findNamespace(runtime, c.param("ns"));
    const ObjectId id = parseId(ns, c.param("id"), "id");
    Shard& shard = runtime.shardOf(id);
    const std::function<Task<AlarmScheduler::RunNow>()> run = [&shard, &ns, id]() -> Task<AlarmScheduler::RunNow> {
      co_return shard.runAlarmNow(ns.nsId, id.raw());
    };
    const AlarmScheduler::RunNow started = co_await onShard(shard, run);
    if (started == AlarmScheduler::RunNow::kNoAlarm) {
      throw AdminError{404, "object " + id.toString() + " has no alarm set"};
    }
    if (started == AlarmScheduler::RunNow::kPaused) {
      throw AdminError{409, "alarms do not run here: this is a stopped server's state, opened to be read; run the "
                            "alarm on the server (durable serve) with --admin HOST:PORT"};
    }
    co_return Response::json(boost::json::object{{"started", true}}, {.status = 202});
  }));

  // One at a time, on a thread of its own: a backup reads every database, and no shard may
  // wait for that.
  w.post("/admin/backup", guarded([&runtime, offShard, backupRunning](Context& c) -> Task<Response> {
    if (!c.header("content-type").value_or("").starts_with("application/json")) {
      throw AdminError{415, "the body wants content-type application/json: {\"to\": \"/path/of/the/backup.tar\"}"};
    }
    std::string to;
    try {
      to = std::string(c.req().json().at("to").as_string());
    } catch (const std::exception&) {
      throw AdminError{400, "the body wants {\"to\": \"/absolute/path/of/the/backup.tar\"}"};
    }
    if (to.empty() || to.front() != '/') {
      throw AdminError{400, "\"to\" wants an absolute path on the server's machine, got '" + to + "'"};
    }
    const auto dir = runtime.options().persistDir;
    try {
      checkBackupTarget(dir, to);
    } catch (const Error& e) {
      throw AdminError{400, e.what()};
    }
    if (backupRunning->exchange(true)) throw AdminError{409, "a backup is running already: one at a time"};
    std::optional<BackupSummary> summary;
    std::exception_ptr failed;
    try {
      const std::function<BackupSummary()> backup = [dir, to] { return backupState(dir, to); };
      summary = co_await offShard->run(backup);
    } catch (...) {
      failed = std::current_exception();
    }
    backupRunning->store(false);
    if (failed) std::rethrow_exception(failed);
    co_return Response::json(
        boost::json::object{{"file", to}, {"databases", summary->databases}, {"bytes", summary->bytes}});
  }));

  w.notFound([](Context& c) -> Task<Response> {
    co_return errorJson(404, "no admin route for " + std::string(c.req().method()) + " " + c.req().url().pathname() +
                                 " (routes: GET / (the inspector), GET /metrics, GET /admin/namespaces, GET /admin/namespaces/:ns/objects, "
                                 "GET|DELETE .../objects/:id/storage, GET .../objects/:id/sql?query=, GET .../objects/:id, "
                                 "POST .../objects/:id/alarm/run, POST /admin/backup)");
  });
  return w;
}

}  // namespace durable::detail
