// WebSockets and memory bounds against the real binary (issue 18, items 3 to 5): upgraded
// sockets hold their place in max_connections, slow and dead peers are dropped, unfinished
// messages and request bodies are bounded, and the server keeps serving throughout. Frames
// leave in gathered sends beside Beast (item 5): they keep their order, and Beast's own
// frames never land inside one of ours.
#include "integration/server_process.h"
#include "integration/websocket_client.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <thread>
#include <vector>

namespace durable_it {
namespace {

std::filesystem::path configWith(const TempDir& dir, const std::string& settings) {
  std::string text = readFile(seedConfig());
  // [durable] ends the seed's file: appended keys land in it.
  text += "\n" + settings + "\n";
  auto path = dir / "wrangler.toml";
  writeFile(path, text);
  return path;
}

std::unique_ptr<ServerProcess> start(const TempDir& dir, const std::filesystem::path& config) {
  ServerProcess::Options o;
  o.config = config;
  o.persistDir = dir / "state";
  o.stderrLog = dir / "server.log";
  return ServerProcess::start(o);
}

int connectTo(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends everything unless the peer goes away; returns the bytes that went.
std::size_t sendAll(int fd, const std::string& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  return sent;
}

// Reads until `done(received)` holds, the peer closes, or `timeout` passes. `eof` tells which.
std::string recvUntil(int fd, std::chrono::milliseconds timeout, const std::function<bool(const std::string&)>& done,
                      bool* eof = nullptr) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (eof) *eof = false;
  while (!done(got)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (eof) *eof = true;
      break;
    }
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

// A WebSocket upgrade by hand, for peers no client library would play: ones that never read,
// never answer a ping, or never finish a message. Returns the socket after the 101.
int rawUpgrade(std::uint16_t port, const std::string& target) {
  int fd = connectTo(port);
  if (fd < 0) return -1;
  const std::string req = "GET " + target +
                          " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  sendAll(fd, req);
  // Byte by byte up to the end of the head, so that no frame after it is taken here.
  std::string head;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (head.find("\r\n\r\n") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char c;
    if (::recv(fd, &c, 1, 0) != 1) break;
    head += c;
  }
  if (head.rfind("HTTP/1.1 101", 0) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A client frame: masked (with a zero key, so the payload reads as it is).
std::string clientFrame(std::uint8_t first, const std::string& payload) {
  std::string f;
  f += static_cast<char>(first);
  const std::size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(0x80 | n);
  } else if (n < 65536) {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xff);
  }
  f += std::string(4, '\0');
  return f + payload;
}

struct Frame {
  int opcode = 0;
  std::string payload;
};

// Calls visit(opcode, payload offset, payload length) for each complete server frame
// (unmasked) in `bytes`. Copies nothing: read loops run it after every piece they receive, and
// a copying parse of 24 MiB after each 64 KiB read is quadratic (30 s under ASan).
template <class Visit>
void walkFrames(const std::string& bytes, Visit&& visit) {
  std::size_t i = 0;
  while (i + 2 <= bytes.size()) {
    const auto b0 = static_cast<unsigned char>(bytes[i]);
    std::uint64_t len = static_cast<unsigned char>(bytes[i + 1]) & 0x7f;
    std::size_t head = 2;
    if (len == 126 || len == 127) {
      const int ext = len == 126 ? 2 : 8;
      if (i + 2 + ext > bytes.size()) break;
      len = 0;
      for (int k = 0; k < ext; ++k) len = (len << 8) | static_cast<unsigned char>(bytes[i + 2 + k]);
      head += ext;
    }
    if (len > bytes.size() || i + head + len > bytes.size()) break;
    visit(b0 & 0x0f, i + head, static_cast<std::size_t>(len));
    i += head + len;
  }
}

// Server frames in `bytes`, as far as they are complete.
std::vector<Frame> parseFrames(const std::string& bytes) {
  std::vector<Frame> out;
  walkFrames(bytes, [&](int opcode, std::size_t at, std::size_t len) { out.push_back({opcode, bytes.substr(at, len)}); });
  return out;
}

// How many complete frames `bytes` holds whose opcode `wanted` accepts.
template <class Wanted>
int countFrames(const std::string& bytes, Wanted&& wanted) {
  int n = 0;
  walkFrames(bytes, [&](int opcode, std::size_t, std::size_t) { n += wanted(opcode) ? 1 : 0; });
  return n;
}

int countFrames(const std::string& bytes) {
  return countFrames(bytes, [](int) { return true; });
}

bool hasClose(const std::string& bytes) {
  return countFrames(bytes, [](int opcode) { return opcode == 8; }) > 0;
}

int closeCode(const std::string& bytes) {
  for (const auto& f : parseFrames(bytes)) {
    if (f.opcode == 8 && f.payload.size() >= 2) {
      return (static_cast<unsigned char>(f.payload[0]) << 8) | static_cast<unsigned char>(f.payload[1]);
    }
  }
  return 0;
}

int statusOf(const std::string& target, std::uint16_t port) {
  auto ex = rawExchange("127.0.0.1", port, "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3s);
  if (ex.received.empty()) return 0;
  return parseResponse(ex.received).status;
}

// Polls until /health answers 200 (after sockets closed, the server sees it a moment later).
bool healthyWithin(std::uint16_t port, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (statusOf("/health", port) == 200) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

void raiseOwnDescriptorLimit() {
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  setrlimit(RLIMIT_NOFILE, &files);
}

// Opens WebSockets to one room until `count` were tried: those refused must be refused 503.
struct Opened {
  std::vector<std::unique_ptr<WsClient>> open;
  int refused503 = 0;
  std::string otherFailure;
};
Opened openMany(std::uint16_t port, int count, const std::string& room) {
  Opened r;
  for (int i = 0; i < count; ++i) {
    try {
      r.open.push_back(WsClient::connect("127.0.0.1", port, "/hibernating/" + room + "/websocket"));
    } catch (const WsError& e) {
      if (e.status == 503 && e.body.find("too many connections") != std::string::npos) {
        ++r.refused503;
      } else if (r.otherFailure.empty()) {
        r.otherFailure = std::string(e.what()) + " status " + std::to_string(e.status) + " " + e.body;
      }
    }
  }
  return r;
}

TEST(WsLimitsTest, UpgradedSocketsHoldTheirPlaceInMaxConnections) {
  TempDir dir;
  auto server = start(dir, configWith(dir, "max_connections = 20"));
  auto opened = openMany(server->port(), 30, "limit");
  EXPECT_EQ(opened.otherFailure, "");
  // Each upgrade held its place: 20 open, the other 10 refused.
  EXPECT_EQ(opened.open.size(), 20u);
  EXPECT_EQ(opened.refused503, 10);
  // /health is answered at once (503 from the accept loop), not left waiting.
  const auto before = std::chrono::steady_clock::now();
  auto ex = rawExchange(server->host(), server->port(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 3s);
  ASSERT_FALSE(ex.received.empty());
  auto r = parseResponse(ex.received);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(boost::json::parse(r.body).as_object().at("error").as_string(), "too many connections");
  EXPECT_LT(std::chrono::steady_clock::now() - before, 1s);
  // The open sockets still work: a message reaches every member.
  opened.open[0]->send("hello");
  for (auto& ws : opened.open) EXPECT_EQ(ws->readText(), "hello");
  // Closing five frees five places.
  for (int i = 0; i < 5; ++i) opened.open[static_cast<std::size_t>(i)]->close();
  ASSERT_TRUE(healthyWithin(server->port(), 5s));
  auto more = openMany(server->port(), 4, "limit");
  EXPECT_EQ(more.open.size(), 4u);
  opened.open.clear();
  more.open.clear();
  EXPECT_EQ(server->stop().code, 0);
}

TEST(WsLimitsTest, ALowDescriptorLimitRefusesWith503AndNeverFailsAccept) {
  raiseOwnDescriptorLimit();
  TempDir dir;
  // The server runs under prlimit with 256 descriptors, hard limit too (it raises its soft
  // limit to the hard one at start); its default max_connections is then 3/4 of 256: 192.
  if (!std::filesystem::exists("/usr/bin/prlimit")) GTEST_SKIP() << "needs /usr/bin/prlimit (util-linux)";
  auto wrapper = dir / "limited.sh";
  writeFile(wrapper, "#!/bin/sh\nexec /usr/bin/prlimit --nofile=256:256 " + binaryPath().string() + " \"$@\"\n");
  std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
  ServerProcess::Options o;
  o.binary = wrapper;
  o.config = seedConfig();
  o.persistDir = dir / "state";
  o.stderrLog = dir / "server.log";
  auto server = ServerProcess::start(o);

  auto opened = openMany(server->port(), 300, "fd");
  EXPECT_EQ(opened.otherFailure, "");
  EXPECT_EQ(opened.open.size(), 192u);
  EXPECT_EQ(opened.refused503, 300 - 192);
  auto ex = rawExchange(server->host(), server->port(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 3s);
  ASSERT_FALSE(ex.received.empty()) << "no answer to /health at the limit";
  EXPECT_EQ(parseResponse(ex.received).status, 503);
  // Everything that got in still works.
  opened.open.back()->send("still here");
  EXPECT_EQ(opened.open.front()->readText(), "still here");
  opened.open.clear();
  ASSERT_TRUE(healthyWithin(server->port(), 5s));
  auto again = openMany(server->port(), 10, "fd");
  EXPECT_EQ(again.open.size(), 10u);
  again.open.clear();
  EXPECT_EQ(server->stop().code, 0);
  const std::string log = server->stderrText();
  EXPECT_EQ(log.find("accept failed"), std::string::npos) << log;
}

TEST(WsLimitsTest, ASlowReaderIsClosed1008WhileTheOthersKeepReceiving) {
  TempDir dir;
  auto server = start(dir, configWith(dir, "max_websocket_send_queue_bytes = 1048576"));
  const std::string room = "/hibernating/slow/websocket";
  // The slow reader: connected, then never reads until the end.
  int slow = rawUpgrade(server->port(), room);
  ASSERT_GE(slow, 0);
  auto sender = WsClient::connect("127.0.0.1", server->port(), room);
  auto reader = WsClient::connect("127.0.0.1", server->port(), room);
  constexpr int kMessages = 40;
  const std::string payload(512 * 1024, 'x');
  for (int i = 0; i < kMessages; ++i) {
    std::string m = payload;
    m[0] = static_cast<char>('A' + i % 26);
    sender->sendBinary(m);
    auto a = sender->read(10s);
    auto b = reader->read(10s);
    ASSERT_TRUE(a && b) << "message " << i << " did not reach the members that read";
    EXPECT_EQ(a->data, m);
    EXPECT_EQ(b->data, m);
  }
  // Now the slow reader reads: what was written before the bound, then the close, 1008.
  bool eof = false;
  std::string got = recvUntil(slow, 30s, hasClose, &eof);
  EXPECT_EQ(closeCode(got), 1008) << "got " << got.size() << " bytes, eof " << eof << server->stderrText();
  std::size_t frames = 0;
  for (const auto& f : parseFrames(got)) frames += f.opcode == 2;
  EXPECT_LT(frames, static_cast<std::size_t>(kMessages));
  ::close(slow);
  EXPECT_NE(server->stderrText().find("max_websocket_send_queue_bytes"), std::string::npos);
  // The room goes on.
  sender->send("after");
  EXPECT_EQ(reader->readText(), "after");
  EXPECT_EQ(server->stop().code, 0);
}

TEST(WsLimitsTest, APeerThatTakesNoDataIsDroppedAfterTheWriteTimeout) {
  TempDir dir;
  auto server = start(dir, configWith(dir, "max_websocket_send_queue_bytes = 268435456\nwebsocket_write_timeout_ms = 500"));
  const std::string room = "/hibernating/stuck/websocket";
  int stuck = rawUpgrade(server->port(), room);
  ASSERT_GE(stuck, 0);
  auto sender = WsClient::connect("127.0.0.1", server->port(), room);
  const std::string payload(1024 * 1024, 'y');
  // More than loopback's socket buffers hold, so a write to `stuck` cannot complete.
  for (int i = 0; i < 24; ++i) {
    sender->sendBinary(payload);
    ASSERT_TRUE(sender->read(10s));
  }
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (server->stderrText().find("websocket_write_timeout_ms") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(server->stderrText().find("websocket_write_timeout_ms"), std::string::npos);
  // The connection is gone: reading drains what the kernel held, then the end.
  bool eof = false;
  recvUntil(stuck, 20s, [](const std::string&) { return false; }, &eof);
  EXPECT_TRUE(eof);
  ::close(stuck);
  sender->send("after");
  EXPECT_EQ(sender->readText(), "after");
  EXPECT_EQ(server->stop().code, 0);
}

TEST(WsLimitsTest, ASilentPeerIsPingedThenDroppedWhileAnAnsweringOneStays) {
  TempDir dir;
  auto server =
      start(dir, configWith(dir, "websocket_ping_interval_ms = 300\nwebsocket_pong_timeout_ms = 400\nhibernation_timeout_ms = 100"));
  const std::string room = "/hibernating/idle/websocket";
  int dead = rawUpgrade(server->port(), room);
  ASSERT_GE(dead, 0);
  auto alive = WsClient::connect("127.0.0.1", server->port(), room);
  // The dead peer gets a ping (opcode 9), answers nothing, and is dropped without a word.
  // Meanwhile the live client reads, as a browser always does, so it answers its own pings
  // (Beast answers them only inside a read).
  bool eof = false;
  const auto before = std::chrono::steady_clock::now();
  std::string got;
  while (!eof && std::chrono::steady_clock::now() - before < 5s) {
    EXPECT_TRUE(alive->drain(20ms).empty());
    got += recvUntil(dead, 20ms, [](const std::string&) { return false; }, &eof);
  }
  EXPECT_TRUE(eof) << "the silent peer was not dropped";
  auto frames = parseFrames(got);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.front().opcode, 9);
  EXPECT_GE(std::chrono::steady_clock::now() - before, 600ms);
  ::close(dead);
  // The live client answers its pings (Beast does, as browsers do) for several rounds, and
  // stays connected through hibernation.
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(alive->drain(100ms).empty());
  EXPECT_TRUE(alive->isOpen());
  alive->send("still here");
  EXPECT_EQ(alive->readText(), "still here");
  EXPECT_EQ(server->stop().code, 0);
}

TEST(WsLimitsTest, AMessageThatNeverEndsIsClosed1008AfterItsTimeout) {
  TempDir dir;
  auto server = start(dir, configWith(dir, "websocket_message_timeout_ms = 500"));
  const std::string room = "/hibernating/frag/websocket";
  int fd = rawUpgrade(server->port(), room);
  ASSERT_GE(fd, 0);
  auto other = WsClient::connect("127.0.0.1", server->port(), room);
  // A text message's first fragment (FIN clear), and nothing after it.
  sendAll(fd, clientFrame(0x01, "the start of"));
  bool eof = false;
  std::string got = recvUntil(fd, 5s, hasClose, &eof);
  EXPECT_EQ(closeCode(got), 1008);
  ::close(fd);
  other->send("fine");
  EXPECT_EQ(other->readText(), "fine");
  EXPECT_EQ(server->stop().code, 0);
}

TEST(WsLimitsTest, UnfinishedMessagesPastTheServerWideBoundClose1009) {
  TempDir dir;
  auto server = start(dir, configWith(dir, "max_websocket_reassembly_bytes = 6291456"));
  const std::string room = "/hibernating/reasm/websocket";
  int holder = rawUpgrade(server->port(), room);
  int greedy = rawUpgrade(server->port(), room);
  ASSERT_GE(holder, 0);
  ASSERT_GE(greedy, 0);
  const std::string mib(1024 * 1024, 'z');
  // One socket holds 1 MiB of an unfinished message, within the bound.
  sendAll(holder, clientFrame(0x02, mib));
  std::this_thread::sleep_for(200ms);
  // Another keeps adding fragments; far under the per-message limit (32 MiB), but together
  // they pass 6 MiB: it alone is closed with 1009.
  sendAll(greedy, clientFrame(0x02, mib));
  std::string got;
  for (int i = 0; i < 12 && !hasClose(got); ++i) {
    sendAll(greedy, clientFrame(0x00, mib));
    got += recvUntil(greedy, 300ms, hasClose);
  }
  got += recvUntil(greedy, 3s, hasClose);
  EXPECT_EQ(closeCode(got), 1009);
  ::close(greedy);
  // The first finishes its message, and the room relays it whole.
  sendAll(holder, clientFrame(0x80, "!"));
  std::string back = recvUntil(holder, 10s, [](const std::string& b) { return countFrames(b) > 0; });
  auto frames = parseFrames(back);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].opcode, 2);
  EXPECT_EQ(frames[0].payload, mib + "!");
  ::close(holder);
  EXPECT_EQ(server->stop().code, 0);
}

TEST(WsLimitsTest, RequestBodiesPastTheServerWideBoundAre503AndNothingRuns) {
  TempDir dir;
  auto server = start(dir, configWith(dir, "max_body_bytes_in_memory = 1000000"));
  // One request holds 800,000 bytes of the bound while its body trickles in.
  int holder = connectTo(server->port());
  ASSERT_GE(holder, 0);
  sendAll(holder, "POST /counters/held/increment HTTP/1.1\r\nHost: x\r\nContent-Length: 800000\r\n\r\n" +
                      std::string(1000, 'a'));
  std::this_thread::sleep_for(200ms);
  // Another that would pass the bound is refused before its body is read; its object never runs.
  auto ex = rawExchange(server->host(), server->port(),
                        "POST /counters/refused/increment HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n" +
                            std::string(300000, 'b'),
                        5s);
  auto r = parseResponse(ex.received);
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(boost::json::parse(r.body).as_object().at("error").as_string().find("request bodies"), std::string::npos);
  EXPECT_TRUE(ex.peerClosed);
  // A chunked body is counted as it grows: 1.2 MB in chunks passes the bound too.
  std::string chunked = "POST /counters/chunked/increment HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 12; ++i) chunked += "186a0\r\n" + std::string(100000, 'c') + "\r\n";
  chunked += "0\r\n\r\n";
  auto ex2 = rawExchange(server->host(), server->port(), chunked, 5s);
  EXPECT_EQ(parseResponse(ex2.received).status, 503);
  EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/counters/refused").body, R"({"count":0})");
  EXPECT_EQ(httpRequest(server->host(), server->port(), "GET", "/counters/chunked").body, R"({"count":0})");
  // The first finishes and is served; its share goes back, and the same request now passes.
  sendAll(holder, std::string(799000, 'a'));
  std::string reply = recvUntil(holder, 5s, [](const std::string& b) { return b.find("\r\n\r\n{") != std::string::npos && b.back() == '}'; });
  EXPECT_EQ(parseResponse(reply).status, 200);
  ::close(holder);
  auto ok = rawExchange(server->host(), server->port(),
                        "POST /counters/refused/increment HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 300000\r\n\r\n" +
                            std::string(300000, 'b'),
                        5s);
  EXPECT_EQ(parseResponse(ok.received).status, 200);
  EXPECT_EQ(parseResponse(ok.received).body, R"({"count":1})");
  EXPECT_EQ(server->stop().code, 0);
}

TEST(WsLimitsTest, APongNeverLandsInsideAFrameThePeerIsSlowToTake) {
  TempDir dir;
  auto server = start(dir, configWith(dir, "max_websocket_send_queue_bytes = 268435456"));
  const std::string room = "/hibernating/midframe/websocket";
  int slow = rawUpgrade(server->port(), room);
  ASSERT_GE(slow, 0);
  auto sender = WsClient::connect("127.0.0.1", server->port(), room);
  // More than loopback's socket buffers hold: the server stops inside a frame to `slow`.
  constexpr int kMessages = 24;
  for (int i = 0; i < kMessages; ++i) {
    sender->sendBinary(std::string(1024 * 1024, static_cast<char>('a' + i)));
    ASSERT_TRUE(sender->read(10s));
  }
  // Beast answers this ping while a frame of ours is partly written: its pong must wait for
  // that frame's end.
  ASSERT_EQ(sendAll(slow, clientFrame(0x89, "p1")), 8u);
  std::this_thread::sleep_for(300ms);
  auto complete = [](const std::string& got) {
    return countFrames(got, [](int opcode) { return opcode == 2 || opcode == 10; }) >= kMessages + 1;
  };
  const std::string got = recvUntil(slow, 30s, complete);
  const auto frames = parseFrames(got);
  int binary = 0, pongs = 0;
  for (const auto& f : frames) {
    if (f.opcode == 2) {
      ASSERT_EQ(f.payload, std::string(1024 * 1024, static_cast<char>('a' + binary))) << "binary frame " << binary;
      ++binary;
    } else {
      ASSERT_EQ(f.opcode, 10) << "after " << binary << " binary frames";
      EXPECT_EQ(f.payload, "p1");
      ++pongs;
    }
  }
  EXPECT_EQ(binary, kMessages);
  EXPECT_EQ(pongs, 1);
  ::close(slow);
  sender->send("after");
  EXPECT_EQ(sender->readText(), "after");
  EXPECT_EQ(server->stop().code, 0);
}

TEST(WsLimitsTest, EveryMemberOfARoomJoinedByHundredsGetsEveryJoinInOrder) {
  TempDir dir;
  auto server = start(dir, seedConfig());
  // The members read nothing until every join is done, so the server queues and coalesces
  // up to one frame per later join for each of them.
  constexpr int kMembers = 300;
  std::vector<int> members;
  for (int i = 0; i < kMembers; ++i) {
    members.push_back(rawUpgrade(server->port(), "/rooms/storm/websocket?user=u" + std::to_string(i)));
    ASSERT_GE(members.back(), 0) << "member " << i;
  }
  EXPECT_EQ(statusOf("/health", server->port()), 200);
  for (int i = 0; i < kMembers; ++i) {
    // Its own join, the history, then the join of every later member, in join order.
    const std::size_t want = static_cast<std::size_t>(kMembers - i) + 1;
    const std::string got = recvUntil(members[static_cast<std::size_t>(i)], 10s,
                                      [&](const std::string& g) { return countFrames(g) >= static_cast<int>(want); });
    const auto frames = parseFrames(got);
    ASSERT_EQ(frames.size(), want) << "member " << i;
    int next = i;
    for (std::size_t f = 0; f < frames.size(); ++f) {
      ASSERT_EQ(frames[f].opcode, 1);
      const auto m = boost::json::parse(frames[f].payload).as_object();
      if (f == 1) {
        EXPECT_EQ(m.at("type").as_string(), "history") << "member " << i;
        continue;
      }
      EXPECT_EQ(m.at("type").as_string(), "join") << "member " << i << " frame " << f;
      EXPECT_EQ(m.at("user").as_string(), "u" + std::to_string(next)) << "member " << i << " frame " << f;
      ++next;
    }
  }
  // A message now reaches every member once, behind its commit.
  ASSERT_EQ(sendAll(members[0], clientFrame(0x81, R"({"type":"message","content":"hi all"})")), 43u);
  for (int i = 0; i < kMembers; ++i) {
    const std::string got = recvUntil(members[static_cast<std::size_t>(i)], 10s,
                                      [](const std::string& g) { return countFrames(g) > 0; });
    const auto frames = parseFrames(got);
    ASSERT_EQ(frames.size(), 1u) << "member " << i;
    const auto m = boost::json::parse(frames[0].payload).as_object();
    EXPECT_EQ(m.at("content").as_string(), "hi all");
    EXPECT_EQ(m.at("user").as_string(), "u0");
  }
  for (int fd : members) ::close(fd);
  EXPECT_EQ(server->stop().code, 0);
}

TEST(WsLimitsTest, TheNewSettingsAreValidated) {
  TempDir dir;
  for (const std::string& bad : {"max_websocket_send_queue_bytes = 0", "websocket_write_timeout_ms = 0",
                                 "max_body_bytes_in_memory = -1", "websocket_ping_interval_ms = \"often\"",
                                 "max_websocket_reassembly_bytes = 0", "websocket_message_timeout_ms = 0",
                                 "websocket_pong_timeout_ms = 0"}) {
    auto config = configWith(dir, bad);
    auto result = runBinary({"serve", "--config", config.string(), "--listen", "127.0.0.1:0", "--persist-to", (dir / "state").string()}, dir.path());
    EXPECT_EQ(result.status.code, 1) << bad;
    EXPECT_NE(result.err.find(bad.substr(0, bad.find(' '))), std::string::npos) << result.err;
  }
}

}  // namespace
}  // namespace durable_it
