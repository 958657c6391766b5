// Server memory under the attacks of issue 18, item 4, against a running `durable` serving the
// seed app: samples the server's VmRSS every 50 ms while each attack runs and holds, and again
// after its connections are gone. Not a test (bench/README.md, bench/attack.sh).
//
//   attack_memory --port P --pid SERVER_PID [--attack slow-readers|fragments|bodies|all]
//                 [--hold 10] [--after 10]
//
// slow-readers  10 sockets join a HibernatingRoom and never read (a 4 KiB receive buffer), a
//               sender sends 40 binary frames of 4 MiB to the room.
// fragments     20 sockets each send 30 MiB of a fragmented message and never finish it.
// bodies        30 connections each POST a 100 MiB body at once.
//
// Each attack prints the RSS before, its peak while the attack ran and held (--hold seconds),
// the RSS at the end of the hold, and the RSS --after seconds after its connections closed,
// with what the server did to the attackers (close codes, statuses). Exit status 0 when every
// peak stayed under --limit-mib (300) and every "after" came back within 64 MiB of "before".
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kMiB = 1024 * 1024;

struct Options {
  std::string host = "127.0.0.1";
  unsigned short port = 8787;
  int pid = 0;
  std::string attack = "all";
  double hold = 10;
  double after = 10;
  long limitMiB = 300;
};

Options opt;

long rssKiB() {
  std::ifstream in("/proc/" + std::to_string(opt.pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  std::cerr << "attack_memory: the server (pid " << opt.pid << ") is gone\n";
  std::exit(1);
}

// Samples VmRSS every 50 ms on its own thread and keeps the peak.
class RssSampler {
 public:
  RssSampler() : thread_([this] {
      while (!stop_) {
        const long r = rssKiB();
        long p = peak_.load();
        while (r > p && !peak_.compare_exchange_weak(p, r)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }) {}
  ~RssSampler() {
    stop_ = true;
    thread_.join();
  }
  long peak() const { return peak_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<long> peak_{0};
  std::thread thread_;
};

// What the server did to the attack's connections, counted by outcome.
class Outcomes {
 public:
  void add(const std::string& what) {
    std::lock_guard lock(mu_);
    ++counts_[what];
  }
  std::string str() const {
    std::lock_guard lock(mu_);
    std::string out;
    for (const auto& [what, n] : counts_) out += (out.empty() ? "" : ", ") + std::to_string(n) + " " + what;
    return out.empty() ? "none" : out;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, int> counts_;
};

using Ws = websocket::stream<tcp::socket>;

std::unique_ptr<Ws> join(asio::io_context& ioc, const std::string& target, int receiveBuffer = 0) {
  auto ws = std::make_unique<Ws>(ioc);
  auto& sock = ws->next_layer();
  sock.open(tcp::v4());
  // Set before connect, so the window the server sees is small from the first byte.
  if (receiveBuffer > 0) sock.set_option(asio::socket_base::receive_buffer_size(receiveBuffer));
  sock.connect(tcp::endpoint(asio::ip::make_address(opt.host), opt.port));
  ws->set_option(websocket::stream_base::decorator([](websocket::request_type& r) { r.set("Origin", "http://x"); }));
  ws->handshake(opt.host + ":" + std::to_string(opt.port), target);
  return ws;
}

// Reads until the server closes the socket or the deadline; records how it ended. asio's
// blocking reads ignore SO_RCVTIMEO, so a watchdog shuts the socket down at the deadline.
void drain(Ws& ws, Outcomes& out, Clock::time_point deadline) {
  std::atomic<bool> finished{false}, timedOut{false};
  std::thread watchdog([&] {
    while (!finished && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!finished) {
      timedOut = true;
      ::shutdown(ws.next_layer().native_handle(), SHUT_RDWR);
    }
  });
  beast::flat_buffer buf;
  beast::error_code ec;
  while (!ec) {
    ws.read(buf, ec);
    buf.consume(buf.size());
  }
  finished = true;
  watchdog.join();
  if (timedOut) {
    out.add("still open");
  } else if (ec == websocket::error::closed) {
    out.add("closed " + std::to_string(ws.reason().code));
  } else {
    out.add("dropped (" + ec.message() + ")");
  }
}

struct Report {
  std::string name;
  long before = 0, peak = 0, endOfHold = 0, after = 0;
  std::string outcomes;
};

// A frame header by hand: beast's client would finish the message on close.
std::string frameHeader(bool fin, int opcode, std::size_t len) {
  std::string h;
  h.push_back(static_cast<char>((fin ? 0x80 : 0) | opcode));
  if (len < 126) {
    h.push_back(static_cast<char>(0x80 | len));
  } else if (len <= 0xFFFF) {
    h.push_back(static_cast<char>(0x80 | 126));
    h.push_back(static_cast<char>(len >> 8));
    h.push_back(static_cast<char>(len & 0xFF));
  } else {
    h.push_back(static_cast<char>(0x80 | 127));
    for (int s = 56; s >= 0; s -= 8) h.push_back(static_cast<char>((len >> s) & 0xFF));
  }
  h.append(4, '\0');  // mask key 0: the payload goes out as is
  return h;
}

void sleepFor(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

Report slowReaders() {
  Report r{"slow-readers: 10 non-reading sockets, 40 x 4 MiB frames sent"};
  asio::io_context ioc;
  const std::string target = "/hibernating/attack-slow/websocket";
  std::vector<std::unique_ptr<Ws>> readers;
  for (int i = 0; i < 10; ++i) readers.push_back(join(ioc, target, 4096));
  auto sender = join(ioc, target);
  sleepFor(0.5);
  r.before = rssKiB();
  Outcomes outcomes;
  {
    RssSampler sampler;
    // The sender is a member too: it reads what it gets back, so only the ten are slow. It
    // writes raw frames and reads raw bytes, so the two threads share only the socket.
    auto& raw = sender->next_layer();
    std::thread senderReader([&] {
      std::vector<char> buf(256 * 1024);
      beast::error_code ec;
      while (!ec) raw.read_some(asio::buffer(buf), ec);
    });
    // Forty different frames: identical ones would cost the server one shared buffer.
    std::string frame(4 * kMiB, 'x');
    const std::string header = frameHeader(true, 0x2, frame.size());
    int sent = 0;
    for (int i = 0; i < 40; ++i) {
      std::snprintf(frame.data(), 16, "frame %08d", i);
      beast::error_code ec;
      asio::write(raw, std::vector<asio::const_buffer>{asio::buffer(header), asio::buffer(frame)}, ec);
      if (ec) {
        outcomes.add("sender stopped after " + std::to_string(sent) + " frames (" + ec.message() + ")");
        break;
      }
      ++sent;
    }
    sleepFor(opt.hold);
    r.endOfHold = rssKiB();
    r.peak = sampler.peak();
    // The readers now read, to see whether the server closed them and with which code.
    const auto deadline = Clock::now() + std::chrono::seconds(2);
    std::vector<std::thread> drains;
    for (auto& ws : readers) drains.emplace_back([&, w = ws.get()] { drain(*w, outcomes, deadline); });
    for (auto& t : drains) t.join();
    ::shutdown(raw.native_handle(), SHUT_RDWR);
    senderReader.join();
  }
  for (auto& ws : readers) {
    beast::error_code ignored;
    ws->next_layer().close(ignored);
  }
  sleepFor(opt.after);
  r.after = rssKiB();
  r.outcomes = outcomes.str();
  return r;
}

Report fragments() {
  Report r{"fragments: 20 sockets each hold 30 MiB of an unfinished message"};
  asio::io_context ioc;
  std::vector<std::unique_ptr<Ws>> sockets;
  for (int i = 0; i < 20; ++i) sockets.push_back(join(ioc, "/hibernating/attack-frag" + std::to_string(i) + "/websocket"));
  sleepFor(0.5);
  r.before = rssKiB();
  Outcomes outcomes;
  {
    RssSampler sampler;
    std::vector<std::thread> senders;
    for (auto& ws : sockets) {
      senders.emplace_back([&, w = ws.get()] {
        const std::string chunk(kMiB, 'f');
        auto& sock = w->next_layer();
        beast::error_code ec;
        for (int i = 0; i < 30 && !ec; ++i) {
          const std::string h = frameHeader(false, i == 0 ? 0x2 : 0x0, chunk.size());
          asio::write(sock, std::vector<asio::const_buffer>{asio::buffer(h), asio::buffer(chunk)}, ec);
        }
        if (ec) outcomes.add("send stopped (" + ec.message() + ")");
      });
    }
    for (auto& t : senders) t.join();
    sleepFor(opt.hold);
    r.endOfHold = rssKiB();
    r.peak = sampler.peak();
  }
  // Did the server close them? Read whatever it sent (a close frame, or nothing).
  for (auto& ws : sockets) {
    auto& sock = ws->next_layer();
    beast::error_code ec;
    sock.non_blocking(true);
    std::array<unsigned char, 64> head{};
    const std::size_t n = sock.read_some(asio::buffer(head), ec);
    if (n >= 4 && (head[0] & 0x0F) == 0x8) {
      outcomes.add("closed " + std::to_string((head[2] << 8) | head[3]));
    } else if (ec == asio::error::eof || ec == asio::error::connection_reset) {
      outcomes.add("dropped");
    } else {
      outcomes.add("still open");
    }
    sock.close(ec);
  }
  sleepFor(opt.after);
  r.after = rssKiB();
  r.outcomes = outcomes.str();
  return r;
}

Report bodies() {
  Report r{"bodies: 30 concurrent POSTs of 100 MiB"};
  sleepFor(0.5);
  r.before = rssKiB();
  Outcomes outcomes;
  {
    RssSampler sampler;
    std::vector<std::thread> posts;
    for (int i = 0; i < 30; ++i) {
      posts.emplace_back([&, i] {
        asio::io_context ioc;
        tcp::socket sock(ioc);
        beast::error_code ec;
        sock.connect(tcp::endpoint(asio::ip::make_address(opt.host), opt.port), ec);
        if (ec) return outcomes.add("connect failed (" + ec.message() + ")");
        const std::size_t total = 100 * kMiB;
        const std::string head = "POST /counters/attack" + std::to_string(i) +
                                 "/increment HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                                 "Content-Length: " + std::to_string(total) + "\r\n\r\n";
        asio::write(sock, asio::buffer(head), ec);
        const std::string chunk(kMiB, 'b');
        for (std::size_t sent = 0; sent < total && !ec; sent += chunk.size()) asio::write(sock, asio::buffer(chunk), ec);
        // A server that refused early has closed; its answer may still be readable.
        beast::error_code rec;
        asio::streambuf answer;
        asio::read_until(sock, answer, "\r\n", rec);
        std::string status;
        std::istream(&answer) >> status >> status;
        outcomes.add(status.empty() ? "no answer (" + (ec ? "send: " + ec.message() : "read: " + rec.message()) + ")"
                                    : "answered " + status);
      });
    }
    for (auto& t : posts) t.join();
    r.peak = sampler.peak();
    r.endOfHold = rssKiB();
  }
  sleepFor(opt.after);
  r.after = rssKiB();
  r.outcomes = outcomes.str();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--host") opt.host = v;
    else if (a == "--port") opt.port = static_cast<unsigned short>(std::stoi(v));
    else if (a == "--pid") opt.pid = std::stoi(v);
    else if (a == "--attack") opt.attack = v;
    else if (a == "--hold") opt.hold = std::stod(v);
    else if (a == "--after") opt.after = std::stod(v);
    else if (a == "--limit-mib") opt.limitMiB = std::stol(v);
    else {
      std::cerr << "usage: attack_memory --port P --pid SERVER_PID [--attack slow-readers|fragments|bodies|all]"
                   " [--hold S] [--after S] [--limit-mib M]\n";
      return 2;
    }
  }
  if (opt.pid <= 0) {
    std::cerr << "attack_memory: --pid of the server is required\n";
    return 2;
  }
  if (opt.attack != "all" && opt.attack != "slow-readers" && opt.attack != "fragments" && opt.attack != "bodies") {
    std::cerr << "attack_memory: --attack is one of slow-readers, fragments, bodies, all\n";
    return 2;
  }
  std::vector<Report> reports;
  try {
    if (opt.attack == "all" || opt.attack == "slow-readers") reports.push_back(slowReaders());
    if (opt.attack == "all" || opt.attack == "fragments") reports.push_back(fragments());
    if (opt.attack == "all" || opt.attack == "bodies") reports.push_back(bodies());
  } catch (const std::exception& e) {
    std::cerr << "attack_memory: " << e.what() << "\n";
    return 1;
  }
  bool ok = true;
  std::printf("| attack | RSS before | peak | end of hold | %.0f s after | server's answer |\n|---|---:|---:|---:|---:|---|\n",
              opt.after);
  for (const auto& r : reports) {
    std::printf("| %s | %ld MiB | %ld MiB | %ld MiB | %ld MiB | %s |\n", r.name.c_str(), r.before / 1024,
                r.peak / 1024, r.endOfHold / 1024, r.after / 1024, r.outcomes.c_str());
    ok = ok && r.peak / 1024 < opt.limitMiB && r.after - r.before < 64 * 1024;
  }
  std::printf("%s: every peak under %ld MiB and back within 64 MiB of the start after\n", ok ? "met" : "NOT met",
              opt.limitMiB);
  return ok ? 0 : 1;
}
