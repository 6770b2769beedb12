#include "tools/bench/projections.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <span>
#include <thread>

#include "bus/client.h"
#include "projections/read_models.h"
#include "tools/bench/child.h"
#include "tools/bench/load.h"
#include "tools/bench/server_process.h"
#include "tools/bench/workload.h"

namespace shop::bench {
namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  return v[k];
}

// Short ids, as most real ones are: they fit std::string's inline buffer.
std::string customerId(uint64_t n) {
  return "c" + std::to_string(n);
}

// The events a busy shop publishes, cycled: deposits, buys and returns
// across every customer and 100 products, and the rejections that come
// with them (a tenth), tooManyPending included.
std::vector<Event> mixedEvents(uint64_t customers, size_t count) {
  std::vector<Event> out;
  out.reserve(count);
  uint64_t x = 88172645463325252ull;  // xorshift: the same events every run
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (size_t k = 0; k < count; ++k) {
    std::string customer = customerId(next() % customers);
    std::string product = "p" + std::to_string(next() % 100);
    EventBody body;
    switch (k % 10) {
      case 0:
      case 1:
      case 2:
        body = FundsDeposited{customer, 500, 10'000};
        break;
      case 3:
      case 4:
      case 5:
        body = ProductBought{customer, product, 1, 150, 9'850};
        break;
      case 6:
      case 7:
        body = ProductReturned{customer, product, 1, 150, 10'000};
        break;
      case 8:
        body = ProductRestocked{product, 5, 1'000};
        break;
      default:
        body = OperationRejected{RejectReason::tooManyPending,
                                 CommandKind::deposit,
                                 customer,
                                 {},
                                 "customer already has 5 operations pending"};
        break;
    }
    out.push_back(Event{0, 1'800'000'000'000'000'000 + static_cast<int64_t>(k) * 1000, CommandId{},
                        std::move(body)});
  }
  return out;
}

long ownRssBytes() {
  return rssBytesOf(::getpid());
}

void inProcess(const ProjectionsOptions& o, Report& report) {
  const uint64_t customers = o.quick ? 100'000 : 1'000'000;
  const size_t mixed = o.quick ? 500'000 : 2'000'000;
  const int rounds = o.quick ? 1 : 3;
  progress("projections: %llu customers, then %zu mixed events x %d, in-process",
           static_cast<unsigned long long>(customers), mixed, rounds);
  std::vector<Event> pool = mixedEvents(customers, mixed);
  int64_t now = 1'800'000'000'000'000'000;
  projections::ReadModels models(projections::ReadModelsConfig{.clock = [&now] { return now; }});
  for (int p = 0; p < 100; ++p) {
    models.apply(Event{static_cast<Seq>(p + 1), now, CommandId{},
                       ProductAdded{"p" + std::to_string(p), 150, 1'000'000}});
  }
  Seq seq = 100;

  long rssBefore = ownRssBytes();
  auto start = Clock::now();
  for (uint64_t c = 0; c < customers; ++c) {
    models.apply(Event{++seq, now, CommandId{}, CustomerCreated{customerId(c), 10'000}});
  }
  double createSeconds = secondsSince(start);
  long rssAfter = ownRssBytes();

  std::vector<double> rates;
  for (int r = 0; r < rounds; ++r) {
    for (auto& e : pool) e.seq = ++seq;
    // In batches as the runner gets them: the subscriber's live batch.
    constexpr size_t kBatch = 256;
    std::span<const Event> events(pool);
    start = Clock::now();
    for (size_t at = 0; at < events.size(); at += kBatch) {
      models.apply(events.subspan(at, std::min(kBatch, events.size() - at)));
    }
    rates.push_back(static_cast<double>(pool.size()) / secondsSince(start));
  }
  std::sort(rates.begin(), rates.end());
  double rate = rates[rates.size() / 2];
  double modelBytes =
      static_cast<double>(models.customers.memoryBytes()) / static_cast<double>(customers);
  double rssPerCustomer =
      static_cast<double>(rssAfter - rssBefore) / static_cast<double>(customers);

  const std::string s = "projections";
  report.set(s, "customers", static_cast<double>(customers));
  report.set(s, "create_events_per_s", static_cast<double>(customers) / createSeconds);
  report.set(s, "apply_events_per_s", rate);
  report.set(s, "customers_model_bytes_per_customer", modelBytes);
  report.set(s, "rss_bytes_per_customer_all_models", rssPerCustomer);
  report.ratios["projections_apply_events_per_s"] = rate;
  report.ratios["projections_bytes_per_customer"] = modelBytes;
  std::printf(
      "\nprojections, in-process (all six read models; %llu customers)\n"
      "  apply, mixed events (median of %d)  %12.0f events/s   (target >= 2,000,000)\n"
      "  apply, CustomerCreated              %12.0f events/s\n"
      "  customers model                     %12.0f bytes per customer (target <= 256)\n"
      "  process RSS, all models             %12.0f bytes per customer\n",
      static_cast<unsigned long long>(customers), rounds, rate,
      static_cast<double>(customers) / createSeconds, modelBytes, rssPerCustomer);
}

// shop-dashboard following `shopd`, on a free HTTP port.
struct DashboardProcess {
  ChildProcess child;
  int port = 0;
  DashboardProcess(const std::string& commands, const std::string& events)
      : child({executableDir() + "/shop-dashboard", "--commands", commands, "--events", events,
               "--http", "127.0.0.1:0"}) {
    std::string line = child.waitForStderrLine("serving http://");
    size_t colon = line.find(':', line.find("serving http://") + 15);
    port = std::stoi(line.substr(colon + 1));
  }
};

void dashboardLag(const ProjectionsOptions& o, Report& report) {
  zmq::context_t context(1);
  auto shopd = startShopd();
  int customers = 1000;
  seedShop(context, shopd->commands, o.connections, customers);
  DashboardProcess dashboard(shopd->commands, shopd->events);
  httplib::Client http("127.0.0.1", dashboard.port);
  bus::Client client(context, shopd->commands, {.timeoutMs = 5000, .retries = 0});

  // Applied first, then the head: a sample can only overstate the lag.
  auto sample = [&]() -> std::optional<std::pair<double, double>> {
    auto res = http.Get("/api/health");
    if (!res || res->status != 200) return std::nullopt;
    auto health = nlohmann::json::parse(res->body);
    double applied = health["appliedSeq"].get<double>();
    auto head = client.call(Command{CommandId::random(), ReadEvents{UINT64_MAX, 1}});
    if (!head.ok()) return std::nullopt;
    return std::pair{static_cast<double>(head.reply->reply.page.headSeq), applied};
  };

  std::vector<FrameSet> frames;
  for (int c = 0; c < o.connections; ++c) frames.push_back(framesOf(mixFor(c, customers)));
  LoadSpec spec{o.connections, o.window, 0, o.seconds, ReplyFormat::shopReply};
  std::atomic<bool> done{false};
  std::vector<double> lagEvents;
  std::thread sampler([&] {
    while (!done.load()) {
      if (auto s = sample()) lagEvents.push_back(std::max(0.0, s->first - s->second));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the sampling period
    }
  });
  progress("projections: shop-dashboard following shopd at its full e2e rate, %dx%d, %.0f s",
           o.connections, o.window, o.seconds);
  LoadResult load =
      runLoad(shopd->commands, spec, [&frames](int c) { return frames[static_cast<size_t>(c)]; });
  done = true;
  sampler.join();
  // Then it catches up: the last event is applied.
  auto settleStart = Clock::now();
  double settleSeconds = -1;
  while (secondsSince(settleStart) < 10) {
    auto s = sample();
    if (s && s->second >= s->first) {
      settleSeconds = secondsSince(settleStart);
      break;
    }
  }
  dashboard.child.stop();
  shopd->stop(report);

  double rate = load.throughput();
  auto ms = [rate](double events) { return rate > 0 ? events / rate * 1000 : 0; };
  double p50 = percentile(lagEvents, 0.5), p99 = percentile(lagEvents, 0.99);
  double max = lagEvents.empty() ? 0 : *std::max_element(lagEvents.begin(), lagEvents.end());
  const std::string s = "projections";
  report.set(s, "lag_e2e_commands_per_s", rate);
  report.set(s, "lag_samples", static_cast<double>(lagEvents.size()));
  report.set(s, "lag_p50_events", p50);
  report.set(s, "lag_p99_events", p99);
  report.set(s, "lag_max_events", max);
  report.set(s, "lag_p99_ms", ms(p99));
  report.set(s, "caught_up_after_s", settleSeconds);
  report.ratios["projections_lag_p99_ms"] = ms(p99);
  std::printf(
      "\nprojections: shop-dashboard behind shopd at full load (%dx%d, %.0f commands/s)\n"
      "  lag, events: p50 %.0f, p99 %.0f, max %.0f over %zu samples\n"
      "  lag p99 in time at that rate: %.1f ms (target <= 100); caught up %.2f s after the "
      "load\n",
      o.connections, o.window, rate, p50, p99, max, lagEvents.size(), ms(p99), settleSeconds);
}

}  // namespace

void runProjections(const ProjectionsOptions& o, Report& report) {
  inProcess(o, report);
  dashboardLag(o, report);
}

}  // namespace shop::bench
