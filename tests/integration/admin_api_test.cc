// The admin API and the command-line tools over it, against the real binary: objects listed
// exactly and paged, storage read as committed without waking the object, deleteAll and an
// alarm run through the object, the CLI against a running server and a stopped state, and a
// backup taken under load that restores into a fresh directory serving the same data.
#include "integration/server_process.h"
#include "integration/websocket_client.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <thread>

namespace durable_it {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

class AdminApiTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> start(std::vector<std::string> extra = {"--shards", "2"}, bool testServer = false,
                                       fs::path state = {}) {
    ServerProcess::Options o;
    o.persistDir = state.empty() ? dir_ / "state" : state;
    o.stderrLog = dir_ / ("server-" + std::to_string(++starts_) + ".log");
    if (testServer) {
      o.binary = testServerPath();
      o.config = testServerConfig();
    }
    o.extraArgs = std::move(extra);
    return ServerProcess::start(o);
  }

  static json::value admin(const ServerProcess& s, const std::string& method, const std::string& target,
                           int expectStatus = 200, const std::string& body = "") {
    auto r = httpRequest("127.0.0.1", s.adminPort(), method, target, body);
    EXPECT_EQ(r.status, expectStatus) << method << " " << target << ": " << r.body;
    if (r.body.empty()) return nullptr;
    return json::parse(r.body);
  }

  // Every object of `ns`, page by page; checks the pages' order and cursors on the way.
  static std::vector<json::object> listAll(const ServerProcess& s, const std::string& ns, int limit) {
    std::vector<json::object> all;
    std::string cursor;
    for (int page = 0; page < 1000; ++page) {
      std::string target = "/admin/namespaces/" + ns + "/objects?limit=" + std::to_string(limit);
      if (!cursor.empty()) target += "&cursor=" + cursor;
      auto body = admin(s, "GET", target).as_object();
      const auto& objects = body.at("objects").as_array();
      EXPECT_LE(objects.size(), static_cast<std::size_t>(limit));
      for (const auto& o : objects) all.push_back(o.as_object());
      if (body.at("cursor").is_null()) return all;
      EXPECT_EQ(objects.size(), static_cast<std::size_t>(limit)) << "a page before the last is full";
      cursor = std::string(body.at("cursor").as_string());
    }
    ADD_FAILURE() << "the pages never end";
    return all;
  }

  static std::string idOf(const ServerProcess& s, const std::string& ns, const std::string& name) {
    for (const auto& o : listAll(s, ns, 1000)) {
      if (o.at("name").is_string() && o.at("name").as_string() == name) return std::string(o.at("id").as_string());
    }
    ADD_FAILURE() << "no object named " << name << " in " << ns;
    return "";
  }

  CommandResult cli(std::vector<std::string> args) { return runBinary(args, dir_.path(), 60s); }
  // The same with the test server's binary, which exports AlarmProbe.
  CommandResult testCli(std::vector<std::string> args) {
    args.insert(args.begin(), testServerPath().string());
    return runCommand(args, dir_.path(), 60s);
  }

  TempDir dir_;
  int starts_ = 0;
};

TEST_F(AdminApiTest, ObjectsAreListedExactlyInIdOrderAndPaged) {
  auto server = start();
  HttpConnection http("127.0.0.1", server->port());
  std::set<std::string> written;
  for (int i = 0; i < 25; ++i) {
    const std::string name = "n" + std::to_string(i);
    ASSERT_EQ(http.post("/counters/" + name + "/increment").status, 200);
    written.insert(name);
  }
  // Read, never written: no storage, so not listed.
  ASSERT_EQ(http.get("/counters/only-read").status, 200);

  for (int limit : {1, 7, 25, 1000}) {
    auto all = listAll(*server, "COUNTER", limit);
    std::set<std::string> names;
    std::string previous;
    for (const auto& o : all) {
      names.insert(std::string(o.at("name").as_string()));
      const std::string id(o.at("id").as_string());
      EXPECT_EQ(id.size(), 64u);
      EXPECT_LT(previous, id) << "IDs ascend across pages";
      previous = id;
      EXPECT_EQ(o.at("keys").as_int64(), 1);
      EXPECT_EQ(o.at("bytes").as_int64(), 14) << "\"count\" and an int64: 5 + 9 bytes";
      EXPECT_TRUE(o.at("alarm").is_null());
    }
    EXPECT_EQ(all.size(), 25u) << "limit " << limit;
    EXPECT_EQ(names, written) << "limit " << limit;
  }
  // The class name works as well as the binding.
  EXPECT_EQ(listAll(*server, "Counter", 100).size(), 25u);

  EXPECT_EQ(admin(*server, "GET", "/admin/namespaces/NOPE/objects", 404).at("error").as_string(),
            "no namespace 'NOPE' (bindings: COUNTER, RATE_LIMITER, TASK, ROOM, HIBERNATING_ROOM, NOTES)");
  for (const char* bad : {"0", "1001", "x", "-1"}) {
    auto e = admin(*server, "GET", std::string("/admin/namespaces/COUNTER/objects?limit=") + bad, 400);
    EXPECT_NE(std::string(e.at("error").as_string()).find("limit wants a whole number from 1 to 1000"),
              std::string::npos);
  }
  admin(*server, "GET", "/admin/namespaces/COUNTER/objects?cursor=zz", 400);
  // An ID of another namespace is no cursor of this one.
  const std::string task = [&] {
    EXPECT_EQ(http.post("/tasks/t/schedule").status, 200);
    return idOf(*server, "TASK", "t");
  }();
  admin(*server, "GET", "/admin/namespaces/COUNTER/objects?cursor=" + task, 400);
}

TEST_F(AdminApiTest, StorageIsReadAsCommittedWithoutWakingTheObject) {
  auto server = start({"--shards", "2", "--idle-timeout-ms", "200"}, true);
  HttpConnection http("127.0.0.1", server->port());
  auto put = [&](const std::string& key, const std::string& type, const std::string& value) {
    ASSERT_EQ(http.get("/probe/p/put?key=" + key + "&type=" + type + "&value=" + value).status, 204);
  };
  put("count", "int", "42");
  put("greeting", "string", "hello");
  put("raw", "bytes", "%00%01%7F");
  put("doc", "json", "%7B%22a%22%3A%5B1%2C2%5D%7D");
  for (int i = 0; i < 12; ++i) put("item:" + std::string(i < 10 ? "0" : "") + std::to_string(i), "int", std::to_string(i));
  const std::string id = idOf(*server, "PROBE", "p");
  const std::string base = "/admin/namespaces/PROBE/objects/" + id;

  // Evicted once idle; reading its storage must not bring it back.
  json::object detail;
  for (int i = 0; i < 200; ++i) {
    detail = admin(*server, "GET", base).as_object();
    if (!detail.at("live").as_bool()) break;
    std::this_thread::sleep_for(25ms);
  }
  ASSERT_FALSE(detail.at("live").as_bool()) << json::serialize(detail);
  EXPECT_EQ(detail.at("keys").as_int64(), 16);

  auto page = admin(*server, "GET", base + "/storage?limit=4").as_object();
  const auto& entries = page.at("entries").as_array();
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(json::serialize(entries[0]), R"({"key":"count","type":"int","value":42})");
  EXPECT_EQ(json::serialize(entries[1]), R"({"key":"doc","type":"json","value":{"a":[1,2]}})");
  EXPECT_EQ(json::serialize(entries[2]), R"({"key":"greeting","type":"string","value":"hello"})");
  EXPECT_EQ(json::serialize(entries[3]), R"({"key":"item:00","type":"int","value":0})");
  ASSERT_TRUE(page.at("cursor").is_string());

  // A prefix, paged: exactly its keys, in order.
  std::vector<std::string> items;
  std::string cursor;
  for (int i = 0; i < 20; ++i) {
    auto p = admin(*server, "GET", base + "/storage?prefix=item:&limit=5" + (cursor.empty() ? "" : "&cursor=" + cursor))
                 .as_object();
    for (const auto& e : p.at("entries").as_array()) items.push_back(std::string(e.at("key").as_string()));
    if (p.at("cursor").is_null()) break;
    cursor = std::string(p.at("cursor").as_string());
  }
  ASSERT_EQ(items.size(), 12u);
  EXPECT_EQ(items.front(), "item:00");
  EXPECT_EQ(items.back(), "item:11");
  EXPECT_TRUE(std::is_sorted(items.begin(), items.end()));

  EXPECT_EQ(json::serialize(admin(*server, "GET", base + "/storage?key=raw").at("entries").at(0)),
            R"({"key":"raw","type":"bytes","base64":"AAF/"})");
  admin(*server, "GET", base + "/storage?key=item:", 404);
  admin(*server, "GET", base + "/storage?cursor=nothex", 400);

  EXPECT_FALSE(admin(*server, "GET", base).at("live").as_bool()) << "no read woke it";
}

TEST_F(AdminApiTest, DeleteAllAndAlarmRunGoThroughTheObject) {
  auto server = start({"--shards", "2"}, true);
  HttpConnection http("127.0.0.1", server->port());
  ASSERT_EQ(http.get("/probe/p/set?in=3600000").status, 200);
  ASSERT_EQ(http.get("/probe/p/put?key=k&type=int&value=1").status, 204);
  const std::string id = idOf(*server, "PROBE", "p");
  const std::string base = "/admin/namespaces/PROBE/objects/" + id;
  const auto scheduled = admin(*server, "GET", base).at("alarm").as_int64();
  EXPECT_GT(scheduled, 0);

  EXPECT_EQ(admin(*server, "POST", base + "/alarm/run", 202).at("started").as_bool(), true);
  json::object state;
  for (int i = 0; i < 200; ++i) {
    state = json::parse(http.get("/probe/p/get").body).as_object();
    if (state.at("fired").as_int64() == 1) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(state.at("fired").as_int64(), 1) << "the alarm ran now, not in an hour";
  EXPECT_EQ(state.at("last").as_int64(), scheduled) << "with the time it was set for";
  EXPECT_TRUE(state.at("alarm").is_null());
  auto noAlarm = admin(*server, "POST", base + "/alarm/run", 404);
  EXPECT_NE(std::string(noAlarm.at("error").as_string()).find("has no alarm"), std::string::npos);

  // deleteAll through the object: its cache forgets too, so its next read sees nothing.
  ASSERT_EQ(http.get("/probe/p/set?in=3600000").status, 200);
  admin(*server, "DELETE", base + "/storage", 204);
  state = json::parse(http.get("/probe/p/get").body).as_object();
  EXPECT_EQ(state.at("fired").as_int64(), 0);
  EXPECT_TRUE(state.at("alarm").is_null()) << "deleteAll deletes the alarm as well";
  // Its /get wrote nothing, so it is gone from the listing.
  for (const auto& o : listAll(*server, "PROBE", 100)) EXPECT_NE(o.at("id").as_string(), id);
}

TEST_F(AdminApiTest, AnObjectShowsItsWebSockets) {
  auto server = start();
  auto ann = WsClient::connect("127.0.0.1", server->port(), "/rooms/r/websocket?user=ann");
  auto bob = WsClient::connect("127.0.0.1", server->port(), "/rooms/r/websocket?user=bob");
  ann->send(R"({"type":"message","content":"hi"})");
  // The room's history is stored once the message is: then it is listed.
  std::string id;
  for (int i = 0; i < 200 && id.empty(); ++i) {
    auto all = listAll(*server, "ROOM", 100);
    if (!all.empty()) id = std::string(all.front().at("id").as_string());
    if (id.empty()) std::this_thread::sleep_for(20ms);
  }
  ASSERT_FALSE(id.empty());
  auto detail = admin(*server, "GET", "/admin/namespaces/ROOM/objects/" + id).as_object();
  EXPECT_EQ(detail.at("name").as_string(), "r");
  const auto& sockets = detail.at("sockets").as_array();
  ASSERT_EQ(sockets.size(), 2u) << json::serialize(detail);
  for (const auto& s : sockets) EXPECT_EQ(s.at("state").as_string(), "open");
  EXPECT_TRUE(detail.at("live").as_bool());
}

TEST_F(AdminApiTest, TheCliAsksARunningServerOrAStoppedState) {
  auto server = start();
  HttpConnection http("127.0.0.1", server->port());
  for (int i = 0; i < 3; ++i) ASSERT_EQ(http.post("/counters/a/increment").status, 200);
  ASSERT_EQ(http.post("/counters/b/increment").status, 200);
  const std::string adminAt = "127.0.0.1:" + std::to_string(server->adminPort());
  const std::string a = idOf(*server, "COUNTER", "a");

  auto list = cli({"objects", "list", "COUNTER", "--admin", adminAt});
  ASSERT_EQ(list.status.code, 0) << list.err;
  EXPECT_EQ(json::parse(list.out).at("objects").as_array().size(), 2u);
  auto get = cli({"storage", "get", "COUNTER", a, "count", "--admin", adminAt});
  ASSERT_EQ(get.status.code, 0) << get.err;
  EXPECT_EQ(json::parse(get.out), json::parse(R"({"key":"count","type":"int","value":3})"));
  auto missing = cli({"storage", "get", "COUNTER", a, "nope", "--admin", adminAt});
  EXPECT_EQ(missing.status.code, 1);
  EXPECT_NE(missing.err.find("has no key 'nope' (HTTP 404)"), std::string::npos) << missing.err;

  // The state of a running server is locked: the tool says whom to ask instead.
  const auto where = std::vector<std::string>{"--config", seedConfig().string(), "--persist-to", (dir_ / "state").string()};
  auto locked = cli({"objects", "list", "COUNTER", where[0], where[1], where[2], where[3]});
  EXPECT_EQ(locked.status.code, 1);
  EXPECT_NE(locked.err.find("--admin HOST:PORT"), std::string::npos) << locked.err;

  ASSERT_EQ(server->stop().code, 0);
  auto offline = cli({"storage", "list", "COUNTER", a, where[0], where[1], where[2], where[3]});
  ASSERT_EQ(offline.status.code, 0) << offline.err;
  EXPECT_EQ(json::parse(offline.out).at("entries").at(0).at("value").as_int64(), 3);
  auto del = cli({"storage", "delete", "COUNTER", a, where[0], where[1], where[2], where[3]});
  ASSERT_EQ(del.status.code, 0) << del.err;
  auto after = cli({"objects", "list", "COUNTER", where[0], where[1], where[2], where[3]});
  ASSERT_EQ(after.status.code, 0) << after.err;
  const json::value listed = json::parse(after.out);
  const auto& left = listed.at("objects").as_array();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].at("name").as_string(), "b");

  // Served again, the deletion holds.
  server = start();
  HttpConnection again("127.0.0.1", server->port());
  EXPECT_EQ(again.post("/counters/a/increment").body, R"({"count":1})");

  // Bad command lines say what is accepted.
  auto usage = cli({"objects", "list"});
  EXPECT_EQ(usage.status.code, 2);
  EXPECT_NE(usage.err.find("usage: durable objects list NAMESPACE"), std::string::npos) << usage.err;
  auto both = cli({"objects", "list", "COUNTER", "--admin", adminAt, "--persist-to", "x"});
  EXPECT_EQ(both.status.code, 2);
  auto nostate = cli({"objects", "list", "COUNTER", "--config", seedConfig().string(), "--persist-to",
                      (dir_ / "empty").string()});
  EXPECT_EQ(nostate.status.code, 1);
  EXPECT_NE(nostate.err.find("holds no durable state"), std::string::npos) << nostate.err;
  EXPECT_FALSE(fs::exists(dir_ / "empty" / "meta.sqlite")) << "asking created nothing";
}

TEST_F(AdminApiTest, ABackupTakenUnderLoadRestoresTheSameData) {
  auto server = start();
  {
    // A SQLite-backed object too: its own file goes into the backup with the partitions.
    HttpConnection http("127.0.0.1", server->port());
    for (const char* text : {"kept in the backup", "and this one"}) {
      ASSERT_EQ(http.post("/notes/saved", json::serialize(json::object{{"text", text}})).status, 201);
    }
  }
  const std::string adminAt = "127.0.0.1:" + std::to_string(server->adminPort());
  constexpr int kCounters = 8;
  // Per counter: the last count acknowledged before the backup started, and the last one
  // acknowledged at all.
  std::vector<std::atomic<std::int64_t>> acked(kCounters);
  std::vector<std::int64_t> beforeBackup(kCounters);
  std::atomic<bool> stop{false};
  std::vector<std::thread> load;
  for (int t = 0; t < 2; ++t) {
    load.emplace_back([&, t] {
      HttpConnection http("127.0.0.1", server->port());
      for (int i = 0; !stop; ++i) {
        const int c = (i * 2 + t) % kCounters;
        auto r = http.post("/counters/c" + std::to_string(c) + "/increment");
        if (r.status != 200) continue;
        const auto n = json::parse(r.body).at("count").as_int64();
        auto seen = acked[c].load();
        while (n > seen && !acked[c].compare_exchange_weak(seen, n)) {
        }
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  for (int c = 0; c < kCounters; ++c) beforeBackup[c] = acked[c].load();
  const fs::path file = dir_ / "backup.tar";
  auto backup = cli({"backup", "--to", file.string(), "--admin", adminAt});
  std::vector<std::int64_t> afterBackup(kCounters);
  for (int c = 0; c < kCounters; ++c) afterBackup[c] = acked[c].load();
  stop = true;
  for (auto& t : load) t.join();
  ASSERT_EQ(backup.status.code, 0) << backup.err;
  EXPECT_EQ(json::parse(backup.out).at("file").as_string(), file.string());
  server->stop();

  const fs::path restored = dir_ / "restored";
  auto restore = cli({"restore", "--from", file.string(), "--persist-to", restored.string()});
  ASSERT_EQ(restore.status.code, 0) << restore.err;
  auto again = cli({"restore", "--from", file.string(), "--persist-to", restored.string()});
  EXPECT_EQ(again.status.code, 1);
  EXPECT_NE(again.err.find("already holds durable state"), std::string::npos) << again.err;

  auto copy = start({"--shards", "2"}, false, restored);
  HttpConnection http("127.0.0.1", copy->port());
  for (int c = 0; c < kCounters; ++c) {
    const auto n = json::parse(http.get("/counters/c" + std::to_string(c)).body).at("count").as_int64();
    EXPECT_GE(n, beforeBackup[c]) << "counter " << c << ": what was acknowledged before the backup is in it";
    // Writes acknowledged after it began may be in it or not; none that never happened.
    EXPECT_LE(n, afterBackup[c] + 2) << "counter " << c;
  }
  EXPECT_EQ(listAll(*copy, "COUNTER", 100).size(), static_cast<std::size_t>(kCounters));
  const auto notes = json::parse(http.get("/notes/saved?q=backup").body).as_array();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].at("text").as_string(), "kept in the backup");
  EXPECT_TRUE(fs::exists(restored / "sql")) << "the notebook's own file was restored";

  // Not a backup: refused, and the directory holds no state after.
  const fs::path junk = dir_ / "junk.tar";
  { std::ofstream(junk) << "not a tar file at all"; }
  auto bad = cli({"restore", "--from", junk.string(), "--persist-to", (dir_ / "r2").string()});
  EXPECT_EQ(bad.status.code, 1);
  EXPECT_NE(bad.err.find("is not a durable backup"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir_ / "r2" / "meta.sqlite"));
}


TEST_F(AdminApiTest, OtherSitesAndOtherHostNamesAreRefused) {
  auto server = start();
  const std::string self = "127.0.0.1:" + std::to_string(server->adminPort());
  auto raw = [&](const std::string& head) {
    return parseResponse(rawExchange("127.0.0.1", server->adminPort(), head + "Connection: close\r\n\r\n").received);
  };
  // DNS rebinding: a name that is not this machine.
  auto rebound = raw("GET /admin/namespaces HTTP/1.1\r\nHost: evil.example:" + std::to_string(server->adminPort()) + "\r\n");
  EXPECT_EQ(rebound.status, 403);
  EXPECT_NE(rebound.body.find("loopback"), std::string::npos) << rebound.body;
  EXPECT_EQ(raw("GET /admin/namespaces HTTP/1.1\r\nHost: localhost:1\r\n").status, 200);
  EXPECT_EQ(raw("GET /admin/namespaces HTTP/1.1\r\nHost: " + self + "\r\n").status, 200);
  // A page of another site posting here (a "simple" request a browser sends unasked).
  const std::string body = R"({"to":")" + (dir_ / "csrf.tar").string() + R"("})";
  auto csrf = raw("POST /admin/backup HTTP/1.1\r\nHost: " + self + "\r\nOrigin: https://evil.example\r\n" +
                  "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body +
                  "\r\n");
  EXPECT_EQ(csrf.status, 403);
  EXPECT_FALSE(fs::exists(dir_ / "csrf.tar"));
  // Without an Origin, but not JSON: refused too.
  auto plain = raw("POST /admin/backup HTTP/1.1\r\nHost: " + self + "\r\nContent-Type: text/plain\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n\r\n" + body + "\r\n");
  EXPECT_EQ(plain.status, 415);
  EXPECT_FALSE(fs::exists(dir_ / "csrf.tar"));
  // The page's own calls carry its own origin.
  EXPECT_EQ(raw("DELETE /admin/namespaces/COUNTER/objects/" + std::string(64, '0') + "/storage HTTP/1.1\r\nHost: " + self +
                "\r\nOrigin: http://" + self + "\r\n")
                .status,
            400);  // (an ID of no namespace: refused for that, not for where it came from)
}

TEST_F(AdminApiTest, BackupTargetsThatWouldDoHarmAreRefused) {
  auto server = start();
  HttpConnection http("127.0.0.1", server->port());
  ASSERT_EQ(http.post("/counters/a/increment").status, 200);
  fs::create_directories(dir_ / "victim" / "sub");
  std::ofstream(dir_ / "victim" / "sub" / "file") << "keep me";
  auto post = [&](const std::string& to) {
    HttpConnection admin("127.0.0.1", server->adminPort(), 60s);
    return admin.request("POST", "/admin/backup", json::serialize(json::object{{"to", to}}),
                         {{"content-type", "application/json"}});
  };
  for (const std::string to : {(dir_ / "victim").string() + std::string(1, '\0') + "/x.tar",
                               (dir_ / "state" / "meta.sqlite").string(), (dir_ / "state" / "b.tar").string(),
                               (dir_ / "missing" / "b.tar").string(), std::string("/"), (dir_ / "victim").string()}) {
    auto r = post(to);
    EXPECT_EQ(r.status, 400) << to << ": " << r.body;
    EXPECT_NE(r.body.find("backup target"), std::string::npos) << r.body;
  }
  EXPECT_EQ(readFile(dir_ / "victim" / "sub" / "file"), "keep me");
  EXPECT_FALSE(fs::exists(dir_ / "missing"));

  // Backups at once to one file: each is whole or refused (409), none leaves anything behind.
  std::vector<int> statuses(3);
  std::vector<std::thread> at;
  for (int i = 0; i < 3; ++i) at.emplace_back([&, i] { statuses[i] = post((dir_ / "same.tar").string()).status; });
  for (auto& t : at) t.join();
  int made = 0;
  for (int s : statuses) {
    EXPECT_TRUE(s == 200 || s == 409) << s;
    made += s == 200;
  }
  EXPECT_GE(made, 1);
  for (const auto& e : fs::directory_iterator(dir_.path())) {
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos) << e.path();
  }
  EXPECT_EQ(fs::status(dir_ / "same.tar").permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  auto restore = cli({"restore", "--from", (dir_ / "same.tar").string(), "--persist-to", (dir_ / "r").string()});
  EXPECT_EQ(restore.status.code, 0) << restore.err;
}

TEST_F(AdminApiTest, ToolsOnAStoppedStateChangeNoClassAndRunNoAlarm) {
  auto server = start({"--shards", "2"}, true);
  HttpConnection http("127.0.0.1", server->port());
  ASSERT_EQ(http.get("/probe/p/set?in=3600000").status, 200);
  const std::string id = idOf(*server, "PROBE", "p");
  ASSERT_EQ(server->stop().code, 0);
  const auto where = std::vector<std::string>{"--config", testServerConfig().string(), "--persist-to", (dir_ / "state").string()};

  auto run = testCli({"alarm", "run", "PROBE", id, where[0], where[1], where[2], where[3]});
  EXPECT_EQ(run.status.code, 1);
  EXPECT_NE(run.err.find("alarms do not run here"), std::string::npos) << run.err;

  // A config one migration ahead of the state is refused, and applies nothing.
  const fs::path ahead = dir_ / "ahead.toml";
  {
    std::string toml = readFile(testServerConfig());
    const auto table = toml.find("[durable]");
    ASSERT_NE(table, std::string::npos);
    toml.insert(table, "[[migrations]]\ntag = \"v2\"\nnew_classes = [\"Unbound\"]\n\n");
    std::ofstream(ahead) << toml;
  }
  auto refused = testCli({"objects", "list", "COUNTER", "--config", ahead.string(), where[2], where[3]});
  EXPECT_EQ(refused.status.code, 1);
  EXPECT_NE(refused.err.find("not applied"), std::string::npos) << refused.err;
  auto still = testCli({"objects", "get", "PROBE", id, where[0], where[1], where[2], where[3]});
  ASSERT_EQ(still.status.code, 0) << still.err;
  EXPECT_TRUE(json::parse(still.out).at("alarm").is_int64()) << "the alarm is still there: " << still.out;

  // A stopped state is backed up from its files: no config, no classes needed.
  auto backup = cli({"backup", "--to", (dir_ / "offline.tar").string(), where[2], where[3]});
  ASSERT_EQ(backup.status.code, 0) << backup.err;
  auto restore = cli({"restore", "--from", (dir_ / "offline.tar").string(), "--persist-to", (dir_ / "copy").string()});
  ASSERT_EQ(restore.status.code, 0) << restore.err;
  auto copy = start({"--shards", "2"}, true, dir_ / "copy");
  HttpConnection again("127.0.0.1", copy->port());
  EXPECT_EQ(json::parse(again.get("/probe/p/get").body).at("alarm").as_int64(), json::parse(still.out).at("alarm").as_int64());
  // A restore that fails leaves no directory behind.
  auto failed = cli({"restore", "--from", (dir_ / "nothing.tar").string(), "--persist-to", (dir_ / "never").string()});
  EXPECT_EQ(failed.status.code, 1);
  EXPECT_FALSE(fs::exists(dir_ / "never"));
}

// A SQLite-backed object over the admin API: listed with its file's size, its SQL readable by
// read-only statements (and nothing else), without waking it.
TEST_F(AdminApiTest, SqliteBackedObjectsAreListedAndTheirSqlIsReadOnly) {
  auto server = start();
  HttpConnection c(server->host(), server->port());
  for (const char* text : {"alpha note", "beta note"}) {
    ASSERT_EQ(c.post("/notes/book", json::serialize(json::object{{"text", text}})).status, 201);
  }
  const auto objects = listAll(*server, "NOTES", 10);
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_EQ(objects[0].at("name").as_string(), "book");
  EXPECT_GT(objects[0].at("bytes").as_int64(), 0);
  const std::string id = idOf(*server, "NOTES", "book");
  const std::string base = "/admin/namespaces/NOTES/objects/" + id;

  // The notebook commits its file once its log entries are durable; poll briefly for it.
  json::value result;
  for (int i = 0; i < 100; ++i) {
    result = admin(*server, "GET", base + "/sql?query=SELECT%20text%20FROM%20notes%20ORDER%20BY%20id");
    if (result.at("rows").as_array().size() == 2) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(json::serialize(result), R"({"columns":["text"],"rows":[["alpha note"],["beta note"]],"truncated":false})");
  const auto count = admin(*server, "GET", base + "/sql?query=SELECT%20count(*)%20AS%20n%20FROM%20notes_fts%20WHERE%20notes_fts%20MATCH%20'alpha'");
  EXPECT_EQ(json::serialize(count.at("rows")), "[[1]]");

  for (const std::string bad : {"DELETE%20FROM%20notes", "INSERT%20INTO%20notes%20VALUES(9,'x',1)",
                                "SELECT%201;%20DROP%20TABLE%20notes", "PRAGMA%20journal_mode=DELETE", "",
                                "ATTACH%20'x'%20AS%20y", "SELECT%20*%20FROM%20nowhere",
                                // PRAGMAs that act while prepared, process-wide, and a pointer leak.
                                "PRAGMA%20hard_heap_limit=1000000", "PRAGMA%20soft_heap_limit=1000000",
                                "PRAGMA%20temp_store_directory='/tmp'", "PRAGMA%20user_version=7",
                                "SELECT%20fts3_tokenizer('simple')",
                                "WITH%20x%20AS%20(SELECT%201)%20DELETE%20FROM%20notes", "VACUUM%20INTO%20'/tmp/x.db'"}) {
    const auto refused = admin(*server, "GET", base + "/sql?query=" + bad, 400);
    EXPECT_TRUE(refused.as_object().contains("error")) << bad;
  }
  EXPECT_EQ(json::serialize(admin(*server, "GET", base + "/sql?query=SELECT%20count(*)%20FROM%20notes").at("rows")), "[[2]]")
      << "nothing was changed";
  EXPECT_EQ(json::serialize(admin(*server, "GET", base + "/sql?query=PRAGMA%20user_version").at("rows")), "[[0]]")
      << "a PRAGMA that reads is answered";
  // A query that would never end is stopped (after 5 s) and says so.
  const auto endless = admin(*server, "GET",
                             base + "/sql?query=WITH%20RECURSIVE%20r(n)%20AS%20(SELECT%201%20UNION%20ALL%20SELECT%20n%2B1%20"
                                    "FROM%20r)%20SELECT%20count(*)%20FROM%20r",
                             400);
  EXPECT_NE(json::serialize(endless).find("was stopped"), std::string::npos) << json::serialize(endless);
  // A key-value class has no SQL.
  admin(*server, "GET", "/admin/namespaces/COUNTER/objects/" + id + "/sql?query=SELECT%201", 400);
  // Its key-value storage (none here) reads from the same file.
  EXPECT_EQ(json::serialize(admin(*server, "GET", base + "/storage").at("entries")), "[]");
}

}  // namespace
}  // namespace durable_it
