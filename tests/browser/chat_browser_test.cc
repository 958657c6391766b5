// The chat page in a real browser: starts the `durable` binary on the seed app, opens
// /rooms/<room> twice in headless Chromium, joins as two people, sends a message from one and
// checks that both pages show it; a third page shows the stored history before joining, and
// its join line after it; then the server is killed (-9) and restarted on the same port, and
// every page reconnects by itself and sends again. No response the pages got is a 404 (the
// page names an inline icon, so no /favicon.ico). Saves a screenshot of each page.
//
//   durable_browser_test OUTPUT_DIR        (ctest: browser.chat; writes OUTPUT_DIR/chat.png)
//
// Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: commands
// on its fd 3, replies on its fd 4, each a JSON text ended by NUL), so nothing but Chromium
// is needed. Exit status: 0 passed, 1 failed, 77 skipped (Chromium missing or unable to
// start; ctest's SKIP_RETURN_CODE).
#include "integration/server_process.h"

#include <boost/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kSkip = 77;

struct Skip : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string base64Decode(std::string_view in) {
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
  Page(Browser& b, const std::string& url) : b_(b) {
    auto target = b_.call("Target.createTarget", json::object{{"url", "about:blank"}});
    targetId_ = std::string(target.at("targetId").as_string());
    auto attached = b_.call("Target.attachToTarget", json::object{{"targetId", targetId_}, {"flatten", true}});
    session_ = std::string(attached.at("sessionId").as_string());
    b_.call("Page.enable", {}, session_);
    b_.call("Runtime.enable", {}, session_);
    b_.call("Network.enable", {}, session_);
    b_.call("Page.navigate", json::object{{"url", url}}, session_);
    if (!waitFor("document.readyState === 'complete' && !!document.getElementById('join')", 15s)) {
      throw std::runtime_error("the chat page did not load: " + url);
    }
  }

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

  // The text of each line of the chat log, in order.
  std::vector<std::string> lines() {
    auto v = eval("JSON.stringify([...document.querySelectorAll('#log .msg')].map(d => d.textContent))");
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

std::string jsString(const std::string& s) { return json::serialize(json::value(s)); }

std::string describe(const std::vector<std::string>& lines) {
  json::array a;
  for (const auto& l : lines) a.emplace_back(l);
  return json::serialize(a);
}

int run(const fs::path& outputDir) {
  const char* env = std::getenv("CHROMIUM");
  const std::string chromium = env && *env ? env : "/usr/bin/chromium";
  if (::access(chromium.c_str(), X_OK) != 0) throw Skip(chromium + " is not installed (scripts/deps.sh installs it)");
  fs::create_directories(outputDir);

  durable_it::TempDir dir;
  durable_it::ServerProcess::Options o;
  o.persistDir = dir / "state";
  o.stderrLog = dir / "server.log";
  auto server = durable_it::ServerProcess::start(o);
  const std::string base = "http://" + server->host() + ":" + std::to_string(server->port());

  std::optional<Browser> browser;
  try {
    browser.emplace(chromium, dir / "profile", outputDir / "chromium.log");
    browser->call("Browser.getVersion", {}, {}, 30s);
  } catch (const std::exception& e) {
    std::string log = durable_it::readFile(outputDir / "chromium.log");
    throw Skip(std::string("Chromium did not start: ") + e.what() + "\n" + log.substr(0, 2000));
  }
  auto version = browser->call("Browser.getVersion");
  std::cout << "browser: " << json::serialize(version.at("product")) << "\n";

  const std::string room = "browser-test";
  Page alice(*browser, base + "/rooms/" + room);
  Page bob(*browser, base + "/rooms/" + room);

  auto joinAs = [](Page& p, const std::string& name) {
    p.eval("document.getElementById('name').value = " + jsString(name) + ";"
           "document.querySelector('#join button').click(); true");
    if (!p.waitFor("document.getElementById('status').textContent === " + jsString("Connected as " + name))) {
      throw std::runtime_error(name + " did not connect; status: '" + p.text("status") + "'");
    }
    // The join form makes way for the chat.
    if (!p.waitFor("getComputedStyle(document.getElementById('join')).display === 'none' && "
                   "getComputedStyle(document.getElementById('chat')).display !== 'none'")) {
      throw std::runtime_error(name + ": the join form is still shown after joining");
    }
  };
  joinAs(alice, "Alice");
  joinAs(bob, "Bob");
  if (!alice.waitFor("document.getElementById('log').textContent.includes('Bob joined')")) {
    throw std::runtime_error("Alice's page does not show Bob joining: '" + alice.text("log") + "'");
  }

  const std::string message = "Hello from a real browser <b>not bold</b>";
  alice.eval("document.getElementById('text').value = " + jsString(message) + ";"
             "document.querySelector('#send button').click(); true");
  const std::string shown = "Alice: " + message;
  for (auto* p : {&alice, &bob}) {
    if (!p->waitFor("[...document.querySelectorAll('#log .msg')].some(d => d.textContent === " + jsString(shown) + ")")) {
      throw std::runtime_error("a page does not show the message; its log: '" + p->text("log") + "'");
    }
  }
  // The text is shown as text, never as markup.
  if (alice.eval("document.querySelectorAll('#log b').length").to_number<int>() != 0) {
    throw std::runtime_error("the message's markup was rendered as HTML");
  }
  bob.eval("document.getElementById('text').value = 'Hi Alice!'; document.querySelector('#send button').click(); true");
  if (!alice.waitFor("document.getElementById('log').textContent.includes('Bob: Hi Alice!')")) {
    throw std::runtime_error("Alice's page does not show Bob's reply: '" + alice.text("log") + "'");
  }
  // What the server stored is what the pages showed.
  auto history = durable_it::httpRequest(server->host(), server->port(), "GET", "/rooms/" + room + "/history");
  if (history.body.find("Hello from a real browser") == std::string::npos) {
    throw std::runtime_error("the history lacks the message: " + history.body);
  }

  // A newcomer sees what was said before joining, and its own join after it, each line once
  // (the socket's history frame repeats what the page fetched).
  const std::vector<std::string> before{shown, "Bob: Hi Alice!"};
  Page carol(*browser, base + "/rooms/" + room);
  if (!carol.waitFor("document.querySelectorAll('#log .msg').length >= 2")) {
    throw std::runtime_error("the history is not shown before joining: " + describe(carol.lines()));
  }
  if (carol.lines() != before) throw std::runtime_error("history before joining: " + describe(carol.lines()));
  if (!carol.eval("getComputedStyle(document.getElementById('join')).display !== 'none'").as_bool()) {
    throw std::runtime_error("the join form is hidden before joining");
  }
  joinAs(carol, "Carol");
  if (!carol.waitFor("document.getElementById('log').textContent.includes('Carol joined')")) {
    throw std::runtime_error("Carol's page does not show her join: " + describe(carol.lines()));
  }
  std::this_thread::sleep_for(500ms);  // the history frame comes right after the join
  auto expected = before;
  expected.push_back("Carol joined");
  if (carol.lines() != expected) throw std::runtime_error("Carol's log after joining: " + describe(carol.lines()));

  // kill -9 and a restart on the same port: every page reconnects without a reload.
  const std::uint16_t port = server->port();
  server->kill9();
  for (auto* p : {&alice, &bob, &carol}) {
    if (!p->waitFor("!document.getElementById('status').textContent.startsWith('Connected')", 10s)) {
      throw std::runtime_error("a page did not notice the server's death; status: '" + p->text("status") + "'");
    }
  }
  o.stderrLog = dir / "server-restarted.log";
  o.extraArgs = {"--listen", "127.0.0.1:" + std::to_string(port)};
  server = durable_it::ServerProcess::start(o);
  const std::pair<Page*, std::string> members[] = {{&alice, "Alice"}, {&bob, "Bob"}, {&carol, "Carol"}};
  for (const auto& [p, name] : members) {
    if (!p->waitFor("document.getElementById('status').textContent === " + jsString("Connected as " + name), 30s)) {
      throw std::runtime_error(name + " did not reconnect; status: '" + p->text("status") + "'");
    }
  }
  alice.eval("document.getElementById('text').value = 'after the restart'; document.querySelector('#send button').click(); true");
  for (const auto& [p, name] : members) {
    if (!p->waitFor("[...document.querySelectorAll('#log .msg')].some(d => d.textContent === 'Alice: after the restart')")) {
      throw std::runtime_error(name + "'s page does not show the message sent after the restart: " + describe(p->lines()));
    }
    const auto lines = p->lines();
    for (const auto& once : before) {
      if (std::count(lines.begin(), lines.end(), once) != 1) {
        throw std::runtime_error(name + "'s page shows '" + once + "' other than once: " + describe(lines));
      }
    }
  }

  // No favicon request, and no 404 at all: the page names an inline icon, and /favicon.ico
  // answers 204 for any other page.
  if (alice.eval("document.querySelector('link[rel=icon]').getAttribute('href')") != json::value("data:,")) {
    throw std::runtime_error("the page names no inline icon");
  }
  auto favicon = durable_it::httpRequest(server->host(), server->port(), "GET", "/favicon.ico");
  if (favicon.status != 204) throw std::runtime_error("/favicon.ico answered " + std::to_string(favicon.status));
  int responses = 0;
  for (const auto& e : browser->events()) {
    auto* method = e.if_contains("method");
    if (!method || !method->is_string()) continue;
    const auto& params = e.at("params").as_object();
    if (*method == "Network.requestWillBeSent") {
      const std::string url(params.at("request").as_object().at("url").as_string());
      if (url.find("favicon") != std::string::npos) throw std::runtime_error("a page requested " + url);
    } else if (*method == "Network.responseReceived") {
      ++responses;
      const auto& response = params.at("response").as_object();
      if (response.at("status").to_number<int>() == 404) {
        throw std::runtime_error("404 for " + std::string(response.at("url").as_string()));
      }
    }
  }
  if (responses < 6) throw std::runtime_error("only " + std::to_string(responses) + " responses were seen");

  const fs::path shot = fs::absolute(outputDir / "chat.png");
  alice.screenshot(shot);
  bob.screenshot(outputDir / "chat-bob.png");
  carol.screenshot(outputDir / "chat-carol.png");
  std::cout << "screenshot: " << shot.string() << "\n";
  std::cout << "alice's log: " << alice.text("log") << "\n";
  std::cout << "bob's log:   " << bob.text("log") << "\n";
  std::cout << "carol's log: " << describe(carol.lines()) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path outputDir = argc > 1 ? fs::path(argv[1]) : fs::current_path() / "test-output";
  try {
    int rc = run(outputDir);
    std::cout << "browser test: 1 passed, 0 failed\n";
    return rc;
  } catch (const Skip& e) {
    std::cout << "SKIPPED: " << e.what() << "\n";
    return kSkip;
  } catch (const std::exception& e) {
    std::cout << "FAILED: " << e.what() << "\n";
    return 1;
  }
}
