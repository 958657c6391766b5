// Headless Chromium for the browser tests, driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: commands on its fd 3, replies on its fd 4, each a JSON text ended
// by NUL), so nothing but Chromium is needed. A test that cannot start Chromium exits 77
// (kSkip, ctest's SKIP_RETURN_CODE).
#pragma once

#include <boost/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace durable_browser {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kSkip = 77;

struct Skip : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline std::string base64Decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (char c : in) {
    int v = value(c);
    if (v < 0) continue;  // padding, line breaks
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

// One Chromium process and its DevTools pipe.
class Browser {
 public:
  Browser(const std::string& executable, const fs::path& profile, const fs::path& log) {
    int toChrome[2], fromChrome[2];
    if (::pipe2(toChrome, O_CLOEXEC) != 0 || ::pipe2(fromChrome, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
    std::vector<std::string> args{executable,
                                  "--headless",
                                  "--no-sandbox",
                                  "--disable-gpu",
                                  "--disable-quic",
                                  "--no-first-run",
                                  "--disable-background-networking",
                                  "--disable-component-update",
                                  "--disable-sync",
                                  "--disable-dev-shm-usage",
                                  "--disable-background-timer-throttling",
                                  "--disable-renderer-backgrounding",
                                  "--window-size=900,700",
                                  "--user-data-dir=" + profile.string(),
                                  "--remote-debugging-pipe",
                                  "about:blank"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int logFd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int nullFd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      // fd 3: what Chromium reads; fd 4: what it writes. dup2 clears O_CLOEXEC.
      int in = ::fcntl(toChrome[0], F_DUPFD_CLOEXEC, 10);
      int out = ::fcntl(fromChrome[1], F_DUPFD_CLOEXEC, 10);
      if (in < 0 || out < 0 || ::dup2(nullFd, 0) < 0 || ::dup2(logFd, 1) < 0 || ::dup2(logFd, 2) < 0 ||
          ::dup2(in, 3) < 0 || ::dup2(out, 4) < 0) {
        ::_exit(126);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(toChrome[0]);
    ::close(fromChrome[1]);
    ::close(logFd);
    ::close(nullFd);
    write_ = toChrome[1];
    read_ = fromChrome[0];
    ::signal(SIGPIPE, SIG_IGN);
  }

  ~Browser() {
    if (pid_ > 0) {
      try {
        call("Browser.close", json::object{}, {}, 5s);
      } catch (...) {
      }
      if (!reap(5s)) {
        ::kill(pid_, SIGKILL);
        reap(5s);
      }
    }
    if (write_ >= 0) ::close(write_);
    if (read_ >= 0) ::close(read_);
  }

  bool running() { return pid_ > 0 && !reap(0ms); }

  // The events Chromium sent so far (Network.* of the pages that enabled it).
  const std::vector<json::object>& events() const { return events_; }

  // Sends a command (to a page when `session` is set) and returns its result.
  json::object call(const std::string& method, json::object params = {}, const std::string& session = {},
                    std::chrono::milliseconds timeout = 15s) {
    const std::int64_t id = ++nextId_;
    json::object msg{{"id", id}, {"method", method}, {"params", std::move(params)}};
    if (!session.empty()) msg["sessionId"] = session;
    std::string text = json::serialize(msg);
    text.push_back('\0');
    for (std::size_t sent = 0; sent < text.size();) {
      ssize_t n = ::write(write_, text.data() + sent, text.size() - sent);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw std::runtime_error("write to Chromium: " + std::string(std::strerror(errno)));
      sent += static_cast<std::size_t>(n);
    }
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      auto reply = nextMessage(deadline);
      if (!reply) throw std::runtime_error(method + ": no reply from Chromium within " + std::to_string(timeout.count()) + " ms");
      auto* rid = reply->if_contains("id");
      if (!rid) {
        events_.push_back(std::move(*reply));
        continue;
      }
      if (rid->to_number<std::int64_t>() != id) continue;  // an older reply
      if (auto* err = reply->if_contains("error")) throw std::runtime_error(method + ": " + json::serialize(*err));
      auto* result = reply->if_contains("result");
      return result && result->is_object() ? result->as_object() : json::object{};
    }
  }

 private:
  std::optional<json::object> nextMessage(Clock::time_point deadline) {
    for (;;) {
      if (auto nul = pending_.find('\0'); nul != std::string::npos) {
        std::string text = pending_.substr(0, nul);
        pending_.erase(0, nul + 1);
        return json::parse(text).as_object();
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd pfd{read_, POLLIN, 0};
      int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;
      char buf[65536];
      ssize_t n = ::read(read_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error("Chromium closed its DevTools pipe");
      pending_.append(buf, static_cast<std::size_t>(n));
    }
  }

  bool reap(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_ || (r < 0 && errno == ECHILD)) {
        pid_ = -1;
        return true;
      }
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
  }

  pid_t pid_ = -1;
  int write_ = -1;
  int read_ = -1;
  std::int64_t nextId_ = 0;
  std::string pending_;
  std::vector<json::object> events_;
};

// A tab of the browser, attached in flat mode.
class Page {
 public:
  // Opens `url` and waits until `ready` (a JavaScript condition) holds.
  Page(Browser& b, const std::string& url, const std::string& ready) : b_(b) {
    auto target = b_.call("Target.createTarget", json::object{{"url", "about:blank"}});
    targetId_ = std::string(target.at("targetId").as_string());
    auto attached = b_.call("Target.attachToTarget", json::object{{"targetId", targetId_}, {"flatten", true}});
    session_ = std::string(attached.at("sessionId").as_string());
    b_.call("Page.enable", {}, session_);
    b_.call("Runtime.enable", {}, session_);
    b_.call("Network.enable", {}, session_);
    b_.call("Page.navigate", json::object{{"url", url}}, session_);
    if (!waitFor("document.readyState === 'complete' && (" + ready + ")", 15s)) {
      throw std::runtime_error("the page did not load: " + url);
    }
  }

  // A DevTools command for this page.
  json::object call(const std::string& method, json::object params = {}) { return b_.call(method, std::move(params), session_); }

  // Evaluates `expression` in the page and returns its value.
  json::value eval(const std::string& expression) {
    auto r = b_.call("Runtime.evaluate", json::object{{"expression", expression}, {"returnByValue", true}}, session_);
    if (auto* ex = r.if_contains("exceptionDetails")) throw std::runtime_error("page threw: " + json::serialize(*ex));
    auto* v = r.at("result").as_object().if_contains("value");
    return v ? *v : json::value();
  }

  bool waitFor(const std::string& condition, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      auto v = eval("Boolean(" + condition + ")");
      if (v.is_bool() && v.as_bool()) return true;
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(50ms);
    }
  }

  // The textContent of every element `selector` matches, in document order.
  std::vector<std::string> texts(const std::string& selector) {
    auto v = eval("JSON.stringify([...document.querySelectorAll(" + json::serialize(json::value(selector)) +
                  ")].map(d => d.textContent))");
    std::vector<std::string> out;
    if (!v.is_string()) return out;
    const auto parsed = json::parse(v.as_string());  // a range-for would not keep the temporary alive
    for (const auto& line : parsed.as_array()) out.emplace_back(line.as_string());
    return out;
  }

  std::string text(const std::string& id) {
    auto v = eval("(document.getElementById('" + id + "') || {}).textContent || ''");
    return v.is_string() ? std::string(v.as_string()) : std::string();
  }

  void screenshot(const fs::path& file) {
    b_.call("Page.bringToFront", {}, session_);
    auto r = b_.call("Page.captureScreenshot", json::object{{"format", "png"}}, session_);
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << base64Decode(r.at("data").as_string());
    if (!out) throw std::runtime_error("cannot write " + file.string());
  }

 private:
  Browser& b_;
  std::string targetId_;
  std::string session_;
};


// The Chromium to drive: $CHROMIUM, else /usr/bin/chromium; Skip when it is not there.
inline std::string chromiumPath() {
  const char* env = std::getenv("CHROMIUM");
  const std::string chromium = env && *env ? env : "/usr/bin/chromium";
  if (::access(chromium.c_str(), X_OK) != 0) throw Skip(chromium + " is not installed (scripts/deps.sh installs it)");
  return chromium;
}

// Starts Chromium into `browser` and waits for it to answer; Skip, with its log, when it cannot.
inline void launch(std::optional<Browser>& browser, const fs::path& profile, const fs::path& log) {
  try {
    browser.emplace(chromiumPath(), profile, log);
    browser->call("Browser.getVersion", {}, {}, 30s);
  } catch (const Skip&) {
    throw;
  } catch (const std::exception& e) {
    std::ifstream in(log);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    throw Skip(std::string("Chromium did not start: ") + e.what() + "\n" + text.substr(0, 2000));
  }
}

// A browser test's main: runs `run(OUTPUT_DIR)` (argv[1], default ./test-output); exits 0 when it
// passed, 1 when it threw, kSkip when it threw Skip.
inline int browserTestMain(int argc, char** argv, const char* name, int (*run)(const fs::path&)) {
  const fs::path outputDir = argc > 1 ? fs::path(argv[1]) : fs::current_path() / "test-output";
  try {
    int rc = run(outputDir);
    std::cout << name << ": 1 passed, 0 failed\n";
    return rc;
  } catch (const Skip& e) {
    std::cout << "SKIPPED: " << e.what() << "\n";
    return kSkip;
  } catch (const std::exception& e) {
    std::cout << "FAILED: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace durable_browser
