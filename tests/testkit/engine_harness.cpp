#include "tests/testkit/engine_harness.h"

#include <stdexcept>

namespace shop::testkit {

std::string firstStatedMismatch(const std::vector<Event>& events) {
  ShopState state;
  for (const Event& event : events) {
    apply(state, event);
    auto mismatch = [&](const char* field, int64_t stated, int64_t replayed) {
      return "seq " + std::to_string(event.seq) + " " + std::string(eventName(event.body)) +
             ": states " + field + " " + std::to_string(stated) + ", replay gives " +
             std::to_string(replayed);
    };
    auto balance = [&]() { return state.customers.at(std::string(event.customer())).balance; };
    auto stock = [&]() { return state.products.at(std::string(event.product())).stock; };
    if (auto* e = std::get_if<FundsDeposited>(&event.body); e && e->balance != balance()) {
      return mismatch("balance", e->balance, balance());
    }
    if (auto* e = std::get_if<ProductBought>(&event.body); e && e->balance != balance()) {
      return mismatch("balance", e->balance, balance());
    }
    if (auto* e = std::get_if<ProductReturned>(&event.body); e && e->balance != balance()) {
      return mismatch("balance", e->balance, balance());
    }
    if (auto* e = std::get_if<HoldConfirmed>(&event.body); e && e->balance != balance()) {
      return mismatch("balance", e->balance, balance());
    }
    if (auto* e = std::get_if<ProductAdded>(&event.body); e && e->stock != stock()) {
      return mismatch("stock", e->stock, stock());
    }
    if (auto* e = std::get_if<ProductRestocked>(&event.body); e && e->stock != stock()) {
      return mismatch("stock", e->stock, stock());
    }
  }
  return {};
}

uint64_t EngineHarness::send(CommandBody body, CommandId id) {
  uint64_t tag = nextTag_++;
  engine.submit(Command{id, std::move(body)}, tag);
  return tag;
}

Reply EngineHarness::run(CommandBody body, CommandId id) {
  return await(send(std::move(body), id));
}

const Reply* EngineHarness::replyOf(uint64_t tag) const {
  auto it = listener.replies.find(tag);
  return it == listener.replies.end() || it->second.empty() ? nullptr : &it->second.front();
}

const Reply& EngineHarness::await(uint64_t tag) {
  while (!replyOf(tag)) {
    if (engine.inFlight() == 0 && engine.historyPending() == 0 && !replyOf(tag)) {
      throw std::logic_error("awaited a reply with nothing in flight");
    }
    engine.wait(-1);
  }
  return *replyOf(tag);
}

}  // namespace shop::testkit
