// examples/custom, an author's own server built only from the public API, served for real:
// its binary, its config, HTTP on loopback, a restart.
#include "integration/server_process.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <string>

namespace durable_it {
namespace {

namespace fs = std::filesystem;

TEST(CustomApp, TheGuestbookServesSignsAndKeepsItsEntries) {
  TempDir dir;
  auto start = [&](const std::string& log) {
    ServerProcess::Options o;
    o.binary = DURABLE_GUESTBOOK;
    o.config = fs::path(DURABLE_SOURCE_DIR) / "examples" / "custom" / "wrangler.toml";
    o.persistDir = dir.path() / "state";
    o.stderrLog = dir.path() / log;
    return ServerProcess::start(std::move(o));
  };
  {
    auto server = start("first.log");
    auto signed1 = httpRequest(server->host(), server->port(), "POST", "/books/b1/sign?name=ann");
    EXPECT_EQ(signed1.status, 200) << signed1.body;
    EXPECT_EQ(boost::json::parse(signed1.body), boost::json::parse(R"({"signed":"ann","number":1})"));
    auto signed2 = httpRequest(server->host(), server->port(), "POST", "/books/b1/sign?name=bo");
    EXPECT_EQ(boost::json::parse(signed2.body), boost::json::parse(R"({"signed":"bo","number":2})"));
    EXPECT_EQ(httpRequest(server->host(), server->port(), "POST", "/books/b2/sign?name=cy").status, 200);
    EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/books/b2/nothing").status, 404);
    EXPECT_EQ(server->stop().describe(), "exit code 0");
  }
  auto server = start("second.log");
  auto entries = httpRequest(server->host(), server->port(), "GET", "/books/b1/entries");
  EXPECT_EQ(entries.status, 200);
  EXPECT_EQ(boost::json::parse(entries.body), boost::json::parse(R"(["ann","bo"])"));
  EXPECT_EQ(boost::json::parse(httpRequest(server->host(), server->port(), "GET", "/books/b2/entries").body),
            boost::json::parse(R"(["cy"])"));
  EXPECT_EQ(server->stop().describe(), "exit code 0");
}

}  // namespace
}  // namespace durable_it
