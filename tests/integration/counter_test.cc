// End-to-end tests of the `durable` binary serving the seed app (examples/seed): the HTTP
// routes, concurrency on one object, persistence across clean restarts, kill -9 and SIGTERM
// under load, malformed HTTP, config errors and --help.
#include "integration/server_process.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include <poll.h>
#include <sqlite3.h>

namespace durable_it {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCounterType = "text/plain;charset=UTF-8";
constexpr const char* kTextType = "text/plain; charset=UTF-8";

std::string countBody(long long n) { return "{\"count\":" + std::to_string(n) + "}"; }

// {"count":N} -> N; fails the test (and returns -1) on anything else.
long long parseCount(const HttpResponse& r) {
  EXPECT_EQ(r.status, 200) << r.body;
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  if (ec || !v.is_object() || !v.as_object().contains("count") || !v.as_object().at("count").is_int64()) {
    ADD_FAILURE() << "not a count body: '" << r.body << "'";
    return -1;
  }
  EXPECT_EQ(v.as_object().size(), 1u) << r.body;
  return v.as_object().at("count").as_int64();
}

class CounterTest : public ::testing::Test {
 protected:
  fs::path stateDir() const { return dir_ / "state"; }

  // Two shards whatever the machine (the default depends on its cores), so that requests
  // accepted on one shard reach objects owned by the other.
  std::unique_ptr<ServerProcess> startServer(std::vector<std::string> extraArgs = {"--shards", "2"}) {
    ServerProcess::Options o;
    o.persistDir = stateDir();
    o.stderrLog = dir_ / ("server-" + std::to_string(++starts_) + ".log");
    o.extraArgs = std::move(extraArgs);
    lastLog_ = o.stderrLog;
    return ServerProcess::start(std::move(o));
  }

  void TearDown() override {
    if (HasFailure() && !lastLog_.empty()) {
      std::cerr << "---- last server stderr (" << lastLog_ << ") ----\n" << readFile(lastLog_) << "----\n";
    }
  }

  TempDir dir_;
  int starts_ = 0;
  fs::path lastLog_;
};

// ---- routes ----

TEST_F(CounterTest, RoutesReturnExactStatusTypeAndBody) {
  auto server = startServer();
  HttpConnection c(server->host(), server->port());

  auto health = c.get("/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.header("content-type"), kTextType);
  EXPECT_EQ(health.body, "ok");

  for (int i = 1; i <= 3; ++i) {
    auto r = c.post("/counters/alpha/increment");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("content-type"), kCounterType);
    EXPECT_EQ(r.body, countBody(i));
    EXPECT_TRUE(r.keepAlive);
  }

  auto got = c.get("/counters/alpha");
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.header("content-type"), kCounterType);
  EXPECT_EQ(got.body, countBody(3));

  auto reset = c.post("/counters/alpha/reset");
  EXPECT_EQ(reset.status, 200);
  EXPECT_EQ(reset.header("content-type"), kCounterType);
  EXPECT_EQ(reset.body, countBody(0));
  EXPECT_EQ(c.get("/counters/alpha").body, countBody(0));
  EXPECT_EQ(c.post("/counters/alpha/increment").body, countBody(1));

  // A counter never touched reads 0; GET does not create or change it.
  EXPECT_EQ(c.get("/counters/never-touched").body, countBody(0));
  EXPECT_EQ(c.get("/counters/never-touched").body, countBody(0));

  // Unknown paths and wrong methods.
  const std::vector<std::pair<std::string, std::string>> notFound = {
      {"GET", "/"},
      {"GET", "/nope"},
      {"GET", "/counters"},
      {"GET", "/counters/alpha/increment"},  // wrong method
      {"POST", "/counters/alpha"},           // wrong method
      {"GET", "/counters/alpha/reset"},      // wrong method
      {"POST", "/health"},                   // wrong method
      {"DELETE", "/counters/alpha"},
      {"PUT", "/counters/alpha/increment"},
      {"POST", "/counters/alpha/increment/extra"},
      {"POST", "/counters//increment"},
  };
  for (const auto& [method, target] : notFound) {
    SCOPED_TRACE(method + " " + target);
    auto r = c.request(method, target);
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.body, "404 Not Found");
  }
  // None of the 404s touched the counter.
  EXPECT_EQ(c.get("/counters/alpha").body, countBody(1));

  // One-shot (Connection: close) requests work too and the server honours the close.
  auto once = httpRequest(server->host(), server->port(), "POST", "/counters/alpha/increment");
  EXPECT_EQ(once.status, 200);
  EXPECT_EQ(once.body, countBody(2));
  EXPECT_FALSE(once.keepAlive);

  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(CounterTest, DifferentIdsAreIndependent) {
  auto server = startServer();
  HttpConnection c(server->host(), server->port());
  for (int i = 1; i <= 5; ++i) EXPECT_EQ(c.post("/counters/a/increment").body, countBody(i));
  for (int i = 1; i <= 2; ++i) EXPECT_EQ(c.post("/counters/b/increment").body, countBody(i));
  EXPECT_EQ(c.post("/counters/A/increment").body, countBody(1));  // ids are case-sensitive names
  EXPECT_EQ(c.post("/counters/a-b/increment").body, countBody(1));

  EXPECT_EQ(c.get("/counters/a").body, countBody(5));
  EXPECT_EQ(c.get("/counters/b").body, countBody(2));
  EXPECT_EQ(c.get("/counters/c").body, countBody(0));

  EXPECT_EQ(c.post("/counters/a/reset").body, countBody(0));
  EXPECT_EQ(c.get("/counters/a").body, countBody(0));
  EXPECT_EQ(c.get("/counters/b").body, countBody(2));
  EXPECT_EQ(c.get("/counters/A").body, countBody(1));
  EXPECT_EQ(c.get("/counters/a-b").body, countBody(1));
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

// ---- concurrency ----

TEST_F(CounterTest, TwoHundredConcurrentIncrementsOnOneIdAreSerialised) {
  auto server = startServer();
  constexpr int kThreads = 10;
  constexpr int kPerThread = 20;
  std::mutex mu;
  std::vector<long long> counts;
  std::vector<std::string> errors;
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      HttpConnection c(server->host(), server->port());
      std::vector<long long> mine;
      std::vector<std::string> myErrors;
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();  // start together
      for (int i = 0; i < kPerThread; ++i) {
        try {
          auto r = c.post("/counters/hot/increment");
          if (r.status != 200 || r.header("content-type") != kCounterType) {
            myErrors.push_back(std::to_string(r.status) + " " + r.body);
            continue;
          }
          mine.push_back(parseCount(r));
        } catch (const std::exception& e) {
          myErrors.push_back(e.what());
        }
      }
      std::lock_guard lock(mu);
      counts.insert(counts.end(), mine.begin(), mine.end());
      errors.insert(errors.end(), myErrors.begin(), myErrors.end());
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_TRUE(errors.empty()) << errors.size() << " failed requests, first: " << errors.front();
  ASSERT_EQ(counts.size(), static_cast<std::size_t>(kThreads * kPerThread));
  std::sort(counts.begin(), counts.end());
  std::vector<long long> expected(kThreads * kPerThread);
  for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<long long>(i + 1);
  EXPECT_EQ(counts, expected) << "every increment must see a distinct count 1..200";

  EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/counters/hot").body, countBody(200));
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(CounterTest, TwoHundredIncrementsInFlightAtOnceGetOneToTwoHundred) {
  auto server = startServer();
  // 200 clients, each on its own connection and thread, released together: all 200 requests
  // are on the wire before the first reply can come back.
  constexpr int kClients = 200;
  std::mutex mu;
  std::condition_variable cv;
  bool go = false;
  std::vector<std::string> replies(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return go; });
      }
      replies[i] = rawExchange(server->host(), server->port(),
                               "POST /counters/wire/increment HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n",
                               30s)
                       .received;
    });
  }
  {
    std::lock_guard lock(mu);
    go = true;
  }
  cv.notify_all();
  for (auto& t : threads) t.join();

  std::vector<long long> counts;
  for (const auto& raw : replies) {
    HttpResponse r = parseResponse(raw);
    ASSERT_EQ(r.status, 200) << raw;
    counts.push_back(parseCount(r));
  }
  std::sort(counts.begin(), counts.end());
  std::vector<long long> expected(kClients);
  for (int i = 0; i < kClients; ++i) expected[i] = i + 1;
  EXPECT_EQ(counts, expected) << "every increment must see a distinct count 1..200";
  EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/counters/wire").body, countBody(kClients));
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(CounterTest, TwoHundredConnectionsEachIncrementOnce) {
  auto server = startServer();
  // 200 connections, all opened before any request is sent, then 200 requests at once.
  constexpr int kConnections = 200;
  constexpr int kThreads = 8;
  std::vector<std::unique_ptr<HttpConnection>> conns;
  for (int i = 0; i < kConnections; ++i) {
    conns.push_back(std::make_unique<HttpConnection>(server->host(), server->port()));
  }
  std::mutex mu;
  std::set<long long> seen;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kConnections; i += kThreads) {
        try {
          auto r = conns[i]->post("/counters/fan/increment");
          long long n = parseCount(r);
          std::lock_guard lock(mu);
          if (!seen.insert(n).second) errors.push_back("duplicate count " + std::to_string(n));
        } catch (const std::exception& e) {
          std::lock_guard lock(mu);
          errors.push_back(e.what());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(errors.empty()) << errors.size() << " errors, first: " << errors.front();
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kConnections));
  EXPECT_EQ(*seen.begin(), 1);
  EXPECT_EQ(*seen.rbegin(), kConnections);
  EXPECT_EQ(conns[0]->get("/counters/fan").body, countBody(kConnections));
  conns.clear();
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

// ---- persistence ----

TEST_F(CounterTest, StateSurvivesCleanRestart) {
  const std::map<std::string, int> plan = {{"p", 7}, {"q", 1}, {"r", 12}, {"zeroed", 3}};
  {
    auto server = startServer();
    HttpConnection c(server->host(), server->port());
    for (const auto& [id, n] : plan) {
      for (int i = 1; i <= n; ++i) ASSERT_EQ(c.post("/counters/" + id + "/increment").body, countBody(i));
    }
    ASSERT_EQ(c.post("/counters/zeroed/reset").body, countBody(0));
    c.close();
    const ExitStatus st = server->stop();
    EXPECT_TRUE(st.exited) << st.describe();
    EXPECT_EQ(st.code, 0) << server->stderrText();
  }
  {
    auto server = startServer();
    HttpConnection c(server->host(), server->port());
    EXPECT_EQ(c.get("/counters/p").body, countBody(7));
    EXPECT_EQ(c.get("/counters/q").body, countBody(1));
    EXPECT_EQ(c.get("/counters/r").body, countBody(12));
    EXPECT_EQ(c.get("/counters/zeroed").body, countBody(0));
    EXPECT_EQ(c.post("/counters/p/increment").body, countBody(8));  // keeps counting from the stored value
    c.close();
    EXPECT_EQ(server->stop().describe(), "exit code 0");
  }
  {
    // And once more: the increment made after the first restart is durable too.
    auto server = startServer();
    EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/counters/p").body, countBody(8));
    EXPECT_EQ(server->stop().describe(), "exit code 0");
  }
}

// Several threads increment several ids until `stopWhen` says so; then `interrupt` hits the
// server while requests are still in flight. Returns, per id, the requests sent and the
// highest count acknowledged.
struct LoadResult {
  std::vector<long long> sent, maxAcked;
  long long acked = 0;
  std::vector<std::string> unexpected;  // responses other than 200 {"count":N}
};

template <class Interrupt>
LoadResult loadThenInterrupt(ServerProcess& server, int ids, int threads, long long ackedBeforeInterrupt,
                             Interrupt interrupt) {
  std::vector<std::atomic<long long>> sent(ids), maxAcked(ids);
  std::atomic<long long> acked{0};
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> unexpected;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      HttpConnection c(server.host(), server.port(), 20s);
      for (long long i = 0;; ++i) {
        const int id = static_cast<int>((t + i) % ids);
        sent[id].fetch_add(1);
        HttpResponse r;
        try {
          r = c.post("/counters/load-" + std::to_string(id) + "/increment");
        } catch (const HttpError&) {
          return;  // the server went away (or closed the connection while stopping)
        }
        boost::system::error_code ec;
        auto v = boost::json::parse(r.body, ec);
        if (r.status != 200 || ec || !v.is_object() || !v.as_object().contains("count")) {
          std::lock_guard lock(mu);
          unexpected.push_back(std::to_string(r.status) + " " + r.body);
          return;
        }
        const long long n = v.as_object().at("count").as_int64();
        long long prev = maxAcked[id].load();
        while (prev < n && !maxAcked[id].compare_exchange_weak(prev, n)) {
        }
        if (acked.fetch_add(1) + 1 == ackedBeforeInterrupt) cv.notify_all();
      }
    });
  }
  {
    std::unique_lock lock(mu);
    const bool reached = cv.wait_for(lock, 30s, [&] { return acked.load() >= ackedBeforeInterrupt; });
    EXPECT_TRUE(reached) << "only " << acked.load() << " requests acknowledged in 30 s";
  }
  interrupt();  // requests are in flight right now: every worker is in a request loop
  for (auto& w : workers) w.join();

  LoadResult result;
  for (int i = 0; i < ids; ++i) {
    result.sent.push_back(sent[i].load());
    result.maxAcked.push_back(maxAcked[i].load());
  }
  result.acked = acked.load();
  result.unexpected = std::move(unexpected);
  return result;
}

void checkAfterRestart(ServerProcess& server, const LoadResult& load) {
  EXPECT_TRUE(load.unexpected.empty()) << load.unexpected.size() << " unexpected responses, first: "
                                       << load.unexpected.front();
  HttpConnection c(server.host(), server.port());
  for (std::size_t id = 0; id < load.sent.size(); ++id) {
    SCOPED_TRACE("load-" + std::to_string(id));
    const long long n = parseCount(c.get("/counters/load-" + std::to_string(id)));
    EXPECT_GE(n, load.maxAcked[id]) << "an acknowledged increment was lost";
    EXPECT_LE(n, load.sent[id]) << "more increments than requests sent";
    EXPECT_GT(load.maxAcked[id], 0) << "the load never reached this id";
  }
}

TEST_F(CounterTest, Kill9KeepsEveryAcknowledgedIncrement) {
  constexpr int kIds = 4;
  LoadResult load;
  {
    auto server = startServer();
    load = loadThenInterrupt(*server, kIds, 8, 150, [&] {
      const ExitStatus st = server->kill9();
      EXPECT_EQ(st.signal, SIGKILL) << st.describe();
    });
  }
  auto server = startServer();
  checkAfterRestart(*server, load);
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

// "relaxed" skips the fdatasync, not the commit: a crash of the process loses nothing
// acknowledged (only a crash of the machine may).
TEST_F(CounterTest, Kill9UnderRelaxedDurabilityKeepsEveryAcknowledgedIncrement) {
  const std::vector<std::string> relaxed = {"--shards", "2", "--durability", "relaxed"};
  constexpr int kIds = 4;
  LoadResult load;
  {
    auto server = startServer(relaxed);
    load = loadThenInterrupt(*server, kIds, 8, 150, [&] {
      const ExitStatus st = server->kill9();
      EXPECT_EQ(st.signal, SIGKILL) << st.describe();
    });
  }
  auto server = startServer(relaxed);
  checkAfterRestart(*server, load);
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(CounterTest, SigtermDuringBurstDrainsAndKeepsAcknowledgedIncrements) {
  constexpr int kIds = 3;
  LoadResult load;
  {
    auto server = startServer();
    load = loadThenInterrupt(*server, kIds, 8, 100, [&] {
      const auto t0 = std::chrono::steady_clock::now();
      const ExitStatus st = server->stop(20s);
      const auto took = std::chrono::steady_clock::now() - t0;
      EXPECT_TRUE(st.exited) << st.describe();
      EXPECT_EQ(st.code, 0) << server->stderrText();
      // Draining must not wait out its 10 s deadline just because clients keep their
      // keep-alive connections busy.
      EXPECT_LT(took, 5s) << "SIGTERM took "
                          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
    });
  }
  auto server = startServer();
  checkAfterRestart(*server, load);
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(CounterTest, SigintDuringBurstDrainsAndKeepsAcknowledgedIncrements) {
  constexpr int kIds = 3;
  LoadResult load;
  {
    auto server = startServer();
    load = loadThenInterrupt(*server, kIds, 8, 100, [&] {
      const ExitStatus st = server->stop(20s, SIGINT);
      EXPECT_TRUE(st.exited) << st.describe();
      EXPECT_EQ(st.code, 0) << server->stderrText();
      EXPECT_NE(server->stderrText().find("SIGINT"), std::string::npos) << server->stderrText();
    });
  }
  auto server = startServer();
  checkAfterRestart(*server, load);
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(CounterTest, SigtermWhenIdleExitsZeroPromptly) {
  auto server = startServer();
  // An idle keep-alive connection must not hold the shutdown up.
  HttpConnection idle(server->host(), server->port());
  EXPECT_EQ(idle.get("/health").status, 200);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(server->stop().describe(), "exit code 0");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_NE(server->stderrText().find("SIGTERM"), std::string::npos);
}

// A route parameter decodes as a Worker's URL pattern groups do: bytes that are not UTF-8
// become U+FFFD (issue 18), so the request is served, by the object named U+FFFD.
TEST_F(CounterTest, PathParameterThatIsNotUtf8NamesTheReplacementCharacter) {
  auto server = startServer();
  auto r = httpRequest(server->host(), server->port(), "POST", "/counters/%ff/increment");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, countBody(1));
  auto same = httpRequest(server->host(), server->port(), "GET", "/counters/%EF%BF%BD");
  EXPECT_EQ(same.body, countBody(1));
  EXPECT_EQ(server->stop().describe(), "exit code 0");
  EXPECT_EQ(server->stderrText().find("threw"), std::string::npos) << server->stderrText();
}

TEST_F(CounterTest, TargetsAreReadAsAWorkersUrlReadsThem) {
  auto server = startServer();
  auto send = [&](const std::string& method, const std::string& target) {
    RawExchange x = rawExchange(server->host(), server->port(),
                                method + " " + target + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                                5s);
    return parseResponse(x.received);
  };
  // Dot segments are resolved, plain or percent-encoded, and a fragment is dropped.
  for (const std::string target : {"/./health", "/counters/q/../../health", "/%2e/x/%2E%2e/health", "/health#f"}) {
    SCOPED_TRACE(target);
    auto r = send("GET", target);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "ok");
  }
  // Bytes a URL may not hold are encoded, not refused: the same object either way.
  EXPECT_EQ(send("POST", "/counters/a|b/increment").body, countBody(1));
  EXPECT_EQ(send("GET", "/counters/a%7Cb").body, countBody(1));
  EXPECT_EQ(send("POST", "/counters/a{b}^`/increment").body, countBody(1));
  EXPECT_EQ(send("GET", "/counters/a%7Bb%7D%5E%60").body, countBody(1));
  // A '%' that starts no escape is a literal '%'.
  EXPECT_EQ(send("POST", "/counters/%zz/increment").body, countBody(1));
  EXPECT_EQ(send("GET", "/counters/%25zz").body, countBody(1));
  EXPECT_EQ(send("GET", "/health?q=%").status, 200);
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(CounterTest, ExpectContinueGetsA100BeforeTheBodyIsSent) {
  auto server = startServer();
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address(server->host()), server->port()});
  // The head alone: a client that asked for 100-continue waits for it before the body.
  asio::write(socket, asio::buffer(std::string("POST /counters/cont/increment HTTP/1.1\r\nHost: x\r\n"
                                               "Content-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")));
  pollfd pfd{socket.native_handle(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 3000), 1) << "no 100 Continue within 3 s";
  asio::streambuf in;
  asio::read_until(socket, in, "\r\n\r\n");
  std::string interim(asio::buffers_begin(in.data()), asio::buffers_end(in.data()));
  EXPECT_EQ(interim.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0), 0u) << interim;
  in.consume(std::string_view("HTTP/1.1 100 Continue\r\n\r\n").size());
  asio::write(socket, asio::buffer(std::string("abc")));
  boost::system::error_code ec;
  asio::read(socket, in, ec);  // to the end: the server closes after its reply
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
  std::string rest(asio::buffers_begin(in.data()), asio::buffers_end(in.data()));
  EXPECT_EQ(parseResponse(rest).status, 200) << rest;
  EXPECT_EQ(parseResponse(rest).body, countBody(1));
  socket.close();
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

// ---- malformed HTTP ----

TEST_F(CounterTest, MalformedRequestsGet400JsonAndTheConnectionCloses) {
  auto server = startServer();
  const std::vector<std::string> cases = {
      "GARBAGE\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
      "GET /health HTTP/7.1\r\nHost: x\r\n\r\n",
      "GET /health HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
      "GET health HTTP/1.1\r\nHost: x\r\n\r\n",  // target must start with '/'
      "POST /counters/m/increment HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      // The Host header is part of the URL the Worker routes: it must not be able to move the path.
      "POST /increment HTTP/1.1\r\nHost: x/counters/m\r\nContent-Length: 0\r\n\r\n",
      "POST /increment HTTP/1.1\r\nHost: x?/counters/m\r\nContent-Length: 0\r\n\r\n",
      "GET /health HTTP/1.1\r\nHost: x#y\r\n\r\n",
      "GET /health HTTP/1.1\r\nHost: user@x\r\n\r\n",
      "GET /health HTTP/1.1\r\nHost: x:8o\r\n\r\n",
      "GET /health HTTP/1.1\r\nHost: [::1\r\n\r\n",
      "GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
  };
  for (const auto& bytes : cases) {
    SCOPED_TRACE(bytes);
    RawExchange x = rawExchange(server->host(), server->port(), bytes, 5s);
    EXPECT_TRUE(x.peerClosed) << "the server must close the connection; got: " << x.received;
    EXPECT_FALSE(x.reset) << "the 400 must not be cut off by a reset";
    ASSERT_FALSE(x.received.empty()) << "no response at all";
    HttpResponse r = parseResponse(x.received);
    EXPECT_EQ(r.status, 400) << x.received;
    EXPECT_FALSE(r.keepAlive);
    EXPECT_NE(r.header("content-type").find("application/json"), std::string::npos) << r.header("content-type");
    boost::system::error_code ec;
    auto v = boost::json::parse(r.body, ec);
    ASSERT_FALSE(ec) << "not JSON: " << r.body;
    ASSERT_TRUE(v.is_object()) << r.body;
    ASSERT_TRUE(v.as_object().contains("error")) << r.body;
    EXPECT_TRUE(v.as_object().at("error").is_string()) << r.body;
    EXPECT_FALSE(v.as_object().at("error").as_string().empty());
  }

  // A valid request followed by garbage on the same connection: the first is answered, the
  // garbage gets a 400, then the connection closes.
  RawExchange x = rawExchange(server->host(), server->port(),
                              "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n", 5s);
  EXPECT_TRUE(x.peerClosed);
  EXPECT_EQ(x.received.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << x.received;
  EXPECT_NE(x.received.find("HTTP/1.1 400 "), std::string::npos) << x.received;

  // Hosts that are authorities are served: a name, IPv4 and IPv6 literals, with or without port.
  for (const std::string host : {"example.com", "example.com:8080", "127.0.0.1:1", "[::1]:8787", "[::1]"}) {
    SCOPED_TRACE(host);
    RawExchange ok = rawExchange(server->host(), server->port(),
                                 "GET /health HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n", 5s);
    EXPECT_EQ(ok.received.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << ok.received;
  }

  // Nothing of it reached the counter, and the server is still healthy.
  HttpConnection c(server->host(), server->port());
  auto health = c.get("/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok");
  EXPECT_EQ(c.get("/counters/m").body, countBody(0));
  EXPECT_EQ(c.post("/counters/m/increment").body, countBody(1));
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(CounterTest, MalformedRequestFollowedByMoreBytesStillGetsItsResponse) {
  auto server = startServer();
  // The server stops reading at the error; closing with unread bytes pending must not reset
  // the connection before the client has read the 400.
  for (std::size_t extra : {std::size_t{1000}, std::size_t{200000}}) {
    SCOPED_TRACE(extra);
    RawExchange x = rawExchange(server->host(), server->port(), "GARBAGE\r\n\r\n" + std::string(extra, 'x'), 5s);
    ASSERT_FALSE(x.received.empty()) << "no response (reset: " << x.reset << ")";
    EXPECT_EQ(parseResponse(x.received).status, 400) << x.received;
    EXPECT_TRUE(x.peerClosed);
  }
  EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/health").body, "ok");
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(CounterTest, ClientThatDisconnectsMidRequestDoesNotHurtTheServer) {
  auto server = startServer();
  // Half a request head, then the client goes away.
  RawExchange x = rawExchange(server->host(), server->port(), "POST /counters/h/incr", 200ms);
  EXPECT_TRUE(x.received.empty()) << x.received;
  // A complete head announcing a body that never comes.
  x = rawExchange(server->host(), server->port(),
                  "POST /counters/h/increment HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", 200ms);
  EXPECT_TRUE(x.received.empty()) << x.received;
  HttpConnection c(server->host(), server->port());
  EXPECT_EQ(c.get("/health").body, "ok");
  EXPECT_EQ(c.get("/counters/h").body, countBody(0));
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

// ---- CLI ----

TEST_F(CounterTest, BindingToUndeclaredClassExitsOneNamingFileAndLine) {
  const fs::path toml = dir_ / "undeclared.toml";
  writeFile(toml,
            "name = \"bad\"\n"                      // 1
            "\n"                                    // 2
            "[[durable_objects.bindings]]\n"        // 3
            "name = \"FOO\"\n"                      // 4
            "class_name = \"Nope\"\n");             // 5
  auto r = runBinary({"serve", "--config", toml.string(), "--listen", "127.0.0.1:0", "--persist-to",
                      (dir_ / "state-undeclared").string()},
                     dir_.path());
  EXPECT_TRUE(r.status.exited) << r.status.describe();
  EXPECT_EQ(r.status.code, 1) << r.err;
  EXPECT_EQ(r.out.find("listening"), std::string::npos) << r.out;
  const std::string where = toml.string() + ":";
  EXPECT_TRUE(r.err.find(where + "3") != std::string::npos || r.err.find(where + "4") != std::string::npos ||
              r.err.find(where + "5") != std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("FOO"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Nope"), std::string::npos) << r.err;
}

TEST_F(CounterTest, BindingToUnexportedClassExitsOneAndLeavesTheDirectoryUsable) {
  const fs::path toml = dir_ / "unexported.toml";
  writeFile(toml,
            "name = \"bad\"\n"                      // 1
            "[[migrations]]\n"                      // 2
            "tag = \"v1\"\n"                        // 3
            "new_classes = [\"Nope\"]\n"            // 4
            "\n"                                    // 5
            "[[durable_objects.bindings]]\n"        // 6
            "name = \"FOO\"\n"                      // 7
            "class_name = \"Nope\"\n");             // 8
  auto r = runBinary({"serve", "--config", toml.string(), "--listen", "127.0.0.1:0", "--persist-to",
                      stateDir().string()},
                     dir_.path());
  EXPECT_TRUE(r.status.exited) << r.status.describe();
  EXPECT_EQ(r.status.code, 1) << r.err;
  EXPECT_EQ(r.out.find("listening"), std::string::npos) << r.out;
  const std::string where = toml.string() + ":";
  EXPECT_TRUE(r.err.find(where + "6") != std::string::npos || r.err.find(where + "7") != std::string::npos ||
              r.err.find(where + "8") != std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("FOO"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Nope"), std::string::npos) << r.err;

  // A serve that refused its config must not have recorded that config's migrations: the
  // same directory then serves the seed's config (whose v1 declares Counter).
  auto server = startServer();
  EXPECT_EQ(httpRequest(server->host(), server->port(), "POST", "/counters/x/increment").body, countBody(1));
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

namespace {
// Rows in the kv tables of every partition under `state`.
long long storedRows(const fs::path& state) {
  long long rows = 0;
  for (const auto& entry : fs::directory_iterator(state / "partitions")) {
    const auto name = entry.path().filename().string();
    if (name.rfind('p', 0) != 0 || entry.path().extension() != ".sqlite") continue;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(entry.path().c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      throw std::runtime_error("cannot open " + entry.path().string());
    }
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM kv", -1, &q, nullptr) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW) {
      rows += sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
  }
  return rows;
}
}  // namespace

// wrangler's migrations against the real binary and the files it leaves: a rename keeps the
// class's objects and their data, a delete removes them from disk.
TEST_F(CounterTest, RenamedClassesKeepTheirDataAndDeletedClassesLoseIt) {
  auto serveWith = [&](const std::string& name, const std::string& bindingClass, const std::string& extraMigrations) {
    const fs::path toml = dir_ / (name + ".toml");
    std::string text = readFile(seedConfig());
    const std::string binding = "name = \"COUNTER\"\nclass_name = \"Counter\"\n";
    const auto at = text.find(binding);
    if (at == std::string::npos) throw std::runtime_error("the seed config changed: no COUNTER binding");
    text.replace(at, binding.size(), "name = \"COUNTER\"\nclass_name = \"" + bindingClass + "\"\n");
    writeFile(toml, text + extraMigrations);
    ServerProcess::Options o;
    o.config = toml;
    o.persistDir = stateDir();
    o.stderrLog = dir_ / (name + ".log");
    lastLog_ = o.stderrLog;
    return ServerProcess::start(std::move(o));
  };
  const std::string toSafe = "[[migrations]]\ntag = \"t1\"\nrenamed_classes = [{from = \"Counter\", to = \"SafeDO\"}]\n";
  const std::string back = "[[migrations]]\ntag = \"t2\"\nrenamed_classes = [{from = \"SafeDO\", to = \"Counter\"}]\n";
  const std::string gone = "[[migrations]]\ntag = \"t3\"\ndeleted_classes = [\"Counter\"]\n";
  const std::string again = "[[migrations]]\ntag = \"t4\"\nnew_classes = [\"Counter\"]\n";

  {
    auto server = serveWith("v3", "Counter", "");
    for (int i = 0; i < 2; ++i) httpRequest(server->host(), server->port(), "POST", "/counters/kept/increment");
    EXPECT_EQ(server->stop().describe(), "exit code 0");
  }
  const long long before = storedRows(stateDir());
  EXPECT_GE(before, 1);
  {
    // The same objects, now of class SafeDO (which answers every request the same way).
    auto server = serveWith("v4", "SafeDO", toSafe);
    auto r = httpRequest(server->host(), server->port(), "GET", "/counters/kept");
    EXPECT_EQ(r.body, "{\"success\":true}");
    EXPECT_EQ(server->stop().describe(), "exit code 0");
  }
  EXPECT_EQ(storedRows(stateDir()), before);
  {
    auto server = serveWith("v5", "Counter", toSafe + back);
    EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/counters/kept").body, countBody(2));
    EXPECT_EQ(server->stop().describe(), "exit code 0");
  }
  {
    // Deleted: the binding goes too (a binding to a deleted class is a startup error).
    const fs::path toml = dir_ / "v6.toml";
    std::string text = readFile(seedConfig());
    const std::string binding = "[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\n";
    ASSERT_NE(text.find(binding), std::string::npos);
    text.erase(text.find(binding), binding.size());
    writeFile(toml, text + toSafe + back + gone);
    ServerProcess::Options o;
    o.config = toml;
    o.persistDir = stateDir();
    o.stderrLog = dir_ / "v6.log";
    lastLog_ = o.stderrLog;
    auto server = ServerProcess::start(std::move(o));
    EXPECT_EQ(server->stop().describe(), "exit code 0");
  }
  EXPECT_EQ(storedRows(stateDir()), 0);
  {
    // A new class of the same name starts empty.
    auto server = serveWith("v7", "Counter", toSafe + back + gone + again);
    EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/counters/kept").body, countBody(0));
    EXPECT_EQ(server->stop().describe(), "exit code 0");
  }
}

TEST_F(CounterTest, MissingConfigFileExitsNonZero) {
  auto r = runBinary({"serve", "--config", (dir_ / "does-not-exist.toml").string(), "--listen", "127.0.0.1:0",
                      "--persist-to", stateDir().string()},
                     dir_.path());
  EXPECT_TRUE(r.status.exited) << r.status.describe();
  EXPECT_NE(r.status.code, 0);
  EXPECT_NE(r.err.find("does-not-exist.toml"), std::string::npos) << r.err;
}

TEST_F(CounterTest, HelpExitsZeroAndPrintsUsage) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--help"}, std::vector<std::string>{"serve", "--help"}}) {
    auto r = runBinary(args, dir_.path());
    EXPECT_TRUE(r.status.exited) << r.status.describe();
    EXPECT_EQ(r.status.code, 0) << r.err;
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("durable serve"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--persist-to"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--listen"), std::string::npos) << r.out;
  }
  auto bad = runBinary({"serve", "--bogus-flag"}, dir_.path());
  EXPECT_TRUE(bad.status.exited);
  EXPECT_NE(bad.status.code, 0);
  EXPECT_NE(bad.err.find("--bogus-flag"), std::string::npos) << bad.err;
}

TEST_F(CounterTest, SecondServerOnTheSamePortFailsCleanly) {
  auto server = startServer();
  auto r = runBinary({"serve", "--config", seedConfig().string(), "--listen",
                      "127.0.0.1:" + std::to_string(server->port()), "--persist-to", (dir_ / "other").string()},
                     dir_.path(), 5s);
  // SO_REUSEPORT would let a second process share the port silently; either it refuses
  // (exit 1) or, if it binds, the first server keeps working. We require the refusal.
  EXPECT_TRUE(r.status.exited) << r.status.describe();
  EXPECT_EQ(r.status.code, 1) << r.out << r.err;
  EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/health").body, "ok");
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

}  // namespace
}  // namespace durable_it
