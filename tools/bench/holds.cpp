#include "tools/bench/holds.h"

#include <chrono>
#include <cstdio>
#include <deque>
#include <string>
#include <vector>

#include "core/engine.h"
#include "core/event_codec.h"
#include "tools/bench/workload.h"

namespace shop::bench {
namespace {

// A purchase per customer at a time, `window` customers at once: either a
// BuyProduct, or a HoldProduct whose reply's holdId is then confirmed. The
// sinks count completed purchases; a hold's reply is decoded (its holdId is
// needed), a buy's is not.
class PurchaseDriver : public EventSink, public ReplySink {
 public:
  void append(const PublishedEvent&) override {}
  void commit() override {}
  void reply(uint64_t tag, const ReplyView& view) override {
    int customer = static_cast<int>(tag >> 1);
    if (view.status != ReplyStatus::accepted) {
      ++rejected;
      free.push_back(customer);
      return;
    }
    if ((tag & 1) == 0 || !holds) {  // a buy, or a confirmation: the purchase is done
      ++purchases;
      free.push_back(customer);
      return;
    }
    Event held = decodeEvent(view.event);
    confirm.emplace_back(customer, std::get<ProductHeld>(held.body).holdId);
  }

  bool holds = false;
  uint64_t purchases = 0, rejected = 0, nextId = 0;
  std::deque<int> free;                        // customers with nothing in flight
  std::deque<std::pair<int, HoldId>> confirm;  // held, to be confirmed
};

double purchasesPerSecond(Engine& engine, PurchaseDriver& driver, bool holds, int customers,
                          double seconds) {
  using Clock = std::chrono::steady_clock;
  driver.holds = holds;
  driver.free.clear();
  for (int c = 0; c < customers; ++c) driver.free.push_back(c);
  uint64_t start = driver.purchases;
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    while (!driver.free.empty()) {
      int c = driver.free.front();
      driver.free.pop_front();
      std::string customer = customerName(0, c), product = productName(c % kProducts);
      CommandId id = CommandId::fromNumber(0x401D, driver.nextId++);
      uint64_t tag = static_cast<uint64_t>(c) << 1;
      if (holds) {
        engine.submit(
            {id,
             HoldProduct{.customer = customer, .product = product, .quantity = 1, .ttlMs = 60'000}},
            tag | 1);
      } else {
        engine.submit({id, BuyProduct{customer, product, 1}}, tag);
      }
    }
    while (!driver.confirm.empty()) {
      auto [c, holdId] = driver.confirm.front();
      driver.confirm.pop_front();
      engine.submit({CommandId::fromNumber(0x401D, driver.nextId++), ConfirmHold{.holdId = holdId}},
                    static_cast<uint64_t>(c) << 1);
    }
    engine.wait(-1);
  }
  engine.drain();
  double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  return static_cast<double>(driver.purchases - start) / elapsed;
}

}  // namespace

void runHolds(const HoldsOptions& o, Report& report) {
  PurchaseDriver driver;
  Engine engine(EngineConfig{}, driver, driver);
  const int customers = 1024;  // one purchase in flight each
  uint64_t n = 0;
  for (int k = 0; k < kProducts; ++k) {
    engine.submit(
        {CommandId::fromNumber(0xA, n++), AddProduct{productName(k), 1 + k, 1'000'000'000'000}}, 0);
  }
  for (int c = 0; c < customers; ++c) {
    engine.submit(
        {CommandId::fromNumber(0xA, n++), CreateCustomer{customerName(0, c), kBigBalance}}, 0);
    if (engine.inFlight() > 256) engine.wait(-1);
  }
  engine.drain();
  driver.purchases = driver.rejected = 0;
  driver.free.clear();

  // Interleaved rounds, so that both paths see the same machine over time.
  const int rounds = o.quick ? 1 : 3;
  std::vector<double> buys, holds;
  for (int r = 0; r < rounds; ++r) {
    progress("holds: buy, %d customers, %.0f s", customers, o.seconds);
    buys.push_back(purchasesPerSecond(engine, driver, false, customers, o.seconds));
    progress("holds: hold then confirm, %d customers, %.0f s", customers, o.seconds);
    holds.push_back(purchasesPerSecond(engine, driver, true, customers, o.seconds));
  }
  std::sort(buys.begin(), buys.end());
  std::sort(holds.begin(), holds.end());
  double buy = buys[buys.size() / 2], held = holds[holds.size() / 2];
  report.set("holds", "buys_per_s", buy);
  report.set("holds", "hold_confirm_purchases_per_s", held);
  report.set("holds", "hold_confirm_commands_per_s", 2 * held);
  report.set("holds", "rejected", static_cast<double>(driver.rejected));
  report.ratios["hold_confirm_vs_buy_purchases"] = held / buy;
  std::printf("\nholds (engine in-process, %d customers, one purchase in flight each)\n",
              customers);
  std::printf("  %-34s %12.0f purchases/s\n", "buy", buy);
  std::printf("  %-34s %12.0f purchases/s (%.0f commands/s)  ratio to buy %.2f\n",
              "hold, then confirm", held, 2 * held, held / buy);
  if (driver.rejected) {
    progress("warning: holds had %llu rejected replies",
             static_cast<unsigned long long>(driver.rejected));
  }
}

}  // namespace shop::bench
