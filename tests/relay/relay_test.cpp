// The relay against a real shop server (real sockets) and a test receiver
// that counts deliveries by key: down, flaky, slow, poisoned, throttled, and
// the relay itself killed with SIGKILL. Each wait is on a delivery, an
// attempt, or a state the relay reports; where time matters (a timeout, a
// retry budget) the margins are wide enough for a loaded machine.
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "bus/client.h"
#include "relay/relay.h"
#include "tests/relay/relay_fixture.h"
#include "tests/relay/test_receiver.h"
#include "tests/testkit/embedded_server.h"
#include "tests/testkit/process.h"
#include "tests/testkit/temp_dir.h"

using namespace shop;
using namespace std::chrono_literals;
using shop::relay::Config;
using shop::relay::Destination;
using shop::relay::Relay;
using shop::testkit::configFor;
using shop::testkit::createCustomers;
using shop::testkit::EmbeddedServer;
using shop::testkit::Process;
using shop::testkit::RelayThread;
using shop::testkit::seqsOf;
using shop::testkit::serverKeyPrefix;
using shop::testkit::TempDir;
using shop::testkit::TestReceiver;

TEST_CASE("relay: each selected event arrives once, keyed, in seq order, and nothing else") {
  EmbeddedServer server;
  TempDir state;
  TestReceiver receiver;
  receiver.up();
  Config config = configFor(server, state, receiver);
  config.destinations[0].customerPrefix = "c-";
  std::vector<Seq> wanted = createCustomers(server, "c-", 20);
  createCustomers(server, "x-", 5);  // another prefix: not selected
  RelayThread relay(config);
  std::vector<Seq> more = createCustomers(server, "c-more-", 10);  // live, after the catch-up
  wanted.insert(wanted.end(), more.begin(), more.end());

  REQUIRE(receiver.waitForKeys(wanted.size()));
  REQUIRE(relay.orders().waitIdle(30s));
  auto deliveries = receiver.deliveries();
  CHECK(seqsOf(deliveries) == wanted);  // each once, in seq order
  std::string prefix = serverKeyPrefix(server);
  for (const auto& d : deliveries) {
    CHECK(d.key == prefix + std::to_string(d.seq));
    CHECK(d.kind == "customerCreated");
    CHECK(d.body.find("\"customerCreated\"") != std::string::npos);
  }
  nlohmann::json status = relay.relay.handle({{"status", nlohmann::json::object()}});
  CHECK(status["destinations"][0]["delivered"] == wanted.size());
  CHECK(status["destinations"][0]["parked"] == 0);
  CHECK(relay.error().empty());
}

TEST_CASE("relay: a receiver down for a while gets everything once it is up") {
  EmbeddedServer server;
  TempDir state;
  TestReceiver receiver;  // not listening yet
  Config config = configFor(server, state, receiver);
  // Retries for as long as it takes: the message must not park meanwhile.
  config.destinations[0].retry.maxAttempts = 1'000'000;
  config.destinations[0].retry.maxMs = 100;
  RelayThread relay(config);
  std::vector<Seq> wanted = createCustomers(server, "c", 5);
  REQUIRE(relay.orders().waitForAttempts(3, 10s));  // refused, and refused again
  CHECK(receiver.distinct() == 0);
  receiver.up();
  REQUIRE(receiver.waitForKeys(wanted.size()));
  CHECK(seqsOf(receiver.deliveries()) == wanted);
  CHECK(relay.orders().status()["parked"] == 0);
}

TEST_CASE("relay: a flaky receiver: retries back off, growing, with jitter") {
  EmbeddedServer server;
  TempDir state;
  TestReceiver receiver;
  receiver.setBehaviour([](const std::string&, int attempt, const std::string&) {
    return TestReceiver::Answer{attempt <= 3 ? 500 : 200};
  });
  receiver.up();
  RelayThread relay(configFor(server, state, receiver));
  std::vector<Seq> wanted = createCustomers(server, "c", 12);
  REQUIRE(receiver.waitForKeys(wanted.size()));
  CHECK(seqsOf(receiver.deliveries()) == wanted);
  for (Seq seq : wanted)
    CHECK(receiver.attemptsOf(serverKeyPrefix(server) + std::to_string(seq)) == 4);

  // Each delay is initialMs * 2^(attempt-1), scaled by [0.5, 1.5].
  std::map<uint32_t, std::vector<double>> byAttempt;
  for (auto [attempt, ms] : relay.orders().retryDelays()) byAttempt[attempt].push_back(ms);
  REQUIRE(byAttempt.size() == 3);
  double previousMean = 0;
  for (auto& [attempt, delays] : byAttempt) {
    CAPTURE(attempt);
    CHECK(delays.size() == wanted.size());
    double base = 20.0 * (1 << (attempt - 1));
    for (double d : delays) {
      CHECK(d >= base * 0.5);
      CHECK(d <= base * 1.5);
    }
    auto [lo, hi] = std::minmax_element(delays.begin(), delays.end());
    CHECK(*hi - *lo > 0.01 * base);  // jitter: not all the same
    double mean = 0;
    for (double d : delays) mean += d / static_cast<double>(delays.size());
    CHECK(mean > previousMean);
    previousMean = mean;
  }
}

TEST_CASE("relay: a slow receiver past the timeout gets the message again, same key") {
  EmbeddedServer server;
  TempDir state;
  TestReceiver receiver;
  // The first try of each key is taken, but answered after the relay gave up.
  receiver.setBehaviour([](const std::string&, int attempt, const std::string&) {
    return TestReceiver::Answer{200, attempt == 1 ? 2000ms : 0ms};
  });
  receiver.up();
  Config config = configFor(server, state, receiver);
  // Far below the first try's answer, far above any other's.
  config.destinations[0].timeoutMs = 500;
  RelayThread relay(config);
  std::vector<Seq> wanted = createCustomers(server, "c", 4);
  // Each key twice: the retry, and the first try's late success.
  REQUIRE(receiver.waitForDeliveries(2 * wanted.size()));
  REQUIRE(relay.orders().waitIdle(30s));
  auto deliveries = receiver.deliveries();
  std::map<std::string, int> byKey;
  for (const auto& d : deliveries) ++byKey[d.key];
  CHECK(byKey.size() == wanted.size());              // unique by key: each event once, in effect
  for (const auto& [key, n] : byKey) CHECK(n == 2);  // taken twice: the receiver dedupes
  CHECK(relay.orders().status()["retries"] == wanted.size());
}

TEST_CASE("relay: a poison message parks after maxAttempts, the rest goes on, replay re-drives") {
  EmbeddedServer server;
  TempDir state;
  TestReceiver receiver;
  std::atomic<bool> cured{false};
  receiver.setBehaviour([&cured](const std::string&, int, const std::string& body) {
    bool poison = body.find("poison") != std::string::npos && !cured.load();
    return TestReceiver::Answer{poison ? 500 : 200};
  });
  receiver.up();
  Config config = configFor(server, state, receiver);
  config.destinations[0].retry.maxAttempts = 3;
  RelayThread relay(config);
  std::vector<Seq> before = createCustomers(server, "a", 2);
  std::vector<Seq> poison = createCustomers(server, "poison", 1);
  std::vector<Seq> after = createCustomers(server, "b", 2);
  REQUIRE(receiver.waitForKeys(4));
  std::vector<Seq> fine = before;
  fine.insert(fine.end(), after.begin(), after.end());
  CHECK(seqsOf(receiver.deliveries()) == fine);
  REQUIRE(relay.orders().waitIdle(30s));
  nlohmann::json parked = relay.relay.handle({{"parked", {{"destination", "orders"}}}});
  REQUIRE(parked["parked"].size() == 1);
  CHECK(parked["parked"][0]["seq"] == poison[0]);
  CHECK(parked["parked"][0]["attempts"] == 3);
  CHECK(parked["parked"][0]["lastError"] == "http status 500");
  CHECK(relay.orders().status()["checkpoint"] == after.back());  // the destination went on

  // What an operator sees and does: shopctl relay.
  std::string out, err;
  auto shopctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {SHOPCTL_PATH, "--relay", relay.relay.controlEndpoint()});
    return Process::run(args, &out, &err);
  };
  CHECK(shopctl({"relay", "status"}) == 0);
  CHECK(out.find("orders ") != std::string::npos);
  CHECK(shopctl({"relay", "parked", "orders"}) == 0);
  CHECK(out.find("seq " + std::to_string(poison[0]) + " ") != std::string::npos);
  CHECK(out.find("3 attempts, last: http status 500") != std::string::npos);
  CHECK(shopctl({"relay", "parked", "nobody"}) == 1);
  CHECK(err.find("no destination") != std::string::npos);
  CHECK(shopctl({"relay", "replay", "orders", "1"}) == 1);
  CHECK(err.find("no parked message with seq 1") != std::string::npos);
  cured = true;
  CHECK(shopctl({"relay", "replay", "orders", std::to_string(poison[0])}) == 0);
  REQUIRE(receiver.waitForKeys(5));
  CHECK(receiver.deliveries().back().seq == poison[0]);
  REQUIRE(relay.orders().waitIdle(30s));
  CHECK(relay.relay.handle({{"parked", {{"destination", "orders"}}}})["parked"].empty());
}

TEST_CASE("relay: a destination limited to R per second never sees more") {
  EmbeddedServer server;
  TempDir state;
  TestReceiver receiver;
  receiver.up();
  Config config = configFor(server, state, receiver);
  constexpr int kRate = 50;
  config.destinations[0].ratePerSecond = kRate;
  // Three seconds' worth: with no limit they would all come within one.
  std::vector<Seq> wanted = createCustomers(server, "c", 3 * kRate);
  RelayThread relay(config);
  REQUIRE(receiver.waitForKeys(wanted.size()));
  auto deliveries = receiver.deliveries();
  // The relay starts attempts at least 1/R apart; the receiver sees them
  // after a network delay that varies by up to a few ms (up to 50 ms allowed
  // here). So any window of 1 s minus that allowance holds at most R.
  constexpr auto kAllowance = 50ms;
  for (size_t i = 0; i < deliveries.size(); ++i) {
    size_t j = i;
    while (j + 1 < deliveries.size() && deliveries[j + 1].at - deliveries[i].at < 1s - kAllowance) {
      ++j;
    }
    CHECK(j - i + 1 <= kRate);
  }
  auto span = deliveries.back().at - deliveries.front().at;
  CHECK(span >= std::chrono::milliseconds(1000 * (wanted.size() - 1) / kRate) - kAllowance);
}

TEST_CASE(
    "relay: killed with SIGKILL mid-stream and restarted, it sends again at most the window") {
  EmbeddedServer server;
  TempDir state;
  TestReceiver receiver;
  receiver.up();
  Config config = configFor(server, state, receiver);
  std::vector<Seq> wanted = createCustomers(server, "c", 300);
  std::string path = state.str() + "/relay.json";
  {
    nlohmann::json destination = {{"name", "orders"},
                                  {"url", receiver.url()},
                                  {"events", {"customerCreated"}},
                                  {"retry", {{"initialMs", 20}}}};
    nlohmann::json j = {{"commands", server.commands()},
                        {"events", server.events()},
                        {"control", "tcp://127.0.0.1:*"},
                        {"stateDir", state.str() + "/state"},
                        {"destinations", {destination}}};
    std::ofstream(path) << j.dump();
  }
  {
    Process first({SHOP_RELAY_PATH, "--config", path});
    REQUIRE(receiver.waitForKeys(60));
    first.signal(SIGKILL);
    first.wait();
  }
  size_t before = receiver.deliveries().size();
  CHECK(before < wanted.size());  // killed mid-stream
  Process second({SHOP_RELAY_PATH, "--config", path});
  REQUIRE(receiver.waitForKeys(wanted.size()));
  second.signal(SIGTERM);
  int code = second.wait();
  INFO(second.err());
  CHECK(code == 0);
  auto deliveries = receiver.deliveries();
  std::set<Seq> distinct;
  for (const auto& d : deliveries) distinct.insert(d.seq);
  CHECK(std::vector<Seq>(distinct.begin(), distinct.end()) == wanted);
  // At most the one message in flight at the kill was sent twice.
  CHECK(deliveries.size() - distinct.size() <= 1);
  // Per destination, first arrivals are in seq order.
  std::vector<Seq> firsts;
  std::set<Seq> seen;
  for (const auto& d : deliveries) {
    if (seen.insert(d.seq).second) firsts.push_back(d.seq);
  }
  CHECK(std::is_sorted(firsts.begin(), firsts.end()));
}

TEST_CASE("shop-relay: a bad config stops the start, naming the field") {
  TempDir dir;
  std::string path = dir.str() + "/bad.json";
  std::ofstream(path) << R"({"destinations": [{"name": "pos", "url": "http://h/x",
                             "events": ["productBougth"]}]})";
  std::string out, err;
  CHECK(Process::run({SHOP_RELAY_PATH, "--config", path}, &out, &err) == 2);
  CHECK(err.find("destinations[0].events[0]: 'productBougth' is not an event kind") !=
        std::string::npos);
  CHECK(Process::run({SHOP_RELAY_PATH, "--config", dir.str() + "/none.json"}, &out, &err) == 2);
  CHECK(err.find("none.json: cannot be read") != std::string::npos);
  CHECK(Process::run({SHOP_RELAY_PATH, "--help"}, &out, &err) == 0);
  CHECK(out.find("--config") != std::string::npos);
  CHECK(Process::run({SHOP_RELAY_PATH, "--version"}, &out, &err) == 0);
  CHECK(out.find("shop-relay") != std::string::npos);
}
