// Concurrency stress: customers spread over several shard threads race for
// stock and money. Randomised cases print their seed; set SHOP_SEED to
// reproduce one.
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <random>

#include "tests/testkit/engine_harness.h"

using namespace shop;
using shop::testkit::EngineHarness;

namespace {

uint64_t seedFromEnv() {
  if (const char* s = std::getenv("SHOP_SEED")) return std::strtoull(s, nullptr, 10);
  return std::random_device{}();
}

// Events in the order they were published must have seq 1, 2, 3, ...
void checkGapFree(const std::vector<Event>& events) {
  for (size_t i = 0; i < events.size(); ++i) REQUIRE(events[i].seq == i + 1);
}

}  // namespace

TEST_CASE("many customers racing for the last unit: exactly one buys it") {
  EngineHarness h{EngineConfig{.shards = 4}};
  constexpr int kBuyers = 300;
  for (int i = 0; i < kBuyers; ++i) h.send(CreateCustomer{"buyer" + std::to_string(i), 1000});
  h.run(AddProduct{"last", 10, 1});
  h.engine.drain();

  // All buys in flight at once, from customers owned by four shard threads.
  std::vector<uint64_t> tags;
  for (int i = 0; i < kBuyers; ++i) {
    tags.push_back(h.send(BuyProduct{"buyer" + std::to_string(i), "last", 1}));
  }
  h.engine.drain();

  int bought = 0, outOfStock = 0;
  for (uint64_t tag : tags) {
    const Reply& r = *h.replyOf(tag);
    if (r.status == ReplyStatus::accepted) {
      ++bought;
    } else if (r.rejection() && r.rejection()->reason == RejectReason::outOfStock) {
      ++outOfStock;
    }
  }
  CHECK(bought == 1);
  CHECK(outOfStock == kBuyers - 1);
  size_t boughtEvents = 0;
  for (const auto& e : h.listener.events)
    boughtEvents += std::holds_alternative<ProductBought>(e.body);
  CHECK(boughtEvents == 1);
  CHECK(h.engine.snapshot().products.at("last").stock == 0);
}

TEST_CASE("randomised concurrent workload conserves money and stock") {
  const uint64_t seed = seedFromEnv();
  MESSAGE("seed " << seed << " (rerun with SHOP_SEED=" << seed << ")");
  std::mt19937_64 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };

  EngineHarness h{EngineConfig{.shards = 3, .maxPending = 5}};
  constexpr int kCustomers = 40, kProducts = 6, kOps = 20'000, kWindow = 64;
  for (int p = 0; p < kProducts; ++p)
    h.send(AddProduct{"p" + std::to_string(p), 1 + pick(500), pick(20)});
  for (int c = 0; c < kCustomers; ++c) h.send(CreateCustomer{"c" + std::to_string(c), pick(5000)});
  h.engine.drain();

  for (int i = 0; i < kOps; ++i) {
    while (h.engine.inFlight() >= kWindow) h.engine.wait(-1);
    std::string c = "c" + std::to_string(pick(kCustomers + 2));  // some unknown
    std::string p = "p" + std::to_string(pick(kProducts + 1));   // some unknown
    switch (pick(10)) {
      case 0:
        h.send(Deposit{c, 1 + pick(1000)});
        break;
      case 1:
        h.send(Restock{p, 1 + pick(5)});
        break;
      case 2:
        h.send(GetCustomer{c});
        break;
      case 3:
      case 4:
        h.send(ReturnProduct{c, p, 1 + pick(3)});
        break;
      default:
        h.send(BuyProduct{c, p, 1 + pick(3)});
        break;
    }
    if (i % 5000 == 0) {
      // Mid-flight: reserved stock is out of the snapshot, never below zero.
      for (const auto& [id, product] : h.engine.snapshot().products) CHECK(product.stock >= 0);
    }
  }
  h.engine.drain();

  // Every request got exactly one reply.
  for (const auto& [tag, replies] : h.listener.replies) REQUIRE(replies.size() == 1);
  checkGapFree(h.listener.events);
  // Every balance and stock an event states is what a replay gives at its seq.
  CHECK(testkit::firstStatedMismatch(h.listener.events) == "");

  Money moneyIn = 0;
  Quantity stockIn = 0;
  size_t accepted = 0;
  for (const auto& e : h.listener.events) {
    std::visit(
        [&](const auto& b) {
          using T = std::decay_t<decltype(b)>;
          if constexpr (std::is_same_v<T, CustomerCreated>) moneyIn += b.initialBalance;
          if constexpr (std::is_same_v<T, FundsDeposited>) moneyIn += b.amount;
          if constexpr (std::is_same_v<T, ProductAdded>) stockIn += b.stock;
          if constexpr (std::is_same_v<T, ProductRestocked>) stockIn += b.quantity;
          if constexpr (std::is_same_v<T, ProductBought> || std::is_same_v<T, ProductReturned>) {
            CHECK(b.balance >= 0);
            ++accepted;
          }
        },
        e.body);
  }
  MESSAGE(h.listener.events.size() << " events, " << accepted << " buys and returns accepted");
  CHECK(accepted > 1000);  // the mix must mostly exercise real trades

  ShopState live = h.engine.snapshot();
  Money moneyHeld = 0;
  Quantity unitsHeld = 0, stock = 0;
  for (const auto& [id, c] : live.customers) {
    CHECK(c.balance >= 0);
    moneyHeld += c.balance;
    for (const auto& h : c.holdings) {
      for (const auto& lot : h.lots) {
        moneyHeld += lot.unitPrice * lot.quantity;
        unitsHeld += lot.quantity;
      }
    }
  }
  for (const auto& [id, p] : live.products) {
    CHECK(p.stock >= 0);
    stock += p.stock;
  }
  CHECK(moneyIn == moneyHeld);
  CHECK(stockIn == stock + unitsHeld);
  CHECK(replay(h.listener.events) == live);
}
