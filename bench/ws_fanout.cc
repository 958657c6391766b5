// WebSocket fan-out benchmark: R receivers and one sender in one room of a running `durable`
// serving the seed app; the sender keeps W broadcasts outstanding (sent but not yet come back
// to itself) and every receiver counts what reaches it. Prints deliveries/s (frames received
// by the receivers), broadcasts/s and the delivery latency (send to receipt).
//
//   ws_fanout --port 8787 [--route hibernating|chat] [--receivers 100] [--window 32]
//             [--seconds 10] [--warmup 1] [--size 64] [--room NAME]
//
// --route hibernating: GET /hibernating/:id/websocket (the seed's HibernatingRoom: every
//   message goes back to every socket, nothing stored);
// --route chat: GET /rooms/:id/websocket (the ChatRoom: each message is stored in the
//   room's history before its broadcast leaves, behind the output gate).
// One thread drives every connection. Not a test: bench/README.md.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  unsigned short port = 8787;
  std::string route = "hibernating";
  int receivers = 100;
  int window = 32;
  double seconds = 10;
  double warmup = 1;
  std::size_t size = 64;
  std::string room = "fanout";
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--host") o.host = value();
    else if (a == "--port") o.port = static_cast<unsigned short>(std::stoi(value()));
    else if (a == "--route") o.route = value();
    else if (a == "--receivers") o.receivers = std::stoi(value());
    else if (a == "--window") o.window = std::stoi(value());
    else if (a == "--seconds") o.seconds = std::stod(value());
    else if (a == "--warmup") o.warmup = std::stod(value());
    else if (a == "--size") o.size = std::stoul(value());
    else if (a == "--room") o.room = value();
    else {
      std::cerr << "usage: ws_fanout --port P [--route hibernating|chat] [--receivers N] [--window W] [--seconds S] "
                   "[--warmup S] [--size BYTES] [--room NAME]\n";
      std::exit(2);
    }
  }
  if (o.route != "hibernating" && o.route != "chat") {
    std::cerr << "--route is hibernating or chat\n";
    std::exit(2);
  }
  return o;
}

std::int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// The send time carried in a frame: "t=<ns>;" in the text, or -1 (joins, history).
std::int64_t stampOf(std::string_view frame, bool chat) {
  if (chat && frame.find("\"type\":\"message\"") == std::string_view::npos) return -1;
  auto p = frame.find("t=");
  if (p == std::string_view::npos) return -1;
  return std::strtoll(frame.data() + p + 2, nullptr, 10);
}

struct Stats {
  bool measuring = false;
  std::uint64_t deliveries = 0;   // frames that reached a receiver while measuring
  std::uint64_t broadcasts = 0;   // the sender's own copies while measuring
  std::vector<std::uint32_t> latencyUs;
};

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(asio::io_context& ioc, const Options& o, Stats& stats, bool sender)
      : ws_(ioc), o_(o), stats_(stats), sender_(sender) {}

  void connect(const std::string& target) {
    auto& tcpStream = beast::get_lowest_layer(ws_);
    tcpStream.connect(tcp::endpoint(asio::ip::make_address(o_.host), o_.port));
    tcpStream.socket().set_option(tcp::no_delay(true));
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    ws_.handshake(o_.host + ":" + std::to_string(o_.port), target);
  }

  void startReading() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) { self->onRead(ec); });
  }

  // The sender: keeps `window` broadcasts in flight.
  void pump() {
    while (!writing_ && outstanding_ < o_.window) send();
  }

 private:
  void onRead(beast::error_code ec) {
    if (ec) {
      std::cerr << (sender_ ? "sender" : "receiver") << ": " << ec.message() << "\n";
      std::exit(1);
    }
    std::string_view frame(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    const std::int64_t stamp = stampOf(frame, o_.route == "chat");
    buffer_.consume(buffer_.size());
    if (stamp > 0) {
      if (sender_) {
        --outstanding_;
        if (stats_.measuring) ++stats_.broadcasts;
        pump();
      } else if (stats_.measuring) {
        ++stats_.deliveries;
        stats_.latencyUs.push_back(static_cast<std::uint32_t>((nowNs() - stamp) / 1000));
      }
    }
    startReading();
  }

  void send() {
    std::string stamp = "t=" + std::to_string(nowNs()) + ";";
    if (stamp.size() < o_.size) stamp.append(o_.size - stamp.size(), 'x');
    out_ = o_.route == "chat" ? R"({"type":"message","content":")" + stamp + "\"}" : stamp;
    ++outstanding_;
    writing_ = true;
    ws_.async_write(asio::buffer(out_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->writing_ = false;
      if (ec) {
        std::cerr << "sender: " << ec.message() << "\n";
        std::exit(1);
      }
      self->pump();
    });
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  const Options& o_;
  Stats& stats_;
  bool sender_;
  bool writing_ = false;
  int outstanding_ = 0;
  std::string out_;
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  asio::io_context ioc;
  Stats stats;
  const std::string target = o.route == "chat" ? "/rooms/" + o.room + "/websocket?user=" : "/hibernating/" + o.room + "/websocket";
  std::vector<std::shared_ptr<Conn>> receivers;
  try {
    for (int i = 0; i < o.receivers; ++i) {
      auto c = std::make_shared<Conn>(ioc, o, stats, false);
      c->connect(o.route == "chat" ? target + "r" + std::to_string(i) : target);
      receivers.push_back(c);
    }
    auto sender = std::make_shared<Conn>(ioc, o, stats, true);
    sender->connect(o.route == "chat" ? target + "sender" : target);
    for (auto& r : receivers) r->startReading();
    sender->startReading();
    sender->pump();
  } catch (const std::exception& e) {
    std::cerr << "ws_fanout: cannot connect to " << o.host << ":" << o.port << target << ": " << e.what() << "\n";
    return 1;
  }

  asio::steady_timer timer(ioc);
  Clock::time_point start;
  timer.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.warmup)));
  timer.async_wait([&](beast::error_code) {
    stats.measuring = true;
    start = Clock::now();
    timer.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds)));
    timer.async_wait([&](beast::error_code) {
      stats.measuring = false;
      ioc.stop();
    });
  });
  ioc.run();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  auto& l = stats.latencyUs;
  std::sort(l.begin(), l.end());
  auto pct = [&](double p) -> double {
    if (l.empty()) return 0;
    return l[std::min(l.size() - 1, static_cast<std::size_t>(p * static_cast<double>(l.size())))] / 1000.0;
  };
  std::printf(
      "route=%s receivers=%d window=%d size=%zu: %.0f deliveries/s, %.0f broadcasts/s, latency p50 %.2f ms p99 %.2f ms "
      "(%.1f s)\n",
      o.route.c_str(), o.receivers, o.window, o.size, static_cast<double>(stats.deliveries) / elapsed,
      static_cast<double>(stats.broadcasts) / elapsed, pct(0.50), pct(0.99), elapsed);
  return 0;
}
