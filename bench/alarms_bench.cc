// The alarm scheduler at scale (not a test): N objects with pending alarms, a restart that
// must not open them, and how late alarms fire.
//
//   build/alarms_bench [objects=100000] [firing=2000]
//
// 1. Sets an alarm an hour ahead on each of `objects` objects (real storage, full durability).
// 2. Restarts the runtime and times how long until it serves again with all alarms loaded.
// 3. Sets `firing` alarms spread over the next second on other objects and records, in each
//    alarm() handler, how late it ran (durable::now() - scheduledTime). Prints p50/p90/p99/max.
#include <durable/durable.h>
#include <durable/testing.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

namespace {

std::mutex g_mu;
std::vector<std::int64_t> g_lateness;

class Alarmed : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;

  durable::Task<durable::Response> fetch(durable::Request request) override {
    const auto at = std::stoll(request.url().searchParams().get("at").value_or("0"));
    co_await storage().setAlarm(at);
    co_return durable::Response("ok");
  }

  durable::Task<void> alarm(durable::AlarmInfo info) override {
    const auto late = durable::now() - info.scheduledTime;
    std::lock_guard lock(g_mu);
    g_lateness.push_back(late);
    co_return;
  }
};

// Sends one request to each object of [from, to), `window` at a time, from inside the runtime.
void setAlarms(durable::testing::Env& env, const durable::Namespace& ns, int from, int to,
               const std::function<std::int64_t(int)>& at) {
  const int window = 512;
  for (int start = from; start < to; start += window) {
    const int end = std::min(to, start + window);
    std::vector<std::pair<durable::Stub, std::string>> batch;
    for (int i = start; i < end; ++i) {
      batch.emplace_back(ns.getByName("o" + std::to_string(i)), "http://do/set?at=" + std::to_string(at(i)));
    }
    env.run([](std::vector<std::pair<durable::Stub, std::string>> batch) -> durable::Task<void> {
      durable::Promise<void> all;
      auto left = std::make_shared<std::size_t>(batch.size());
      for (auto& [stub, url] : batch) {
        durable::spawn(stub.fetch(url), std::function<void(durable::Result<durable::Response>)>(
                                            [all, left](durable::Result<durable::Response>) mutable {
                                              if (--*left == 0) all.setValue();
                                            }));
      }
      co_await all.future();
    }(std::move(batch)));
  }
}

double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

int main(int argc, char** argv) {
  const int objects = argc > 1 ? std::atoi(argv[1]) : 100000;
  const int firing = argc > 2 ? std::atoi(argv[2]) : 2000;
  durable::testing::EnvOptions options;
  options.shards = 2;
  durable::testing::Env env(options);
  const auto& ns = env.exportClass<Alarmed>("ALARMED");

  auto t0 = std::chrono::steady_clock::now();
  const auto hourAhead = durable::now() + 3600 * 1000;
  setAlarms(env, ns, 0, objects, [&](int) { return hourAhead; });
  auto t1 = std::chrono::steady_clock::now();
  std::printf("set %d alarms an hour ahead: %.1f s (%.0f objects/s)\n", objects, seconds(t1 - t0),
              objects / seconds(t1 - t0));

  env.restart();
  // The first answer after a restart: the shards have loaded every alarm before serving.
  env.fetch(ns.getByName("probe"), "http://do/set?at=" + std::to_string(hourAhead));
  auto t2 = std::chrono::steady_clock::now();
  std::printf("restart with %d pending alarms to first response: %.3f s (%zu objects live)\n", objects,
              seconds(t2 - t1), env.liveObjects());

  const auto base = durable::now() + 1500;
  setAlarms(env, ns, objects, objects + firing, [&](int i) { return base + (i - objects) * 1000 / firing; });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    {
      std::lock_guard lock(g_mu);
      if (static_cast<int>(g_lateness.size()) >= firing) break;
    }
    if (std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::lock_guard lock(g_mu);
  std::sort(g_lateness.begin(), g_lateness.end());
  if (g_lateness.empty()) {
    std::printf("no alarm fired\n");
    return 1;
  }
  auto pct = [&](double p) { return g_lateness[static_cast<std::size_t>(p * (g_lateness.size() - 1))]; };
  std::printf("%zu of %d alarms fired with %d others pending; lateness ms: p50 %lld, p90 %lld, p99 %lld, max %lld\n",
              g_lateness.size(), firing, objects, static_cast<long long>(pct(0.5)), static_cast<long long>(pct(0.9)),
              static_cast<long long>(pct(0.99)), static_cast<long long>(g_lateness.back()));
  return static_cast<int>(g_lateness.size()) == firing ? 0 : 1;
}
