#include "admin/admin.h"

#include "runtime/runtime.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <limits>
#include <string>
#include <vector>

namespace durable::detail {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

ClientMetric& sample(MetricFamily& f, std::vector<ClientMetric::Label> labels = {}) {
  auto& m = f.metric.emplace_back();
  m.label = std::move(labels);
  return m;
}

void setCounter(MetricFamily& f, double v, std::vector<ClientMetric::Label> labels = {}) {
  sample(f, std::move(labels)).counter.value = v;
}

void setGauge(MetricFamily& f, double v, std::vector<ClientMetric::Label> labels = {}) {
  sample(f, std::move(labels)).gauge.value = v;
}

void setHistogram(MetricFamily& f, const metrics::HistogramSnapshot& h, std::vector<ClientMetric::Label> labels = {}) {
  auto& m = sample(f, std::move(labels));
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < h.counts.size(); ++i) {
    cumulative += h.counts[i];
    m.histogram.bucket.push_back(
        {cumulative, i < h.bounds.size() ? h.bounds[i] : std::numeric_limits<double>::infinity()});
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = h.sum;
}

}  // namespace

std::string renderMetrics(Runtime& runtime) {
  const auto& namespaces = runtime.namespaces();
  std::vector<std::uint64_t> requests(metrics::kMethods * (metrics::kMaxStatus - metrics::kMinStatus + 1));
  std::vector<std::int64_t> live(namespaces.size());
  std::vector<std::uint64_t> activations(namespaces.size()), evictions(namespaces.size());
  metrics::HistogramSnapshot httpDuration, commitDuration, batchObjects, syncDuration;
  std::int64_t alarmsPending = 0, websocketsOpen = 0;
  std::uint64_t alarmsSucceeded = 0, alarmsFailed = 0, alarmsAbandoned = 0, messagesIn = 0, messagesOut = 0;

  for (unsigned s = 0; s < runtime.shardCount(); ++s) {
    Shard& shard = runtime.shard(s);
    const metrics::ShardMetrics& m = shard.metrics();
    std::size_t i = 0;
    for (const auto& byMethod : m.httpRequests) {
      for (const auto& c : byMethod) requests[i++] += c.value();
    }
    m.httpDuration.addTo(httpDuration);
    for (std::size_t n = 0; n < namespaces.size(); ++n) {
      live[n] += m.objectsLive[n].value();
      activations[n] += m.activations[n].value();
      evictions[n] += m.evictions[n].value();
    }
    alarmsPending += m.alarmsPending.value();
    alarmsSucceeded += m.alarmsSucceeded.value();
    alarmsFailed += m.alarmsFailed.value();
    alarmsAbandoned += m.alarmsAbandoned.value();
    websocketsOpen += m.websocketsOpen.value();
    messagesIn += m.websocketMessagesIn.value();
    messagesOut += m.websocketMessagesOut.value();
    for (const auto& p : shard.partitions) {
      p->metrics().commitDuration.addTo(commitDuration);
      p->metrics().batchObjects.addTo(batchObjects);
      if (const auto* h = p->engine().syncDurations()) h->addTo(syncDuration);
    }
  }

  std::vector<MetricFamily> out;
  out.reserve(16);  // families are filled through references that must stay valid
  auto& req = out.emplace_back(family("durable_http_requests_total", "HTTP requests answered, by method and status.",
                                      MetricType::Counter));
  constexpr std::size_t kStatuses = metrics::kMaxStatus - metrics::kMinStatus + 1;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (!requests[i]) continue;
    setCounter(req, static_cast<double>(requests[i]),
               {{"method", metrics::kMethodNames[i / kStatuses]},
                {"status", std::to_string(metrics::kMinStatus + static_cast<int>(i % kStatuses))}});
  }
  setHistogram(out.emplace_back(family("durable_http_request_duration_seconds",
                                       "From a request's head read to its response written.", MetricType::Histogram)),
               httpDuration);

  auto& liveF = out.emplace_back(family("durable_objects_live", "Objects in memory.", MetricType::Gauge));
  auto& actF = out.emplace_back(
      family("durable_object_activations_total", "Objects brought into memory.", MetricType::Counter));
  auto& evF = out.emplace_back(
      family("durable_object_evictions_total", "Objects evicted from memory after their idle timeout.", MetricType::Counter));
  for (std::size_t n = 0; n < namespaces.size(); ++n) {
    std::vector<ClientMetric::Label> label{{"namespace", namespaces[n]->binding}};
    setGauge(liveF, static_cast<double>(live[n]), label);
    setCounter(actF, static_cast<double>(activations[n]), label);
    setCounter(evF, static_cast<double>(evictions[n]), label);
  }

  setHistogram(out.emplace_back(family("durable_storage_commit_duration_seconds",
                                       "From a batch of writes handed to storage until it is durable.",
                                       MetricType::Histogram)),
               commitDuration);
  setHistogram(out.emplace_back(family("durable_storage_commit_batch_size", "Objects whose writes one commit carries.",
                                       MetricType::Histogram)),
               batchObjects);
  setHistogram(out.emplace_back(family("durable_storage_sync_duration_seconds",
                                       "One fdatasync of a partition's write-ahead log.", MetricType::Histogram)),
               syncDuration);

  setGauge(out.emplace_back(family("durable_alarms_pending", "Alarms set and not yet run.", MetricType::Gauge)),
           static_cast<double>(alarmsPending));
  auto& fired = out.emplace_back(family("durable_alarms_fired_total",
                                        "Alarm runs by result: ok, error (to be retried) or abandoned (after the last "
                                        "retry failed; also counted as error).",
                                        MetricType::Counter));
  setCounter(fired, static_cast<double>(alarmsSucceeded), {{"result", "ok"}});
  setCounter(fired, static_cast<double>(alarmsFailed), {{"result", "error"}});
  setCounter(fired, static_cast<double>(alarmsAbandoned), {{"result", "abandoned"}});

  setGauge(out.emplace_back(family("durable_websockets_open", "WebSocket connections open.", MetricType::Gauge)),
           static_cast<double>(websocketsOpen));
  auto& msgs = out.emplace_back(family("durable_websocket_messages_total",
                                       "WebSocket messages, received (in) and sent (out).", MetricType::Counter));
  setCounter(msgs, static_cast<double>(messagesIn), {{"direction", "in"}});
  setCounter(msgs, static_cast<double>(messagesOut), {{"direction", "out"}});

  return prometheus::TextSerializer().Serialize(out);
}

}  // namespace durable::detail
