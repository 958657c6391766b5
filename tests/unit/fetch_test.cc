// durable::fetch against real servers on loopback started here: HTTP and HTTPS (a test CA
// made with the openssl command), redirects in the three modes, kept-alive connections,
// timeouts, the response limit, refused connections, bad certificates, a name that does not
// resolve (inside a network namespace of its own, so no query leaves the machine), and an
// object that serves other events while it awaits a fetch.
#include <durable/durable.h>
#include <durable/testing.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using durable::Request;
using durable::Response;
using durable::Task;
namespace dt = durable::testing;
using namespace std::chrono_literals;

// A small HTTP/1.1 server on 127.0.0.1, one thread per connection, optionally over TLS.
class TestServer {
 public:
  explicit TestServer(const fs::path& certDir = {}, const std::string& certName = "server") : state_(std::make_shared<State>()) {
    if (!certDir.empty()) {
      state_->tls = std::make_unique<ssl::context>(ssl::context::tls_server);
      state_->tls->use_certificate_chain_file((certDir / (certName + ".pem")).string());
      state_->tls->use_private_key_file((certDir / (certName + ".key")).string(), ssl::context::pem);
    }
    state_->acceptor.open(tcp::v4());
    state_->acceptor.set_option(asio::socket_base::reuse_address(true));
    state_->acceptor.bind({asio::ip::make_address("127.0.0.1"), 0});
    state_->acceptor.listen();
    port_ = state_->acceptor.local_endpoint().port();
    thread_ = std::thread([s = state_] {
      for (;;) {
        tcp::socket socket(s->io);
        beast::error_code ec;
        s->acceptor.accept(socket, ec);
        if (ec || s->stopping) return;
        const int id = ++s->connections;
        std::thread([s, socket = std::move(socket), id]() mutable { serve(s, std::move(socket), id); }).detach();
      }
    });
  }
  ~TestServer() {
    // A blocking accept() is not woken by close(): a last connection wakes it.
    state_->stopping = true;
    beast::error_code ec;
    asio::io_context io;
    tcp::socket wake(io);
    wake.connect({asio::ip::make_address("127.0.0.1"), port_}, ec);
    thread_.join();
    state_->acceptor.close(ec);
  }
  std::uint16_t port() const { return port_; }
  int connections() const { return state_->connections.load(); }

 private:
  struct State {
    asio::io_context io;
    tcp::acceptor acceptor{io};
    std::unique_ptr<ssl::context> tls;
    std::atomic<int> connections{0};
    std::atomic<bool> stopping{false};
  };

  static http::response<http::string_body> answer(const http::request<http::string_body>& req, int connection,
                                                   std::uint16_t port) {
    const std::string target(req.target());
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "text/plain");
    auto redirect = [&](http::status status, const std::string& to) {
      res.result(status);
      res.set(http::field::location, to);
    };
    if (target == "/hello") {
      res.set("x-test", "yes");
      res.body() = "hello";
    } else if (target.starts_with("/echo")) {
      res.body() = std::string(req.method_string()) + " " + target + " " + req.body() + " " +
                   std::string(req[http::field::content_type]) + " " + std::string(req["x-custom"]);
    } else if (target == "/redirect") {
      redirect(http::status::found, "/hello");
    } else if (target == "/redirect-absolute") {
      redirect(http::status::moved_permanently, "http://127.0.0.1:" + std::to_string(port) + "/echo?from=abs");
    } else if (target == "/see-other") {
      redirect(http::status::see_other, "echo?after=303");
    } else if (target == "/temporary") {
      redirect(http::status::temporary_redirect, "/echo?after=307");
    } else if (target == "/loop") {
      redirect(http::status::found, "/loop");
    } else if (target == "/big") {
      res.body() = std::string(4096, 'b');
    } else if (target == "/slow") {
      std::this_thread::sleep_for(1500ms);
      res.body() = "slow";
    } else if (target == "/connection") {
      res.body() = std::to_string(connection);
    } else if (target == "/then-close") {
      // Says keep-alive, then closes: the client's pooled connection goes stale.
      res.body() = std::to_string(connection);
      res.keep_alive(true);
      res.prepare_payload();
      res.set("x-close-after", "1");
      return res;
    } else if (target == "/host") {
      res.body() = std::string(req[http::field::host]) + " " + std::string(req[http::field::content_length]);
    } else if (target == "/auth") {
      res.body() = "auth=" + std::string(req[http::field::authorization]);
    } else if (target.starts_with("/to-port/")) {
      // A redirect to another origin: the same path on the port named.
      redirect(http::status::found, "http://127.0.0.1:" + target.substr(9) + "/auth");
    } else if (target == "/same-origin-auth") {
      redirect(http::status::found, "/auth");
    } else {
      res.result(http::status::not_found);
      res.body() = "no such page";
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    return res;
  }

  template <class Stream>
  static void exchange(Stream& stream, int connection, std::uint16_t port) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      beast::error_code ec;
      http::read(stream, buffer, req, ec);
      if (ec) return;
      auto res = answer(req, connection, port);
      http::write(stream, res, ec);
      if (ec || !res.keep_alive() || res.count("x-close-after")) return;
    }
  }

  static void serve(std::shared_ptr<State> s, tcp::socket socket, int connection) {
    const auto port = socket.local_endpoint().port();
    if (!s->tls) {
      exchange(socket, connection, port);
      return;
    }
    ssl::stream<tcp::socket> stream(std::move(socket), *s->tls);
    beast::error_code ec;
    stream.handshake(ssl::stream_base::server, ec);
    if (ec) return;
    exchange(stream, connection, port);
  }

  std::shared_ptr<State> state_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

// A test CA, a server certificate it signed for localhost and 127.0.0.1, one it signed for
// another name, and a self-signed one: made once per test run with the openssl command.
const fs::path& certificates() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("durable-fetch-test-" + std::to_string(::getpid()));
    fs::create_directories(d);
    const std::string in = "cd '" + d.string() + "' && ";
    const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
    const std::string quiet = " >/dev/null 2>&1";
    auto run = [&](const std::string& cmd) {
      if (std::system((in + cmd + quiet).c_str()) != 0) throw std::runtime_error("openssl failed: " + cmd);
    };
    run("openssl req -x509" + key + "-keyout ca.key -out ca.pem -days 2 -subj '/CN=durable test CA'");
    auto signedCert = [&](const std::string& name, const std::string& san) {
      run("openssl req" + key + "-keyout " + name + ".key -out " + name + ".csr -subj '/CN=" + name + "'");
      std::ofstream(d / (name + ".ext")) << "subjectAltName=" << san << "\n";
      run("openssl x509 -req -in " + name + ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -out " + name +
          ".pem -days 2 -extfile " + name + ".ext");
    };
    signedCert("server", "DNS:localhost,IP:127.0.0.1");
    signedCert("other-name", "DNS:other.example");
    run("openssl req -x509" + key + "-keyout self.key -out self.pem -days 2 -subj '/CN=localhost' "
        "-addext 'subjectAltName=DNS:localhost,IP:127.0.0.1'");
    return d;
  }();
  return dir;
}

// Runs `fn` as a Worker-side task on the runtime and returns its result.
template <class T>
T onRuntime(dt::Env& env, std::function<Task<T>()> fn) {
  return env.run([](std::function<Task<T>()> f) -> Task<T> { co_return co_await f(); }(std::move(fn)));
}

durable::Error fetchError(dt::Env& env, std::string url, durable::RequestInit init = {}) {
  try {
    auto r = onRuntime<Response>(env, [url, init]() { return durable::fetch(url, init); });
    ADD_FAILURE() << url << " answered " << r.status() << " " << r.text();
  } catch (const durable::Error& e) {
    return e;
  }
  return durable::Error(durable::ErrorCode::kInternal, "none");
}

std::string base(const TestServer& s, const std::string& scheme = "http", const std::string& host = "127.0.0.1") {
  return scheme + "://" + host + ":" + std::to_string(s.port());
}

TEST(Fetch, AnswersWithStatusHeadersAndBodyAndSendsMethodHeadersAndBody) {
  TestServer server;
  dt::Env env;
  auto r = onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/hello"); });
  EXPECT_EQ(r.status(), 200);
  EXPECT_EQ(r.text(), "hello");
  EXPECT_EQ(r.headers().get("x-test"), "yes");
  // The server's content-type as it sent it, alone (not beside a default of our own).
  EXPECT_EQ(r.headers().get("content-type"), "text/plain");
  // Any status is a response, not an error.
  r = onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/nothing"); });
  EXPECT_EQ(r.status(), 404);
  EXPECT_EQ(r.text(), "no such page");
  r = onRuntime<Response>(env, [&] {
    return durable::fetch(base(server) + "/echo",
                          {.method = "POST", .headers = {{"x-custom", "42"}, {"content-type", "application/json"}},
                           .body = R"({"a":1})"});
  });
  EXPECT_EQ(r.text(), R"(POST /echo {"a":1} application/json 42)");
}

TEST(Fetch, FollowsRedirectsAsTheFetchStandardAndHonoursManualAndError) {
  TestServer server;
  dt::Env env;
  EXPECT_EQ(onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/redirect"); }).text(), "hello");
  EXPECT_EQ(onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/redirect-absolute"); }).text(),
            "GET /echo?from=abs   ");
  // 303 turns a POST into a GET without its body; 307 keeps both.
  EXPECT_EQ(onRuntime<Response>(env, [&] {
              return durable::fetch(base(server) + "/see-other", {.method = "POST", .body = "data"});
            }).text(),
            "GET /echo?after=303   ");
  EXPECT_EQ(onRuntime<Response>(env, [&] {
              return durable::fetch(base(server) + "/temporary", {.method = "POST", .body = "data"});
            }).text(),
            "POST /echo?after=307 data text/plain;charset=UTF-8 ");
  const auto manual =
      onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/redirect", {.redirect = "manual"}); });
  EXPECT_EQ(manual.status(), 302);
  EXPECT_EQ(manual.headers().get("location"), "/hello");

  auto e = fetchError(env, base(server) + "/redirect", {.redirect = "error"});
  EXPECT_EQ(e.code(), durable::ErrorCode::kUnavailable);
  EXPECT_NE(std::string(e.what()).find("redirect is \"error\""), std::string::npos) << e.what();
  e = fetchError(env, base(server) + "/loop");
  EXPECT_NE(std::string(e.what()).find("more than 20 redirects"), std::string::npos) << e.what();
  // A mode that does not exist is refused before anything is sent.
  try {
    Request bad(base(server) + "/hello", {.redirect = "sometimes"});
    ADD_FAILURE() << "accepted";
  } catch (const durable::Error& error) {
    EXPECT_EQ(error.code(), durable::ErrorCode::kInvalidArgument);
  }
}

TEST(Fetch, KeepsConnectionsAliveAndReusesThem) {
  TestServer server;
  dt::Env env;
  const auto first = onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/connection"); }).text();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/connection"); }).text(), first);
  }
  EXPECT_EQ(server.connections(), 1);
}

TEST(Fetch, AStaleKeptAliveConnectionIsRetriedOnlyForIdempotentMethods) {
  TestServer server;
  dt::Env env;
  const auto first = onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/then-close"); }).text();
  // The pooled connection is closed by now: a GET goes again on a new one.
  std::this_thread::sleep_for(50ms);
  const auto second = onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/then-close"); }).text();
  EXPECT_NE(first, second);
  // A POST is not sent twice: the stale connection's failure is the caller's.
  std::this_thread::sleep_for(50ms);
  const auto e = fetchError(env, base(server) + "/then-close", {.method = "POST", .body = "once"});
  EXPECT_EQ(e.code(), durable::ErrorCode::kUnavailable);
  EXPECT_EQ(server.connections(), 2);
}

TEST(Fetch, TheClientOwnsHostAndFramingHeadAnswersAndForbiddenShapesAreRefused) {
  TestServer server;
  dt::Env env;
  const auto host = onRuntime<Response>(env, [&] {
    return durable::fetch(base(server) + "/host", {.headers = {{"host", "evil.example"}, {"content-length", "999"}}});
  });
  EXPECT_EQ(host.text(), "127.0.0.1:" + std::to_string(server.port()) + " ");
  const auto head = onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/hello", {.method = "HEAD"}); });
  EXPECT_EQ(head.status(), 200);
  EXPECT_EQ(head.text(), "");
  EXPECT_EQ(fetchError(env, base(server) + "/hello", {.method = "GET", .body = "x"}).code(),
            durable::ErrorCode::kInvalidArgument);
  EXPECT_EQ(fetchError(env, base(server) + "/hello", {.method = "TRACE"}).code(), durable::ErrorCode::kInvalidArgument);
}

TEST(Fetch, AuthorizationDoesNotFollowARedirectToAnotherOrigin) {
  TestServer server, other;
  dt::Env env;
  const durable::RequestInit withAuth{.headers = {{"authorization", "Bearer secret"}}};
  EXPECT_EQ(onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/same-origin-auth", withAuth); }).text(),
            "auth=Bearer secret");
  EXPECT_EQ(onRuntime<Response>(env, [&] {
              return durable::fetch(base(server) + "/to-port/" + std::to_string(other.port()), withAuth);
            }).text(),
            "auth=");
}

TEST(Fetch, TimeoutsTooLargeResponsesRefusalsAndBadUrlsAreClearErrors) {
  TestServer server;
  dt::EnvOptions o;
  o.fetchTimeoutMs = 300;
  o.maxFetchResponseBytes = 1024;
  dt::Env env(o);
  auto e = fetchError(env, base(server) + "/slow");
  EXPECT_EQ(e.code(), durable::ErrorCode::kUnavailable);
  EXPECT_NE(std::string(e.what()).find("no answer within 300 ms"), std::string::npos) << e.what();

  e = fetchError(env, base(server) + "/big");
  EXPECT_EQ(e.code(), durable::ErrorCode::kPayloadTooLarge);
  EXPECT_NE(std::string(e.what()).find("larger than 1024 bytes"), std::string::npos) << e.what();

  // A port nobody listens on: bound, then closed.
  std::uint16_t closedPort = 0;
  {
    asio::io_context io;
    tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    closedPort = a.local_endpoint().port();
  }
  e = fetchError(env, "http://127.0.0.1:" + std::to_string(closedPort) + "/");
  EXPECT_EQ(e.code(), durable::ErrorCode::kUnavailable);
  EXPECT_NE(std::string(e.what()).find("cannot connect to 127.0.0.1"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("refused"), std::string::npos) << e.what();

  e = fetchError(env, "ftp://127.0.0.1/file");
  EXPECT_EQ(e.code(), durable::ErrorCode::kInvalidArgument);
  e = fetchError(env, "not a url");
  EXPECT_EQ(e.code(), durable::ErrorCode::kInvalidArgument);

  // The client still works after all of that.
  EXPECT_EQ(onRuntime<Response>(env, [&] { return durable::fetch(base(server) + "/hello"); }).text(), "hello");
}

TEST(Fetch, HttpsVerifiesTheChainAndTheName) {
  const auto& certs = certificates();
  ::setenv("SSL_CERT_FILE", (certs / "ca.pem").c_str(), 1);
  TestServer good(certs, "server");
  TestServer otherName(certs, "other-name");
  TestServer selfSigned(certs, "self");
  dt::Env env;
  EXPECT_EQ(onRuntime<Response>(env, [&] { return durable::fetch(base(good, "https", "localhost") + "/hello"); }).text(),
            "hello");
  EXPECT_EQ(onRuntime<Response>(env, [&] { return durable::fetch(base(good, "https") + "/hello"); }).text(), "hello");

  auto e = fetchError(env, base(otherName, "https", "localhost") + "/hello");
  EXPECT_EQ(e.code(), durable::ErrorCode::kUnavailable);
  EXPECT_NE(std::string(e.what()).find("certificate verify failed"), std::string::npos) << e.what();
  e = fetchError(env, base(selfSigned, "https", "localhost") + "/hello");
  EXPECT_EQ(e.code(), durable::ErrorCode::kUnavailable);
  EXPECT_NE(std::string(e.what()).find("certificate verify failed"), std::string::npos) << e.what();
  ::unsetenv("SSL_CERT_FILE");
}

// An object awaiting a fetch lets other events in, as JavaScript does.
class Fetcher : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  Task<Response> fetch(Request request) override {
    const auto url = request.url();
    if (url.pathname() == "/call") {
      const auto target = url.searchParams().get("target").value_or("");
      co_await storage().put("state", std::string("fetching"));
      auto r = co_await durable::fetch(target);
      co_await storage().put("state", std::string("done"));
      co_return Response("fetched " + r.text());
    }
    co_return Response((co_await storage().get<std::string>("state")).value_or("none"));
  }
};

TEST(Fetch, AnObjectAwaitingAFetchServesOtherEvents) {
  TestServer server;
  dt::Env env;
  const auto& ns = env.exportClass<Fetcher>("FETCHER");
  const auto stub = ns.getByName("f");
  // Started from a task on the runtime; its answer arrives later.
  auto answer = std::make_shared<std::promise<std::string>>();
  auto slow = answer->get_future();
  env.run([](durable::Stub stub, std::string url, std::shared_ptr<std::promise<std::string>> answer) -> Task<void> {
    durable::spawn(stub.fetch(url), std::function<void(durable::Result<Response>)>([answer](durable::Result<Response> r) {
                     answer->set_value(r.ok() ? r.value().text() : "error");
                   }));
    co_return;
  }(stub, "http://do/call?target=" + base(server) + "/slow", answer));
  std::string seen;
  for (int i = 0; i < 100 && seen != "fetching"; ++i) {
    seen = env.fetch(stub, "http://do/state").text();
    if (seen != "fetching") std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(seen, "fetching");
  EXPECT_EQ(slow.get(), "fetched slow");
  EXPECT_EQ(env.fetch(stub, "http://do/state").text(), "done");
}

// Name resolution fails with a clear error. Run in a network namespace of its own (unshare
// -n: no interface is up, so the resolver's query cannot leave), by this same binary.
TEST(FetchDns, ANameThatDoesNotResolveIsAClearError) {
  if (std::getenv("DURABLE_FETCH_IN_NETNS")) {
    dt::Env env;
    const auto e = fetchError(env, "http://no-such-host.invalid/");
    EXPECT_EQ(e.code(), durable::ErrorCode::kUnavailable);
    EXPECT_NE(std::string(e.what()).find("cannot resolve host no-such-host.invalid"), std::string::npos) << e.what();
    return;
  }
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  if (std::system("unshare -n true >/dev/null 2>&1") != 0) GTEST_SKIP() << "cannot create a network namespace here";
  const std::string cmd = "DURABLE_FETCH_IN_NETNS=1 unshare -n '" + self +
                          "' --gtest_filter=FetchDns.ANameThatDoesNotResolveIsAClearError >/dev/null 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "the run inside the namespace failed; run it by hand: " << cmd;
}

}  // namespace
