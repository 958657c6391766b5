// The seed's rate limiter over real HTTP (the `durable` binary serving the demo app): 130
// concurrent requests from one IP on keep-alive connections get exactly 100 answers and 30
// 429s, another IP is independent, and API_RATE_LIMIT in the server's environment applies.
#include "integration/server_process.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace durable_it {
namespace {

namespace fs = std::filesystem;

class RateLimitTest : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> startServer() {
    ServerProcess::Options o;
    o.persistDir = dir_ / "state";
    o.stderrLog = dir_ / ("server-" + std::to_string(++starts_) + ".log");
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

// `threads` connections each send `perThread` requests for `target` with `ip`, all threads
// released at once.
std::vector<HttpResponse> hammer(const ServerProcess& server, const std::string& target, const std::string& ip,
                                 int threads, int perThread) {
  std::mutex mu;
  std::condition_variable cv;
  bool go = false;
  std::vector<HttpResponse> all;
  std::vector<std::string> errors;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      HttpConnection c(server.host(), server.port());
      std::vector<HttpResponse> mine;
      std::string error;
      try {
        c.get("/health");  // connected before the start
        {
          std::unique_lock lock(mu);
          cv.wait(lock, [&] { return go; });
        }
        for (int i = 0; i < perThread; ++i) mine.push_back(c.request("GET", target, "", {{"cf-connecting-ip", ip}}));
      } catch (const std::exception& e) {
        error = e.what();
      }
      std::lock_guard lock(mu);
      all.insert(all.end(), mine.begin(), mine.end());
      if (!error.empty()) errors.push_back(error);
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let every thread connect
  {
    std::lock_guard lock(mu);
    go = true;
  }
  cv.notify_all();
  for (auto& t : pool) t.join();
  for (auto& e : errors) ADD_FAILURE() << e;
  return all;
}

TEST_F(RateLimitTest, ExactlyOneHundredOfOneHundredThirtyConcurrentRequests) {
  auto server = startServer();
  auto responses = hammer(*server, "/api/ping", "203.0.113.5", 13, 10);
  ASSERT_EQ(responses.size(), 130u);

  int ok = 0, limited = 0;
  std::multiset<int> remaining;
  for (const auto& r : responses) {
    EXPECT_EQ(r.header("x-ratelimit-limit"), "100");
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_FALSE(r.header("x-ratelimit-reset").empty());
    if (r.status == 200) {
      ++ok;
      EXPECT_EQ(r.body, R"({"pong":true})");
      EXPECT_EQ(r.header("retry-after"), "");
      remaining.insert(std::stoi(r.header("x-ratelimit-remaining")));
    } else {
      ++limited;
      EXPECT_EQ(r.status, 429);
      EXPECT_EQ(r.body, R"({"error":"Rate limit exceeded"})");
      EXPECT_EQ(r.header("x-ratelimit-remaining"), "0");
      const int retryAfter = std::stoi(r.header("retry-after"));
      EXPECT_GE(retryAfter, 1);
      EXPECT_LE(retryAfter, 60);
    }
  }
  EXPECT_EQ(ok, 100);
  EXPECT_EQ(limited, 30);
  std::multiset<int> want;
  for (int i = 0; i < 100; ++i) want.insert(i);
  EXPECT_EQ(remaining, want);

  // Another IP has its own window; the first stays limited.
  HttpConnection c(server->host(), server->port());
  auto other = c.request("GET", "/api/ping", "", {{"cf-connecting-ip", "203.0.113.6"}});
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(other.header("x-ratelimit-remaining"), "99");
  auto again = c.request("GET", "/api/ping", "", {{"cf-connecting-ip", "203.0.113.5"}});
  EXPECT_EQ(again.status, 429);
  // Routes outside /api/* are not limited.
  auto health = c.request("GET", "/health", "", {{"cf-connecting-ip", "203.0.113.5"}});
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.header("x-ratelimit-limit"), "");

  // The limit is durable: still limited after a restart.
  EXPECT_EQ(server->stop().describe(), "exit code 0");
  server = startServer();
  HttpConnection c2(server->host(), server->port());
  EXPECT_EQ(c2.request("GET", "/api/ping", "", {{"cf-connecting-ip", "203.0.113.5"}}).status, 429);
  EXPECT_EQ(c2.request("GET", "/api/ping", "", {{"cf-connecting-ip", "203.0.113.6"}}).header("x-ratelimit-remaining"),
            "98");
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(RateLimitTest, DifferentIpsConcurrentlyAreIndependent) {
  auto server = startServer();
  std::vector<HttpResponse> a, b;
  std::thread ta([&] { a = hammer(*server, "/api/ping", "198.51.100.1", 6, 20); });
  std::thread tb([&] { b = hammer(*server, "/api/ping", "198.51.100.2", 6, 20); });
  ta.join();
  tb.join();
  for (auto* rs : {&a, &b}) {
    ASSERT_EQ(rs->size(), 120u);
    int ok = 0;
    for (auto& r : *rs) ok += r.status == 200;
    EXPECT_EQ(ok, 100);
  }
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

TEST_F(RateLimitTest, EnvironmentOverridesTheLimit) {
  ::setenv("API_RATE_LIMIT", "7", 1);
  ::setenv("API_RATE_WINDOW_MS", "3000", 1);
  std::unique_ptr<ServerProcess> server;
  try {
    server = startServer();
  } catch (...) {
    ::unsetenv("API_RATE_LIMIT");
    ::unsetenv("API_RATE_WINDOW_MS");
    throw;
  }
  ::unsetenv("API_RATE_LIMIT");
  ::unsetenv("API_RATE_WINDOW_MS");

  auto responses = hammer(*server, "/api/ping", "192.0.2.1", 4, 3);
  ASSERT_EQ(responses.size(), 12u);
  int ok = 0;
  for (auto& r : responses) {
    ok += r.status == 200;
    EXPECT_EQ(r.header("x-ratelimit-limit"), "7");
    if (r.status == 429) {
      const int retryAfter = std::stoi(r.header("retry-after"));
      EXPECT_GE(retryAfter, 1);
      EXPECT_LE(retryAfter, 3);
    }
  }
  EXPECT_EQ(ok, 7);
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

}  // namespace
}  // namespace durable_it
