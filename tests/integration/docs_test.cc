// The docs test: the programs in README.md and examples/custom, built as a user builds them
// (durable installed with `cmake --install`, then find_package(durable) in a project of their
// own, compiled under AddressSanitizer and UBSan) and run for real: their tests, and their
// servers over HTTP on loopback.
//
// README.md's rule: a code block that names its file on its first line (`// main.cc`,
// `# CMakeLists.txt`, `# wrangler.toml`) is part of the README's project; a C++ block that
// forms a program (a main or a TEST) and names no file is an error here, so none goes untested.
#include "integration/server_process.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace durable_it {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct Block {
  std::string language;
  std::string text;
  int line = 0;
};

std::vector<Block> fencedBlocks(const std::string& markdown) {
  std::vector<Block> blocks;
  std::istringstream in(markdown);
  std::string line;
  std::optional<Block> open;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.rfind("```", 0) == 0) {
      if (open) {
        blocks.push_back(std::move(*open));
        open.reset();
      } else {
        open = Block{line.substr(3), "", n};
      }
    } else if (open) {
      open->text += line + "\n";
    }
  }
  return blocks;
}

// The file a block names on its first line, or "".
std::string namedFile(const Block& b) {
  static const std::regex cpp(R"(^// ([A-Za-z0-9_.-]+\.(h|cc|cpp|jsonc))\n)");
  static const std::regex hash(R"(^# ([A-Za-z0-9_.-]+\.(toml|txt))\n)");
  std::smatch m;
  if ((b.language == "cpp" || b.language == "jsonc") && std::regex_search(b.text, m, cpp)) return m[1];
  if ((b.language == "cmake" || b.language == "toml") && std::regex_search(b.text, m, hash)) return m[1];
  return "";
}

std::string tail(const std::string& s, std::size_t n = 6000) { return s.size() > n ? s.substr(s.size() - n) : s; }

void run(std::vector<std::string> argv, const fs::path& scratch, std::chrono::milliseconds timeout = 900s) {
  std::string shown;
  for (const auto& a : argv) shown += a + " ";
  auto r = runCommand(std::move(argv), scratch, timeout);
  ASSERT_EQ(r.status.describe(), "exit code 0") << shown << "\n" << tail(r.out) << tail(r.err);
}

// Installs durable into `prefix` and builds `project` against it, as a user would.
void installAndBuild(const fs::path& project, const fs::path& build, const fs::path& prefix, const fs::path& scratch) {
  {
    // `cmake --install` rewrites the build's install_manifest.txt; the docs tests run in parallel.
    const int lock = ::open(DURABLE_BUILD_DIR "/docs-install.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    ASSERT_GE(lock, 0);
    ::flock(lock, LOCK_EX);
    run({DURABLE_CMAKE, "--install", DURABLE_BUILD_DIR, "--prefix", prefix.string()}, scratch);
    ::close(lock);
    if (::testing::Test::HasFatalFailure()) return;
  }
  ASSERT_NO_FATAL_FAILURE(run({DURABLE_CMAKE, "-S", project.string(), "-B", build.string(),
                               "-DCMAKE_PREFIX_PATH=" + prefix.string(), "-DCMAKE_CXX_COMPILER=" DURABLE_CXX_COMPILER,
                               "-DCMAKE_BUILD_TYPE=Release",
                               "-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined -fno-sanitize-recover=undefined "
                               "-fno-omit-frame-pointer"},
                              scratch));
  ASSERT_NO_FATAL_FAILURE(run({DURABLE_CMAKE, "--build", build.string(), "-j", "2"}, scratch));
}

// Under the sanitizers, a report on stderr is a failure even when the process exited 0.
void expectNoSanitizerReport(const std::string& log) {
  EXPECT_EQ(log.find("AddressSanitizer"), std::string::npos) << tail(log);
  EXPECT_EQ(log.find("runtime error:"), std::string::npos) << tail(log);
  EXPECT_EQ(log.find("LeakSanitizer"), std::string::npos) << tail(log);
}

TEST(Docs, TheReadmeProjectBuildsTestsAndServesCountsOverHttp) {
  TempDir dir;
  const fs::path project = dir / "readme";
  fs::create_directories(project);
  std::vector<std::string> files;
  std::string testFiles;
  for (const auto& b : fencedBlocks(readFile(sourceDir() / "README.md"))) {
    const std::string file = namedFile(b);
    const bool program = b.text.find("int main(") != std::string::npos || b.text.find("TEST(") != std::string::npos;
    if (file.empty()) {
      EXPECT_FALSE(b.language == "cpp" && program)
          << "README.md:" << b.line << ": a C++ program that names no file would go untested";
      continue;
    }
    EXPECT_FALSE(fs::exists(project / file)) << "README.md:" << b.line << ": " << file << " twice";
    writeFile(project / file, b.text);
    files.push_back(file);
    if (b.text.find("TEST(") != std::string::npos) testFiles += " " + file;
  }
  for (const char* expected :
       {"counter.h", "main.cc", "counter_test.cc", "CMakeLists.txt", "wrangler.toml", "wrangler.jsonc"}) {
    ASSERT_NE(std::find(files.begin(), files.end(), expected), files.end()) << "README.md has no block for " << expected;
  }
  // The README says how to link a test; this is that sentence as CMake.
  std::ofstream(project / "CMakeLists.txt", std::ios::app)
      << "find_package(GTest REQUIRED)\nadd_executable(counter_test" << testFiles
      << ")\ntarget_link_libraries(counter_test PRIVATE durable::durable GTest::gtest_main)\n";

  const fs::path build = dir / "readme-build";
  ASSERT_NO_FATAL_FAILURE(installAndBuild(project, build, dir / "prefix", dir.path()));

  auto tests = runCommand({(build / "counter_test").string()}, dir.path(), 300s);
  EXPECT_EQ(tests.status.describe(), "exit code 0") << tail(tests.out) << tail(tests.err);
  EXPECT_NE(tests.out.find("[  PASSED  ] 2 tests"), std::string::npos) << tail(tests.out);
  expectNoSanitizerReport(tests.err);

  auto start = [&](const std::string& log, const std::string& config) {
    ServerProcess::Options o;
    o.binary = build / "counter";
    o.config = project / config;
    o.persistDir = dir / "state";
    o.stderrLog = dir / log;
    o.bannerTimeout = 60s;
    return ServerProcess::start(std::move(o));
  };
  {
    auto server = start("first.log", "wrangler.toml");
    HttpConnection http(server->host(), server->port());
    for (int i = 1; i <= 250; ++i) {
      auto r = http.post("/counters/a/increment");
      ASSERT_EQ(r.status, 200) << r.body << tail(server->stderrText());
      ASSERT_EQ(r.body, R"({"count":)" + std::to_string(i) + "}");
    }
    auto other = http.post("/counters/a-name-longer-than-an-inline-string-buffer/increment");
    EXPECT_EQ(other.body, R"({"count":1})");
    // The RPC route with its retry rule.
    auto read = http.get("/counters/a");
    EXPECT_EQ(read.status, 200) << read.body;
    EXPECT_EQ(read.body, R"({"count":250})");
    EXPECT_EQ(server->stop().describe(), "exit code 0") << tail(server->stderrText());
    expectNoSanitizerReport(server->stderrText());
  }
  // The README's JSONC config is the same app: the state directory carries on under it.
  auto server = start("second.log", "wrangler.jsonc");
  EXPECT_EQ(httpRequest(server->host(), server->port(), "POST", "/counters/a/increment").body, R"({"count":251})");
  EXPECT_EQ(server->stop().describe(), "exit code 0");
  expectNoSanitizerReport(server->stderrText());
}

TEST(Docs, ExamplesCustomBuildsFromAnInstalledDurableTestsAndServes) {
  TempDir dir;
  const fs::path build = dir / "custom-build";
  ASSERT_NO_FATAL_FAILURE(installAndBuild(sourceDir() / "examples" / "custom", build, dir / "prefix", dir.path()));

  auto tests = runCommand({(build / "guestbook_test").string()}, dir.path(), 300s);
  EXPECT_EQ(tests.status.describe(), "exit code 0") << tail(tests.out) << tail(tests.err);
  EXPECT_NE(tests.out.find("[  PASSED  ]"), std::string::npos) << tail(tests.out);
  expectNoSanitizerReport(tests.err);

  ServerProcess::Options o;
  o.binary = build / "guestbook";
  o.config = sourceDir() / "examples" / "custom" / "wrangler.toml";
  o.persistDir = dir / "state";
  o.stderrLog = dir / "guestbook.log";
  o.bannerTimeout = 60s;
  auto server = ServerProcess::start(std::move(o));
  HttpConnection http(server->host(), server->port());
  for (int i = 1; i <= 50; ++i) {
    auto r = http.post("/books/b1/sign?name=n" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_EQ(boost::json::parse(r.body), boost::json::parse(R"({"signed":"n)" + std::to_string(i) +
                                                             R"(","number":)" + std::to_string(i) + "}"));
  }
  auto entries = http.get("/books/b1/entries");
  ASSERT_EQ(entries.status, 200);
  EXPECT_EQ(boost::json::parse(entries.body).as_array().size(), 50u);
  EXPECT_EQ(server->stop().describe(), "exit code 0");
  expectNoSanitizerReport(server->stderrText());
}

}  // namespace
}  // namespace durable_it
