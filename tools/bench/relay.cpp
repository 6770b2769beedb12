#include "tools/bench/relay.h"

#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "tools/bench/child.h"
#include "tools/bench/load.h"
#include "tools/bench/server_process.h"
#include "tools/bench/workload.h"

namespace shop::bench {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

// A receiver that takes every POST at once and counts them.
class Receiver {
 public:
  Receiver() {
    server_.set_keep_alive_max_count(1 << 30);
    server_.set_tcp_nodelay(true);
    server_.Post("/orders", [this](const httplib::Request&, httplib::Response& res) {
      res.status = 200;
      received_.fetch_add(1, std::memory_order_relaxed);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("relay bench: the receiver cannot bind");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~Receiver() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/orders"; }
  uint64_t received() const { return received_.load(std::memory_order_relaxed); }
  // Waits (polling each millisecond) until `n` arrived; false after `timeout`.
  bool waitFor(uint64_t n, std::chrono::seconds timeout) const {
    auto end = Clock::now() + timeout;
    while (received() < n) {
      if (Clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

 private:
  httplib::Server server_;
  std::atomic<uint64_t> received_{0};
  int port_ = 0;
  std::thread thread_;
};

struct RelayProcess {
  std::string dir;
  std::string control;
  std::unique_ptr<ChildProcess> child;
  RelayProcess(const ServerProcess& shopd, const std::string& url, const std::string& kind,
               int maxInFlight, int round) {
    dir = (std::filesystem::temp_directory_path() /
           ("shop-bench-relay-" + std::to_string(::getpid()) + "-" + std::to_string(round)))
              .string();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    json config = {
        {"commands", shopd.commands},
        {"events", shopd.events},
        {"control", "ipc://" + dir + "/control"},
        {"stateDir", dir + "/state"},
        {"destinations",
         {{{"name", "bench"}, {"url", url}, {"events", {kind}}, {"maxInFlight", maxInFlight}}}}};
    control = config["control"];
    std::ofstream(dir + "/relay.json") << config.dump();
    child = std::make_unique<ChildProcess>(
        std::vector<std::string>{executableDir() + "/shop-relay", "--config", dir + "/relay.json"});
    child->waitForStderrLine("following");
  }
  ~RelayProcess() {
    if (child) child->stop();
    std::filesystem::remove_all(dir);
  }
  // head - checkpoint of the one destination, from the control socket.
  int64_t lag(zmq::context_t& context) const {
    zmq::socket_t socket(context, zmq::socket_type::req);
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::rcvtimeo, 2000);
    socket.connect(control);
    socket.send(zmq::str_buffer(R"({"status":{}})"), zmq::send_flags::none);
    zmq::message_t reply;
    if (!socket.recv(reply, zmq::recv_flags::none)) return -1;
    json status = json::parse(reply.to_string());
    return static_cast<int64_t>(status["head"].get<uint64_t>()) -
           static_cast<int64_t>(status["destinations"][0]["checkpoint"].get<uint64_t>());
  }
};

// The baseline: one keep-alive HTTP client posting `n` bodies of the
// relay's size one at a time, with the relay's headers.
double directPostsPerSecond(const std::string& url, uint64_t n) {
  size_t slash = url.find('/', 7);
  httplib::Client client(url.substr(0, slash));
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);  // as shop-relay does
  std::string path = url.substr(slash);
  std::string body =
      R"({"seq":"123456","timestampNs":"1800000000000000000","commandId":"000000000000000e0000000000012345","fundsDeposited":{"customer":"c0-00042","amount":"1","balance":"1000000000001"}})";
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    httplib::Headers headers = {{"Idempotency-Key", "0123456789abcdef-" + std::to_string(i)},
                                {"X-Shop-Event", "fundsDeposited"},
                                {"X-Shop-Seq", std::to_string(i)},
                                {"X-Shop-Server", "0123456789abcdef"}};
    auto res = client.Post(path, headers, body, "application/json");
    if (!res || res->status != 200) throw std::runtime_error("relay bench: a direct post failed");
  }
  return static_cast<double>(n) / std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

void runRelay(const RelayBenchOptions& o, Report& report) {
  Receiver receiver;
  auto shopd = startShopd();
  zmq::context_t context(1);
  const int customers = o.quick ? 500 : 2000;
  seedShop(context, shopd->commands, 1, customers);
  const uint64_t events = o.quick ? 5'000 : 20'000;
  progress("relay: %llu deposits into shopd", static_cast<unsigned long long>(events));
  LoadSpec fill{1, 32, 0, 0, ReplyFormat::shopReply};
  fill.requestsPerConnection = events;
  FrameSet deposits = framesOf(depositsFor(0, customers));
  runLoad(shopd->commands, fill, [&](int) { return deposits; });

  // 1. Catch-up delivery rate, interleaved with the baseline.
  const int rounds = o.quick ? 1 : 3;
  std::vector<double> direct, relayed1, relayed8;
  int round = 0;
  for (int r = 0; r < rounds; ++r) {
    progress("relay: a plain HTTP client posts %llu bodies",
             static_cast<unsigned long long>(events));
    direct.push_back(directPostsPerSecond(receiver.url(), events));
    for (int inFlight : {1, 8}) {
      progress("relay: shop-relay delivers %llu deposits, %d in flight",
               static_cast<unsigned long long>(events), inFlight);
      uint64_t before = receiver.received();
      auto t0 = Clock::now();
      RelayProcess relay(*shopd, receiver.url(), "fundsDeposited", inFlight, round++);
      if (!receiver.waitFor(before + events, std::chrono::seconds(300))) {
        throw std::runtime_error("relay bench: not every deposit was delivered within 300 s");
      }
      double rate =
          static_cast<double>(events) / std::chrono::duration<double>(Clock::now() - t0).count();
      (inFlight == 1 ? relayed1 : relayed8).push_back(rate);
    }
  }
  double base = median(direct), one = median(relayed1), eight = median(relayed8);
  report.set("relay", "direct_http_posts_per_s", base);
  report.set("relay", "deliveries_per_s_1_in_flight", one);
  report.set("relay", "deliveries_per_s_8_in_flight", eight);
  report.ratios["relay_vs_direct_http_1_in_flight"] = one / base;
  report.ratios["relay_vs_direct_http_8_in_flight"] = eight / base;

  // 2. Lag behind shopd at full load: every buy goes to the receiver.
  progress("relay: lag behind shopd under the e2e mix at %dx%d, %.0f s", o.connections, o.window,
           o.seconds);
  std::vector<int64_t> lags;
  double loadRate = 0, drainSeconds = 0;
  {
    RelayProcess relay(*shopd, receiver.url(), "productBought", 1, round++);
    std::vector<FrameSet> mix;
    for (int c = 0; c < o.connections; ++c) mix.push_back(framesOf(mixFor(c, customers)));
    std::atomic<bool> done{false};
    LoadSpec spec{o.connections, o.window, 0, o.seconds, ReplyFormat::shopReply};
    std::thread sampler([&] {
      while (!done.load()) {
        int64_t lag = relay.lag(context);
        if (lag >= 0) lags.push_back(lag);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
    LoadResult load = runLoad(shopd->commands, spec, [&](int c) { return mix[c]; });
    loadRate = load.throughput();
    auto t0 = Clock::now();
    while (relay.lag(context) > 0 && Clock::now() - t0 < std::chrono::seconds(60)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    drainSeconds = std::chrono::duration<double>(Clock::now() - t0).count();
    done = true;
    sampler.join();
  }
  std::sort(lags.begin(), lags.end());
  auto pct = [&](double p) {
    return lags.empty()
               ? 0.0
               : static_cast<double>(
                     lags[std::min(lags.size() - 1, static_cast<size_t>(p * lags.size()))]);
  };
  report.set("relay", "load_commands_per_s", loadRate);
  report.set("relay", "lag_events_p50", pct(0.5));
  report.set("relay", "lag_events_p99", pct(0.99));
  report.set("relay", "drain_seconds_after_load", drainSeconds);
  shopd->stop(report);

  std::printf("\nrelay (shop-relay to a local HTTP receiver that answers at once)\n");
  std::printf("  %-34s %12.0f posts/s\n", "plain HTTP client, 1 at a time", base);
  std::printf("  %-34s %12.0f deliveries/s  ratio %.2f\n", "shop-relay, 1 in flight", one,
              one / base);
  std::printf("  %-34s %12.0f deliveries/s  ratio %.2f\n", "shop-relay, 8 in flight", eight,
              eight / base);
  std::printf(
      "  lag behind shopd at %dx%d (%.0f commands/s): p50 %.0f, p99 %.0f events; "
      "caught up %.2f s after the load\n",
      o.connections, o.window, loadRate, pct(0.5), pct(0.99), drainSeconds);
}

}  // namespace shop::bench
