// The chat page in a real browser: starts the `durable` binary on the seed app, opens
// /rooms/<room> twice in headless Chromium, joins as two people, sends a message from one and
// checks that both pages show it; a third page shows the stored history before joining, and
// its join line after it; then the server is killed (-9) and restarted on the same port, and
// every page reconnects by itself and sends again. No response the pages got is a 404 (the
// page names an inline icon, so no /favicon.ico). Saves a screenshot of each page.
//
//   durable_chat_browser_test OUTPUT_DIR   (ctest: Browser.ChatPage; writes OUTPUT_DIR/chat.png)
//
// Chromium is driven as browser/chromium.h says. Exit status: 0 passed, 1 failed, 77 skipped
// (Chromium missing or unable to start; ctest's SKIP_RETURN_CODE).
#include "browser/chromium.h"
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
using durable_browser::Browser;
using durable_browser::kSkip;
using durable_browser::Page;
using durable_browser::Skip;
using Clock = std::chrono::steady_clock;

std::string jsString(const std::string& s) { return json::serialize(json::value(s)); }

std::string describe(const std::vector<std::string>& lines) {
  json::array a;
  for (const auto& l : lines) a.emplace_back(l);
  return json::serialize(a);
}

int run(const fs::path& outputDir) {
  durable_browser::chromiumPath();  // Skip before anything starts when there is none
  fs::create_directories(outputDir);

  durable_it::TempDir dir;
  durable_it::ServerProcess::Options o;
  o.persistDir = dir / "state";
  o.stderrLog = dir / "server.log";
  auto server = durable_it::ServerProcess::start(o);
  const std::string base = "http://" + server->host() + ":" + std::to_string(server->port());

  std::optional<Browser> browser;
  durable_browser::launch(browser, dir / "profile", outputDir / "chromium.log");
  auto version = browser->call("Browser.getVersion");
  std::cout << "browser: " << json::serialize(version.at("product")) << "\n";

  const std::string room = "browser-test";
  const std::string chatReady = "!!document.getElementById('join')";
  Page alice(*browser, base + "/rooms/" + room, chatReady);
  Page bob(*browser, base + "/rooms/" + room, chatReady);

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
  Page carol(*browser, base + "/rooms/" + room, chatReady);
  if (!carol.waitFor("document.querySelectorAll('#log .msg').length >= 2")) {
    throw std::runtime_error("the history is not shown before joining: " + describe(carol.texts("#log .msg")));
  }
  if (carol.texts("#log .msg") != before) throw std::runtime_error("history before joining: " + describe(carol.texts("#log .msg")));
  if (!carol.eval("getComputedStyle(document.getElementById('join')).display !== 'none'").as_bool()) {
    throw std::runtime_error("the join form is hidden before joining");
  }
  joinAs(carol, "Carol");
  if (!carol.waitFor("document.getElementById('log').textContent.includes('Carol joined')")) {
    throw std::runtime_error("Carol's page does not show her join: " + describe(carol.texts("#log .msg")));
  }
  std::this_thread::sleep_for(500ms);  // the history frame comes right after the join
  auto expected = before;
  expected.push_back("Carol joined");
  if (carol.texts("#log .msg") != expected) throw std::runtime_error("Carol's log after joining: " + describe(carol.texts("#log .msg")));

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
      throw std::runtime_error(name + "'s page does not show the message sent after the restart: " + describe(p->texts("#log .msg")));
    }
    const auto lines = p->texts("#log .msg");
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
  std::cout << "carol's log: " << describe(carol.texts("#log .msg")) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return durable_browser::browserTestMain(argc, argv, "browser test", run); }
