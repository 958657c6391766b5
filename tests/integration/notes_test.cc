// The demo app's SQLite-backed Notes (examples/seed/notes.h) over real HTTP against the real
// binary: its routes and their errors, full-text search that no input can break or inject
// into, and every acknowledged note kept across a clean restart and across kill -9 under load.
#include "integration/server_process.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

namespace durable_it {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

class NotesTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> startServer() {
    ServerProcess::Options o;
    o.persistDir = dir_ / "state";
    o.stderrLog = dir_ / ("server-" + std::to_string(++starts_) + ".log");
    o.extraArgs = {"--shards", "2"};
    lastLog_ = o.stderrLog;
    return ServerProcess::start(std::move(o));
  }
  void TearDown() override {
    if (HasFailure() && !lastLog_.empty()) std::cerr << "---- server stderr ----\n" << readFile(lastLog_) << "----\n";
  }

  static json::value parse(const HttpResponse& r) {
    boost::system::error_code ec;
    auto v = json::parse(r.body, ec);
    if (ec) ADD_FAILURE() << "not JSON: " << r.body;
    return v;
  }
  static std::int64_t add(HttpConnection& c, const std::string& book, const std::string& text) {
    const auto r = c.post("/notes/" + book, json::serialize(json::object{{"text", text}}));
    EXPECT_EQ(r.status, 201) << r.body;
    const auto v = parse(r);
    if (!v.is_object() || !v.as_object().contains("id")) return -1;
    return v.at("id").as_int64();
  }
  static std::vector<std::string> texts(const json::value& list) {
    std::vector<std::string> out;
    if (!list.is_array()) {
      ADD_FAILURE() << "not an array: " << json::serialize(list);
      return out;
    }
    for (const auto& n : list.as_array()) out.emplace_back(n.at("text").as_string());
    return out;
  }
  std::string encode(const std::string& s) {
    std::string out;
    static const char* hex = "0123456789ABCDEF";
    for (unsigned char c : s) {
      if (std::isalnum(c)) {
        out += static_cast<char>(c);
      } else {
        out += '%';
        out += hex[c >> 4];
        out += hex[c & 15];
      }
    }
    return out;
  }

  TempDir dir_;
  int starts_ = 0;
  fs::path lastLog_;
};

TEST_F(NotesTest, RoutesAnswerWithTheExactShapesAndErrors) {
  auto server = startServer();
  HttpConnection c(server->host(), server->port());

  const auto created = c.post("/notes/book", R"({"text":"buy milk"})");
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_NE(created.header("content-type").find("application/json"), std::string::npos);
  const auto note = parse(created).as_object();
  EXPECT_EQ(note.size(), 3u);
  EXPECT_EQ(note.at("text").as_string(), "buy milk");
  EXPECT_TRUE(note.at("id").is_int64());
  const auto createdAt = note.at("createdAt").as_int64();
  const auto nowMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  EXPECT_LE(std::abs(nowMs - createdAt), 60'000);

  for (const char* bad : {"not json", "", "[]", "{}", R"({"text":""})", R"({"text":5})", R"({"text":null})",
                          R"({"txt":"x"})"}) {
    const auto r = c.post("/notes/book", bad);
    EXPECT_EQ(r.status, 400) << bad << " -> " << r.body;
    const auto v = parse(r);
    EXPECT_TRUE(v.is_object() && v.as_object().contains("error") && v.at("error").is_string()) << r.body;
  }

  add(c, "book", "walk the dog");
  add(c, "book", "buy bread and milk");
  EXPECT_EQ(texts(parse(c.get("/notes/book"))),
            (std::vector<std::string>{"buy bread and milk", "walk the dog", "buy milk"}))
      << "newest first";
  EXPECT_EQ(texts(parse(c.get("/notes/book?q=milk"))), (std::vector<std::string>{"buy bread and milk", "buy milk"}));
  EXPECT_EQ(texts(parse(c.get("/notes/book?q=MILK%20bread"))), (std::vector<std::string>{"buy bread and milk"}));
  EXPECT_EQ(texts(parse(c.get("/notes/book?q=cheese"))), (std::vector<std::string>{}));
  EXPECT_EQ(texts(parse(c.get("/notes/other"))), (std::vector<std::string>{})) << "each notebook is its own";

  const auto id = note.at("id").as_int64();
  EXPECT_EQ(c.request("DELETE", "/notes/book/" + std::to_string(id)).status, 204);
  EXPECT_EQ(c.request("DELETE", "/notes/book/" + std::to_string(id)).status, 404);
  EXPECT_EQ(c.request("DELETE", "/notes/book/abc").status, 404);
  EXPECT_EQ(c.request("DELETE", "/notes/book/99999").status, 404);
  EXPECT_EQ(texts(parse(c.get("/notes/book?q=milk"))), (std::vector<std::string>{"buy bread and milk"}))
      << "a deleted note leaves the index too";
}

TEST_F(NotesTest, SearchInputCannotBreakOrInjectAnything) {
  auto server = startServer();
  HttpConnection c(server->host(), server->port());
  add(c, "safe", "alpha beta");
  add(c, "safe", "gamma");
  const std::vector<std::string> queries{"'); DROP TABLE notes; --", "\" OR 1=1 --", "*", "alpha*", "NEAR(alpha beta)", "alpha AND", "text:alpha",
        "\"unbalanced", "(", ")", "^alpha", "-", "'", "\\", "%", "_", "\xff\xfe", "\xe2\x98\x83", "NOT gamma",
        "alpha OR gamma", std::string(5000, 'a'), "' UNION SELECT sql, 1, 1 FROM sqlite_schema --"};
  for (const std::string& q : queries) {
    const auto r = c.get("/notes/safe?q=" + encode(q));
    EXPECT_EQ(r.status, 200) << q << " -> " << r.body;
    const auto found = texts(parse(r));
    for (const auto& t : found) EXPECT_TRUE(t == "alpha beta" || t == "gamma") << q << " found " << t;
  }
  // Words are matched as words: the operators are words too, so nothing matches them here.
  EXPECT_EQ(texts(parse(c.get("/notes/safe?q=" + encode("alpha OR gamma")))), (std::vector<std::string>{}));
  EXPECT_EQ(texts(parse(c.get("/notes/safe?q=" + encode("'alpha'")))), (std::vector<std::string>{"alpha beta"}));
  EXPECT_EQ(texts(parse(c.get("/notes/safe"))).size(), 2u) << "nothing was dropped or changed";
}

TEST_F(NotesTest, AcknowledgedNotesSurviveARestartAndKill9UnderLoad) {
  std::set<std::int64_t> acknowledged;
  {
    auto server = startServer();
    HttpConnection c(server->host(), server->port());
    for (int i = 0; i < 20; ++i) acknowledged.insert(add(c, "load", "before " + std::to_string(i)));
    EXPECT_EQ(server->stop().code, 0);
  }
  auto server = startServer();
  {
    HttpConnection c(server->host(), server->port());
    EXPECT_EQ(texts(parse(c.get("/notes/load"))).size(), 20u) << "a clean restart keeps every note";
  }
  std::mutex mu;
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      HttpConnection c(server->host(), server->port(), 5s);
      for (int i = 0; !stop; ++i) {
        try {
          const auto r = c.post("/notes/load", json::serialize(json::object{{"text", "w" + std::to_string(w) + " n" + std::to_string(i)}}));
          if (r.status != 201) continue;
          const auto v = json::parse(r.body);
          std::lock_guard lock(mu);
          acknowledged.insert(v.at("id").as_int64());
        } catch (const std::exception&) {
          return;  // the server is gone
        }
      }
    });
  }
  std::this_thread::sleep_for(1500ms);
  server->kill9();
  stop = true;
  for (auto& t : writers) t.join();
  ASSERT_GT(acknowledged.size(), 40u) << "the writers made progress before the kill";

  auto again = startServer();
  HttpConnection c(again->host(), again->port());
  const auto all = parse(c.get("/notes/load"));
  std::set<std::int64_t> stored;
  for (const auto& n : all.as_array()) stored.insert(n.at("id").as_int64());
  for (auto id : acknowledged) EXPECT_TRUE(stored.contains(id)) << "acknowledged note " << id << " was lost";
  // And the notebook still takes writes, with new ids.
  const auto next = add(c, "load", "after the crash");
  EXPECT_FALSE(acknowledged.contains(next));
  EXPECT_EQ(texts(parse(c.get("/notes/load?q=crash"))), (std::vector<std::string>{"after the crash"}));
}

// Point-in-time recovery over HTTP: a bookmark, a restore to it (202, then the notebook restarts
// and serves that state), the undo bookmark bringing the later note back, the bad inputs, and
// the restored state across a restart of the server.
TEST_F(NotesTest, BookmarksRestoreTheNotebookAndTheUndoBookmarkBringsItBack) {
  auto server = startServer();
  HttpConnection c(server->host(), server->port());
  add(c, "pitr", "first note");
  add(c, "pitr", "second note");
  const auto bookmarkReply = c.get("/notes/pitr/bookmark");
  ASSERT_EQ(bookmarkReply.status, 200) << bookmarkReply.body;
  const std::string two(parse(bookmarkReply).at("bookmark").as_string());
  add(c, "pitr", "third note");

  // Waits (a bounded while) until the notebook serves `expected`: the restart follows the 202.
  auto serves = [&](const std::vector<std::string>& expected) {
    std::vector<std::string> got;
    for (int i = 0; i < 200; ++i) {
      const auto r = c.get("/notes/pitr");
      if (r.status == 200 && (got = texts(parse(r))) == expected) return true;
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "still serving " << json::serialize(json::value_from(got));
    return false;
  };

  const auto restored = c.post("/notes/pitr/restore", json::serialize(json::object{{"bookmark", two}}));
  ASSERT_EQ(restored.status, 202) << restored.body;
  const std::string undo(parse(restored).at("undo").as_string());
  EXPECT_GT(undo, two) << "bookmarks sort in time order";
  EXPECT_TRUE(serves({"second note", "first note"}));
  EXPECT_EQ(texts(parse(c.get("/notes/pitr?q=third"))), (std::vector<std::string>{})) << "the index went back too";

  ASSERT_EQ(c.post("/notes/pitr/restore", json::serialize(json::object{{"bookmark", undo}})).status, 202);
  EXPECT_TRUE(serves({"third note", "second note", "first note"}));
  EXPECT_EQ(texts(parse(c.get("/notes/pitr?q=third"))), (std::vector<std::string>{"third note"}));

  // By time: a moment before anything was written is the empty notebook.
  const auto before = c.get("/notes/pitr/bookmark?at=" + std::to_string(1'000'000'000'000 + 0));
  EXPECT_EQ(before.status, 400) << "2001 is outside the 30 days kept: " << before.body;
  const auto nowMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  const auto recent = c.get("/notes/pitr/bookmark?at=" + std::to_string(nowMs - 60'000));
  ASSERT_EQ(recent.status, 200) << recent.body;
  ASSERT_EQ(c.post("/notes/pitr/restore", json::serialize(json::object{{"bookmark", parse(recent).at("bookmark")}})).status,
            202);
  EXPECT_TRUE(serves({}));

  for (const char* bad : {"", "not json", "{}", R"({"bookmark":5})", R"({"bookmark":""})",
                          R"({"bookmark":"0000000000000000-zzzzzzzzzzzzzzzz"})",
                          R"({"bookmark":"00000000ffffffff-00000000000000ff"})"}) {
    const auto r = c.post("/notes/pitr/restore", bad);
    EXPECT_EQ(r.status, 400) << bad << " -> " << r.body;
    EXPECT_TRUE(parse(r).as_object().contains("error")) << r.body;
  }
  EXPECT_EQ(c.get("/notes/pitr/bookmark?at=soon").status, 400);

  // The restored (empty) state, then a note, across a restart.
  add(c, "pitr", "after the restores");
  c.close();
  EXPECT_EQ(server->stop().code, 0);
  auto again = startServer();
  HttpConnection d(again->host(), again->port());
  EXPECT_EQ(texts(parse(d.get("/notes/pitr"))), (std::vector<std::string>{"after the restores"}));
}

}  // namespace
}  // namespace durable_it
