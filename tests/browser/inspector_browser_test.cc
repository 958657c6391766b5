// The inspector (GET / on the admin listener) in a real browser: starts the `durable` binary on
// the seed app with an admin token, increments a counter over HTTP, opens the inspector in
// headless Chromium, gives it the token (a wrong one first), picks the COUNTER namespace, the counter and checks
// that its key and value show; increments again and checks that a refresh shows the new value;
// checks that the charts drew from /metrics; deletes the counter's storage from the page; picks
// a SQLite-backed notebook and runs a query in the SQL box. Saves screenshots.
//
//   durable_inspector_browser_test OUTPUT_DIR   (ctest: Browser.Inspector; writes OUTPUT_DIR/inspector.png)
//
// Exit status: 0 passed, 1 failed, 77 skipped (Chromium missing or unable to start).
#include "browser/chromium.h"
#include "integration/server_process.h"

#include <boost/json.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using durable_browser::Browser;
using durable_browser::kSkip;
using durable_browser::Page;
using durable_browser::Skip;

constexpr const char* kToken = "inspector-test-token-0123";

void expect(bool ok, const std::string& what, Page& page) {
  if (ok) return;
  throw std::runtime_error(what + "\npage text: " + page.text("error") + " | " +
                           std::string(page.eval("document.body.innerText").as_string()).substr(0, 2000));
}

int run(const fs::path& outputDir) {
  durable_browser::chromiumPath();  // Skip before anything starts when there is none
  fs::create_directories(outputDir);

  durable_it::TempDir dir;
  const fs::path config = dir / "wrangler.toml";
  {
    std::string toml = durable_it::readFile(durable_it::seedConfig());
    const auto table = toml.find("[durable]\n");
    if (table == std::string::npos) throw std::runtime_error("the seed config has no [durable] table");
    toml.insert(table + 10, std::string("admin_token = \"") + kToken + "\"\n");
    std::ofstream(config) << toml;
  }
  durable_it::ServerProcess::Options o;
  o.config = config;
  o.persistDir = dir / "state";
  o.stderrLog = dir / "server.log";
  auto server = durable_it::ServerProcess::start(o);
  const std::string admin = "http://" + server->host() + ":" + std::to_string(server->adminPort());
  durable_it::HttpConnection http(server->host(), server->port());
  for (int i = 0; i < 3; ++i) {
    if (http.post("/counters/inspected/increment").status != 200) throw std::runtime_error("increment failed");
  }
  if (http.post("/counters/other/increment").status != 200) throw std::runtime_error("increment failed");

  std::optional<Browser> browser;
  durable_browser::launch(browser, dir / "profile", outputDir / "chromium-inspector.log");

  // The page itself needs no token; its calls do: it asks, and a wrong one is refused.
  Page page(*browser, admin + "/", "!!document.getElementById('namespaces')");
  expect(page.waitFor("getComputedStyle(document.getElementById('login')).display !== 'none'"),
         "the page does not ask for the token", page);
  page.eval("document.getElementById('token').value = 'wrong-token-wrong-token'; "
            "document.getElementById('login').requestSubmit(); true");
  expect(page.waitFor("document.getElementById('error').textContent.includes('refused')"), "a wrong token is not refused",
         page);
  page.eval(std::string("document.getElementById('token').value = '") + kToken +
            "'; document.getElementById('login').requestSubmit(); true");
  expect(page.waitFor("[...document.querySelectorAll('#namespaces tbody tr')].some(r => r.dataset.binding === 'COUNTER' "
                      "&& r.cells[3].textContent === '2')"),
         "the namespaces table does not show COUNTER with its 2 objects", page);

  page.eval("[...document.querySelectorAll('#namespaces tbody tr')].find(r => r.dataset.binding === 'COUNTER').click()");
  expect(page.waitFor("[...document.querySelectorAll('#objects tbody tr')].some(r => r.cells[0].textContent === 'inspected')"),
         "the objects table does not list the counter by its name", page);
  const auto names = page.texts("#objects tbody tr td:first-child");
  if (names.size() != 2) throw std::runtime_error("the objects table lists " + std::to_string(names.size()) + " objects");

  page.eval("[...document.querySelectorAll('#objects tbody tr')].find(r => r.cells[0].textContent === 'inspected').click()");
  expect(page.waitFor("[...document.querySelectorAll('#storage tbody tr')].some(r => r.dataset.key === 'count' && "
                      "r.cells[2].textContent === '3')"),
         "the storage table does not show count = 3", page);
  expect(page.text("object-name") == "inspected", "the object's name is not shown", page);
  expect(page.text("object-alarm") == "none", "the object's alarm is not shown as none", page);

  // Written again, a refresh shows the new value.
  if (http.post("/counters/inspected/increment").body != R"({"count":4})") throw std::runtime_error("increment failed");
  page.eval("document.getElementById('refresh-object').click()");
  expect(page.waitFor("[...document.querySelectorAll('#storage tbody tr')].some(r => r.dataset.key === 'count' && "
                      "r.cells[2].textContent === '4')"),
         "a refresh does not show count = 4", page);

  // Under traffic, every chart draws what /metrics says (a point per second after the first).
  std::atomic<bool> stop{false};
  std::thread load([&] {
    durable_it::HttpConnection c(server->host(), server->port());
    for (int i = 0; !stop; ++i) c.post("/counters/load" + std::to_string(i % 20) + "/increment");
  });
  const bool drew = page.waitFor(
      "['rate','latency','batch'].every(k => Number(document.getElementById('chart-' + k).dataset.points) >= 3 && "
      "Number(document.getElementById('chart-' + k).dataset.max) > 0)",
      20s);
  stop = true;
  load.join();
  expect(drew, "the charts did not draw the traffic from /metrics", page);
  expect(page.text("error").empty(), "the page shows an error", page);
  expect(page.eval("getComputedStyle(document.getElementById('login')).display === 'none'").as_bool(),
         "the token form stays after the token worked", page);

  const fs::path shot = fs::absolute(outputDir / "inspector.png");
  page.call("Emulation.setDeviceMetricsOverride",
            json::object{{"width", 1200}, {"height", 1000}, {"deviceScaleFactor", 1}, {"mobile", false}});
  page.screenshot(shot);
  std::cout << "screenshot: " << shot.string() << "\n";

  // Deleting from the page goes through the object: the counter starts again at 1.
  page.eval("window.confirm = () => true; document.getElementById('delete-storage').click()");
  expect(page.waitFor("document.querySelectorAll('#storage tbody tr').length === 0"), "the storage was not emptied", page);
  const auto after = http.post("/counters/inspected/increment").body;
  if (after != R"({"count":1})") throw std::runtime_error("after deleting from the page the counter answered " + after);

  // A SQLite-backed object: the SQL box runs a read-only query over its database.
  for (const char* text : {"first note", "second note"}) {
    if (http.post("/notes/inspected", std::string(R"({"text":")") + text + "\"}").status != 201) {
      throw std::runtime_error("adding a note failed");
    }
  }
  page.eval("document.getElementById('refresh-namespaces').click()");
  expect(page.waitFor("[...document.querySelectorAll('#namespaces tbody tr')].some(r => r.dataset.binding === 'NOTES' "
                      "&& r.cells[2].textContent === 'sqlite' && r.cells[3].textContent === '1')"),
         "the namespaces table does not show NOTES (sqlite) with its notebook", page);
  expect(page.eval("document.getElementById('sql-box').hidden").as_bool(), "the SQL box shows for a key-value object",
         page);
  page.eval("[...document.querySelectorAll('#namespaces tbody tr')].find(r => r.dataset.binding === 'NOTES').click()");
  expect(page.waitFor("[...document.querySelectorAll('#objects tbody tr')].some(r => r.cells[0].textContent === 'inspected')"),
         "the objects table does not list the notebook", page);
  page.eval("[...document.querySelectorAll('#objects tbody tr')].find(r => r.cells[0].textContent === 'inspected').click()");
  expect(page.waitFor("!document.getElementById('sql-box').hidden"), "the SQL box does not show for a SQLite-backed object",
         page);
  page.eval("document.getElementById('sql-query').value = 'SELECT id, text FROM notes ORDER BY id'; "
            "document.getElementById('sql-run').click(); true");
  expect(page.waitFor("[...document.querySelectorAll('#sql-result tbody tr')].map(r => r.cells[1].textContent).join('|') "
                      "=== 'first note|second note'"),
         "the SQL box does not show the notes", page);
  page.eval("document.getElementById('sql-query').value = 'DELETE FROM notes'; document.getElementById('sql-run').click(); true");
  expect(page.waitFor("document.getElementById('error').textContent.includes('read')"), "a write is not refused", page);
  const auto notes = http.get("/notes/inspected").body;
  if (json::parse(notes).as_array().size() != 2) throw std::runtime_error("the notes changed: " + notes);
  const fs::path sqlShot = fs::absolute(outputDir / "inspector-sql.png");
  page.eval("document.getElementById('sql-query').value = 'SELECT id, text, created_at FROM notes'; "
            "document.getElementById('sql-run').click(); true");
  page.waitFor("document.querySelectorAll('#sql-result tbody tr').length === 2");
  page.screenshot(sqlShot);
  std::cout << "screenshot: " << sqlShot.string() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return durable_browser::browserTestMain(argc, argv, "inspector test", run); }
