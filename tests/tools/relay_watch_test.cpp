// The dashboard's view of shop-relay: a real relay delivering to a real
// receiver, watched through its control socket and served on /api/relay
// and /metrics; a relay that stops answering, or answers nonsense, is shown
// down with the reason.
#include <doctest/doctest.h>

#include <zmq.hpp>

#include <atomic>
#include <memory>
#include <thread>

#include "tests/relay/relay_fixture.h"
#include "tests/testkit/temp_dir.h"
#include "tests/tools/dashboard_fixture.h"
#include "tools/dashboard/relay_watch.h"

using namespace shop;
using namespace std::chrono_literals;
using nlohmann::json;
using shop::testkit::Dashboard;
using shop::testkit::RelayThread;
using shop::testkit::TempDir;
using shop::testkit::TestReceiver;

namespace {

// An endpoint nothing listens on: a port bound, then let go.
std::string deadEndpoint(zmq::context_t& context) {
  zmq::socket_t probe(context, zmq::socket_type::rep);
  probe.bind("tcp://127.0.0.1:*");
  std::string endpoint = probe.get(zmq::sockopt::last_endpoint);
  probe.unbind(endpoint);
  return endpoint;
}

// A REP socket on its own thread that answers every request with `answer`.
class FakeControl {
 public:
  explicit FakeControl(std::string answer) : answer_(std::move(answer)) {
    socket_.set(zmq::sockopt::rcvtimeo, 50);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] {
      while (!stop_) {
        zmq::message_t request;
        if (!socket_.recv(request, zmq::recv_flags::none)) continue;
        std::string text;
        {
          std::lock_guard lock(mutex_);
          text = answer_;
        }
        socket_.send(zmq::buffer(text), zmq::send_flags::none);
      }
    });
  }
  ~FakeControl() {
    stop_ = true;
    thread_.join();
  }
  void answer(std::string text) {
    std::lock_guard lock(mutex_);
    answer_ = std::move(text);
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  std::mutex mutex_;
  std::string answer_;
  zmq::context_t context_{1};
  zmq::socket_t socket_{context_, zmq::socket_type::rep};
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

json destination(const std::string& name) {
  json d = {{"name", name}, {"kind", "http"}, {"url", "http://127.0.0.1:1/x"}, {"lastError", ""}};
  for (const char* f : {"checkpoint", "lag", "queued", "inFlight", "delivered", "attempts",
                        "retries", "parked", "parkedTotal", "parkFailures", "redriven"}) {
    d[f] = 0;
  }
  d["deliveredPerSecond"] = 0.0;
  return d;
}

std::string errorOf(const std::string& text) {
  try {
    dashboard::readRelayStatus(text);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE(
    "relay watch: the dashboard shows a relay's destinations, and the relay down when it "
    "stops") {
  TestReceiver receiver;
  receiver.up();
  TempDir state;
  Dashboard d;  // its server is the one the relay follows
  auto relay = std::make_unique<RelayThread>(testkit::configFor(d.server, state, receiver));
  auto seqs = testkit::createCustomers(d.server, "c", 5);
  REQUIRE(receiver.waitForKeys(5));
  REQUIRE(relay->orders().waitForStatus(
      [&](const json& s) { return s["delivered"] == 5 && s["checkpoint"] == seqs.back(); }, 20s));

  zmq::context_t context(1);
  std::string relayEndpoint = relay->relay.controlEndpoint();
  std::string dead = deadEndpoint(context);
  // The live relay gets a wide margin (its status waits while a destination
  // syncs a file); only the dead endpoint is meant to miss it.
  dashboard::RelayWatch watch({.endpoints = {relayEndpoint}, .interval = 50ms, .timeout = 5s});
  dashboard::RelayWatch deadWatch({.endpoints = {dead}, .interval = 50ms, .timeout = 300ms});
  dashboard::HttpFront front(d.runner, {.port = 0}, &watch);
  int port = front.bind();
  // Stopped and joined however the test ends.
  struct Serving {
    dashboard::HttpFront& front;
    std::thread thread;
    explicit Serving(dashboard::HttpFront& f) : front(f), thread([this] { front.serve(); }) {}
    ~Serving() {
      front.stop();
      thread.join();
    }
  } serving(front);
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(10, 0);
  auto get = [&](const std::string& path) {
    auto res = http.Get(path);
    REQUIRE(res);
    return std::pair{res->status, res->body};
  };

  watch.start();
  deadWatch.start();
  REQUIRE(watch.waitForRounds(1, 20s));
  REQUIRE(deadWatch.waitForRounds(1, 20s));
  auto [status, body] = get("/api/relay");
  CHECK(status == 200);
  json relays = json::parse(body)["relays"];
  REQUIRE(relays.size() == 1);
  CHECK(relays[0]["endpoint"] == relayEndpoint);
  CHECK(relays[0]["up"] == true);
  CHECK(relays[0]["error"] == "");
  CHECK(relays[0]["serverId"] == testkit::serverKeyPrefix(d.server).substr(0, 16));
  CHECK(relays[0]["head"] == seqs.back());
  REQUIRE(relays[0]["destinations"].size() == 1);
  json orders = relays[0]["destinations"][0];
  CHECK(orders["name"] == "orders");
  CHECK(orders["url"] == receiver.url());
  CHECK(orders["delivered"] == 5);
  CHECK(orders["lag"] == 0);
  CHECK(orders["inFlight"] == 0);
  CHECK(orders["parked"] == 0);
  json deadOne = deadWatch.snapshot()["relays"][0];
  CHECK(deadOne["endpoint"] == dead);
  CHECK(deadOne["up"] == false);
  CHECK(deadOne["error"] == "no answer within 300 ms");
  CHECK(deadOne["destinations"].empty());
  CHECK(deadWatch.metricsText().find("shop_relay_up{relay=\"" + dead + "\"} 0\n") !=
        std::string::npos);

  auto [metricsStatus, metrics] = get("/metrics");
  CHECK(metricsStatus == 200);
  CHECK(metrics.find("shop_customers 5\n") != std::string::npos);  // the models' own still there
  CHECK(metrics.find("shop_relay_up{relay=\"" + relayEndpoint + "\"} 1\n") != std::string::npos);
  CHECK(metrics.find("shop_relay_delivered_total{relay=\"" + relayEndpoint +
                     "\",destination=\"orders\"} 5\n") != std::string::npos);
  CHECK(metrics.find("# TYPE shop_relay_lag_events gauge\n") != std::string::npos);

  // A message the receiver refuses is parked, and shows.
  receiver.setBehaviour([](const std::string&, int, const std::string&) {
    return TestReceiver::Answer{.status = 400};  // never taken: parked at once
  });
  testkit::createCustomers(d.server, "p", 1);
  REQUIRE(relay->orders().waitForStatus([](const json& s) { return s["parked"] == 1; }, 20s));
  REQUIRE(watch.waitForRounds(2, 20s));
  json shown = json::parse(get("/api/relay").second)["relays"][0]["destinations"][0];
  CHECK(shown["parked"] == 1);
  CHECK(shown["delivered"] == 5);
  CHECK(shown["lastError"] == "http status 400");
  CHECK(get("/metrics")
            .second.find("shop_relay_parked{relay=\"" + relayEndpoint +
                         "\",destination=\"orders\"} 1\n") != std::string::npos);

  // The relay stops, as by SIGTERM: it shows down.
  relay.reset();
  REQUIRE(watch.waitForRounds(2, 30s));
  json down = json::parse(get("/api/relay").second)["relays"][0];
  CHECK(down["up"] == false);
  CHECK(down["error"] == "no answer within 5000 ms");
  CHECK(down["destinations"].empty());
  CHECK(get("/metrics").second.find("shop_relay_up{relay=\"" + relayEndpoint + "\"} 0\n") !=
        std::string::npos);
}

TEST_CASE(
    "relay watch: a control socket that answers nonsense is shown down, with why, and "
    "comes back") {
  FakeControl control("not json");
  dashboard::RelayWatch watch(
      {.endpoints = {control.endpoint()}, .interval = 20ms, .timeout = 2'000ms});
  watch.start();
  REQUIRE(watch.waitForRounds(2, 20s));
  json r = watch.snapshot()["relays"][0];
  CHECK(r["up"] == false);
  CHECK(r["error"] == "not a relay's status: its answer is not JSON");

  // The socket that got nonsense is replaced, and the next good answer counts.
  json good = {{"serverId", "00000000000000ab"},
               {"head", 9},
               {"destinations", json::array({destination("a\"b\\c\nd")})}};
  good["destinations"][0]["deliveredPerSecond"] = 12.5;
  good["destinations"][0]["delivered"] = 7;
  control.answer(good.dump());
  REQUIRE(watch.waitForRounds(2, 20s));
  r = watch.snapshot()["relays"][0];
  CHECK(r["up"] == true);
  CHECK(r["head"] == 9);
  CHECK(r["destinations"][0]["delivered"] == 7);
  std::string metrics = watch.metricsText();
  std::string labels = "{relay=\"" + control.endpoint() + "\",destination=\"a\\\"b\\\\c\\nd\"}";
  CHECK(metrics.find("shop_relay_delivered_per_second" + labels + " 12.5\n") != std::string::npos);
  CHECK(metrics.find("shop_relay_delivered_total" + labels + " 7\n") != std::string::npos);

  control.answer(R"({"error":"bad request: busy"})");
  REQUIRE(watch.waitForRounds(2, 20s));
  r = watch.snapshot()["relays"][0];
  CHECK(r["up"] == false);
  CHECK(r["error"] == "not a relay's status: it answered: bad request: busy");
  CHECK(watch.metricsText().find("shop_relay_delivered_total{") == std::string::npos);
  watch.stop();
}

TEST_CASE("relay watch: every field of a status answer is checked") {
  json good = {{"serverId", "00000000000000ab"},
               {"head", 9},
               {"destinations", json::array({destination("pos")})}};
  CHECK(errorOf(good.dump()) == "");
  json kept = dashboard::readRelayStatus(good.dump());
  CHECK(kept["destinations"][0]["name"] == "pos");

  CHECK(errorOf("") == "its answer is not JSON");
  CHECK(errorOf("[1]") == "its answer is not a JSON object");
  CHECK(errorOf("{}") == "its answer has no destinations list");
  CHECK(errorOf(R"({"destinations":{}})") == "its answer has no destinations list");
  CHECK(errorOf(R"({"destinations":[1]})") == "destinations[0] is not an object");

  json missing = good;
  missing["destinations"][0].erase("lag");
  CHECK(errorOf(missing.dump()) == "destinations[0].lag is missing or not a whole number");
  json negative = good;
  negative["destinations"][0]["queued"] = -1;
  CHECK(errorOf(negative.dump()) == "destinations[0].queued is missing or not a whole number");
  json notText = good;
  notText["destinations"][0]["name"] = 5;
  CHECK(errorOf(notText.dump()) == "destinations[0].name is missing or not text");
  json rate = good;
  rate["destinations"][0]["deliveredPerSecond"] = "fast";
  CHECK(errorOf(rate.dump()) == "destinations[0].deliveredPerSecond is missing or not a number");

  // What the page does not show is not kept; a missing head or server id is
  // shown as unknown, not refused.
  json extra = good;
  extra["destinations"][0]["secret"] = "x";
  extra.erase("head");
  kept = dashboard::readRelayStatus(extra.dump());
  CHECK_FALSE(kept["destinations"][0].contains("secret"));
  CHECK(kept["head"] == 0);

  json token = good;
  token["destinations"][0]["url"] = "http://hooks.example:8080/in?token=s3cret&x=1";
  CHECK(dashboard::readRelayStatus(token.dump())["destinations"][0]["url"] ==
        "http://hooks.example:8080/in?…");
}

TEST_CASE("relay watch: without relays, /api/relay is an empty list") {
  Dashboard d;
  auto [status, body] = d.get("/api/relay");
  CHECK(status == 200);
  CHECK(body == json{{"relays", json::array()}});
  auto [badStatus, bad] = d.get("/api/relay?limit=3");
  CHECK(badStatus == 400);
  CHECK(bad["error"] == "unknown parameter 'limit'");
  auto metrics = d.http.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("shop_relay_") == std::string::npos);
}
