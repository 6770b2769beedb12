// The runner against a real server over TCP: after a randomized workload,
// every read model equals what the full event log (and the server's own
// GetCustomer) says; also with forced PUB drops, and across a restart.
#include <doctest/doctest.h>

#include <cstdio>
#include <map>
#include <random>
#include <set>

#include "bus/client.h"
#include "projections/runner.h"
#include "tests/testkit/embedded_server.h"
#include "tests/testkit/fake_server.h"
#include "tests/testkit/wire_patch.h"

using namespace shop;
using namespace shop::projections;
using shop::testkit::EmbeddedServer;

namespace {

Command cmd(CommandBody body) {
  return Command{CommandId::random(), std::move(body)};
}

// A mixed workload from several pipelining clients: accepted commands of
// every kind, and rejections of many reasons, tooManyPending included.
// The seed is printed, and SHOP_SEED replays one.
uint64_t runWorkload(EmbeddedServer& server, int commands, uint64_t seed) {
  std::mt19937_64 rng(seed);
  bus::Client admin(server.context(), server.commands());
  for (int p = 0; p < 5; ++p) {
    REQUIRE(admin.call(cmd(AddProduct{"p" + std::to_string(p), 10 + p * 7, 20})).ok());
  }
  // The gate at work, deterministically: c0's shard is held, so of seven
  // deposits five wait and two are rejected tooManyPending at once.
  REQUIRE(admin.call(cmd(CreateCustomer{"c0", 0})).ok());
  unsigned held = server.holdShardOfCustomer("c0");
  int rejectedAtOnce = 0;
  for (int k = 0; k < 7; ++k) {
    admin.send(cmd(Deposit{"c0", 1}), [&rejectedAtOnce](const bus::CallResult& r) {
      REQUIRE(r.ok());
      rejectedAtOnce += r.reply->reply.status == ReplyStatus::rejected;
    });
  }
  while (rejectedAtOnce < 2) admin.poll(-1);
  server.resumeShard(held);
  while (admin.inFlight() > 0) admin.poll(-1);

  std::vector<std::unique_ptr<bus::Client>> clients;
  for (int c = 0; c < 3; ++c) {
    clients.push_back(std::make_unique<bus::Client>(server.context(), server.commands()));
  }
  auto pick = [&rng](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  auto answered = [](const bus::CallResult& r) { REQUIRE(r.ok()); };
  for (int i = 0; i < commands; ++i) {
    std::string customer = "c" + std::to_string(pick(40));
    std::string product = "p" + std::to_string(pick(6));  // p5 does not exist
    bus::Client& client = *clients[static_cast<size_t>(pick(3))];
    switch (pick(10)) {
      case 0:
        client.send(cmd(CreateCustomer{customer, pick(500)}), answered);
        break;
      case 1:
      case 2:
        client.send(cmd(Deposit{customer, 1 + pick(300)}), answered);
        break;
      case 3:
      case 4:
      case 5:
        client.send(cmd(BuyProduct{customer, product, 1 + pick(3)}), answered);
        break;
      case 6:
        client.send(cmd(ReturnProduct{customer, product, 1 + pick(2)}), answered);
        break;
      case 7:
        client.send(cmd(Restock{product, pick(10)}), answered);
        break;
      case 8:
        client.send(cmd(CreateCustomer{customer + "\xff", 1}), answered);
        break;
      default:
        // A burst on one customer, which the gate may cut short.
        for (int k = 0; k < 7; ++k) client.send(cmd(Deposit{customer, 1}), answered);
        break;
    }
    if (i % 64 == 0) {
      for (auto& c : clients) c->poll(0);
    }
  }
  for (auto& c : clients) {
    while (c->inFlight() > 0) c->poll(-1);
  }
  auto head = admin.call(cmd(ReadEvents{UINT64_MAX, 1}));
  REQUIRE(head.ok());
  return head.reply->reply.page.headSeq;
}

std::vector<Event> fullLog(EmbeddedServer& server) {
  bus::Client client(server.context(), server.commands());
  std::vector<Event> events;
  Seq from = 1;
  for (;;) {
    auto r = client.call(cmd(ReadEvents{from, 0}));
    REQUIRE(r.ok());
    REQUIRE(r.reply->reply.status == ReplyStatus::events);
    const auto& page = r.reply->reply.page;
    if (page.events.empty()) break;
    for (const auto& e : page.events) events.push_back(e);
    from = page.events.back().seq + 1;
    if (from > page.headSeq) break;
  }
  return events;
}

// Waits (on the runner's own summaries, never a sleep) until the models
// have applied `seq`.
void awaitApplied(ProjectionRunner& runner, Seq seq) {
  uint64_t version = 0;
  for (int waits = 0;; ++waits) {
    Seq applied = runner.query([](ReadModels&, const Health& h) { return h.appliedSeq; }).get();
    if (applied >= seq) return;
    REQUIRE(waits < 100);  // 100 summaries without reaching it: something is stuck
    version = runner.waitSummary(version, std::chrono::milliseconds(1000)).version;
  }
}

RunnerConfig configFor(EmbeddedServer& server) {
  RunnerConfig config;
  config.commandsEndpoint = server.commands();
  config.eventsEndpoint = server.events();
  config.summarize = [](ReadModels& m, const Health&) { return std::to_string(m.lastSeq()); };
  return config;
}

// The ground truth, recomputed from the log on its own terms (no shared code
// with the models), checked against them on the runner thread.
void checkAgainstLog(ProjectionRunner& runner, EmbeddedServer& server) {
  std::vector<Event> log = fullLog(server);
  REQUIRE_FALSE(log.empty());
  for (size_t k = 0; k < log.size(); ++k) REQUIRE(log[k].seq == k + 1);

  struct ProductTruth {
    Quantity stock = 0, sold = 0, returned = 0;
    Money revenue = 0;
  };
  std::map<std::string, ProductTruth> products;
  std::set<std::string> customers;
  std::map<RejectReason, uint64_t> byReason;
  std::map<std::string, uint64_t> pressed;
  for (const auto& e : log) {
    std::visit(
        [&](const auto& body) {
          using T = std::decay_t<decltype(body)>;
          if constexpr (std::is_same_v<T, CustomerCreated>) customers.insert(body.customer);
          if constexpr (std::is_same_v<T, ProductAdded>) products[body.product].stock = body.stock;
          if constexpr (std::is_same_v<T, ProductRestocked>) {
            products[body.product].stock += body.quantity;
          }
          if constexpr (std::is_same_v<T, ProductBought>) {
            products[body.product].stock -= body.quantity;
            products[body.product].sold += body.quantity;
            products[body.product].revenue += body.quantity * body.unitPrice;
          }
          if constexpr (std::is_same_v<T, ProductReturned>) {
            products[body.product].stock += body.quantity;
            products[body.product].returned += body.quantity;
          }
          if constexpr (std::is_same_v<T, OperationRejected>) {
            ++byReason[body.reason];
            if (body.reason == RejectReason::tooManyPending) ++pressed[body.customer];
          }
        },
        e.body);
  }
  REQUIRE(byReason[RejectReason::tooManyPending] > 0);  // the workload did press the gate
  REQUIRE(byReason[RejectReason::invalidId] > 0);

  std::map<std::string, CustomerView> views;
  bus::Client client(server.context(), server.commands());
  for (const auto& id : customers) {
    auto r = client.call(cmd(GetCustomer{id}));
    REQUIRE(r.ok());
    REQUIRE(r.reply->reply.customer);
    views[id] = *r.reply->reply.customer;
  }

  Seq head = log.back().seq;
  awaitApplied(runner, head);
  runner
      .query([&](ReadModels& m, const Health& h) {
        CHECK(h.appliedSeq == head);
        CHECK(m.lastSeq() == head);
        CHECK(m.customers.size() == customers.size());
        for (const auto& [id, view] : views) {
          const CustomerRow* row = m.customers.find(id);
          REQUIRE(row);
          CHECK(row->balance == view.balance);
          auto held = view.holdings;
          auto mine = row->holdings;
          auto byProduct = [](const Holding& a, const Holding& b) { return a.product < b.product; };
          std::sort(held.begin(), held.end(), byProduct);
          std::sort(mine.begin(), mine.end(), byProduct);
          CHECK(mine == held);
        }
        CHECK(m.catalog.size() == products.size());
        for (const auto& [id, truth] : products) {
          const ProductRow* row = m.catalog.find(id);
          REQUIRE(row);
          CHECK(row->stock == truth.stock);
          CHECK(row->sold == truth.sold);
          CHECK(row->returned == truth.returned);
          CHECK(row->revenue == truth.revenue);
        }
        uint64_t rejections = 0;
        for (const auto& [reason, n] : byReason) {
          CHECK(m.rejections.byReason(reason) == n);
          rejections += n;
        }
        CHECK(m.rejections.total() == rejections);
        CHECK(m.throughput.events() == log.size());
        CHECK(m.active.count() == customers.size());  // all inside 24 h
        uint64_t pressedTotal = 0;
        for (const auto& [id, n] : pressed) pressedTotal += n;
        CHECK(m.gate.total() == pressedTotal);
        auto hottest = m.gate.hottest(100);
        CHECK(hottest.size() == pressed.size());
        for (const auto& entry : hottest) CHECK(entry.rejections == pressed[entry.id]);
      })
      .get();
}

uint64_t seedFromEnv() {
  const char* text = std::getenv("SHOP_SEED");
  return text ? std::strtoull(text, nullptr, 10) : std::random_device{}();
}

}  // namespace

TEST_CASE("after a randomized workload every read model equals the ground truth from the log") {
  uint64_t seed = seedFromEnv();
  std::printf("runner ground truth: seed %llu (SHOP_SEED=%llu replays it)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  EmbeddedServer server;
  ProjectionRunner runner(configFor(server));
  runner.start();
  runWorkload(server, 3000, seed);
  checkAgainstLog(runner, server);
  auto health = runner.query([](ReadModels&, const Health& h) { return h; }).get();
  CHECK(health.connected);
  CHECK(health.serverId != 0);
  CHECK(health.resets == 0);
  CHECK(health.lag() == 0);
}

TEST_CASE("with events dropped by tiny high-water marks the models still converge to the log") {
  uint64_t seed = seedFromEnv();
  std::printf("runner gap repair: seed %llu\n", static_cast<unsigned long long>(seed));
  auto config = EmbeddedServer::defaultConfig();
  config.eventsSendHwm = 4;
  config.eventsSendBuffer = 4096;
  EmbeddedServer server(config);
  auto runnerConfig = configFor(server);
  runnerConfig.subscriberRcvHwm = 4;
  ProjectionRunner runner(runnerConfig);
  runner.start();
  runWorkload(server, 3000, seed);
  checkAgainstLog(runner, server);
  CHECK(runner.query([](ReadModels&, const Health& h) { return h.gapsRepaired; }).get() > 0);
}

TEST_CASE(
    "a server restarted on the same endpoints resets the models, which then match the new one") {
  auto first = std::make_unique<EmbeddedServer>();
  auto config = EmbeddedServer::defaultConfig();
  config.commandsEndpoint = first->commands();
  config.eventsEndpoint = first->events();
  RunnerConfig runnerConfig = configFor(*first);
  ProjectionRunner runner(runnerConfig);
  runner.start();
  {
    bus::Client client(first->context(), first->commands());
    for (int i = 0; i < 20; ++i) {
      REQUIRE(client.call(cmd(CreateCustomer{"old" + std::to_string(i), 1})).ok());
    }
  }
  awaitApplied(runner, 20);
  uint64_t oldId = runner.query([](ReadModels&, const Health& h) { return h.serverId; }).get();
  first.reset();

  EmbeddedServer second(config);
  {
    bus::Client client(second.context(), second.commands());
    for (int i = 0; i < 3; ++i) {
      REQUIRE(client.call(cmd(CreateCustomer{"new" + std::to_string(i), 1})).ok());
    }
  }
  // Three events on the new server against twenty on the old: the seq alone
  // would say "nothing new"; the server id says "another stream".
  uint64_t version = 0;
  for (int waits = 0;; ++waits) {
    auto state = runner
                     .query([](ReadModels& m, const Health& h) {
                       return std::tuple{h.serverId, h.appliedSeq, m.customers.size(), h.resets};
                     })
                     .get();
    if (std::get<0>(state) != oldId && std::get<1>(state) == 3) {
      CHECK(std::get<2>(state) == 3);
      CHECK(std::get<3>(state) == 1);
      break;
    }
    REQUIRE(waits < 100);
    version = runner.waitSummary(version, std::chrono::milliseconds(1000)).version;
  }
  runner
      .query([](ReadModels& m, const Health&) {
        CHECK(m.customers.find("new0"));
        CHECK_FALSE(m.customers.find("old0"));
      })
      .get();
}

TEST_CASE("an event the runner cannot decode is skipped and counted, and the rest applied") {
  // A newer server's stream: event 2 is of a kind this build does not know.
  std::vector<kj::Array<capnp::word>> events;
  for (Seq seq = 1; seq <= 3; ++seq) {
    Event e{seq, 1, CommandId::fromNumber(9, seq), CustomerCreated{"c" + std::to_string(seq), 1}};
    events.push_back(testkit::eventMessage(e, seq == 2));
  }
  testkit::FakeServer fake({.events = std::move(events)});
  RunnerConfig config;
  config.commandsEndpoint = fake.commands();
  config.eventsEndpoint = fake.events();
  config.summarize = [](ReadModels& m, const Health&) { return std::to_string(m.lastSeq()); };
  ProjectionRunner runner(config);
  runner.start();
  awaitApplied(runner, 3);
  runner
      .query([](ReadModels& m, const Health& h) {
        CHECK(h.framesSkipped == 1);
        CHECK(h.appliedSeq == 3);
        CHECK(m.customers.size() == 2);
        CHECK(m.customers.find("c1"));
        CHECK_FALSE(m.customers.find("c2"));
        CHECK(m.customers.find("c3"));
      })
      .get();
}
