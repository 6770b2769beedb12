// Holds: reserve now, decide later. Every path with an injected clock (no
// test waits for time to pass), the race for the last units, replay and
// restart. Deterministic: shards are held still through the test seam.
#include <doctest/doctest.h>

#include <memory>

#include "core/hold_book.h"
#include "core/journal.h"
#include "tests/testkit/engine_harness.h"
#include "tests/testkit/temp_dir.h"

using namespace shop;
using shop::testkit::EngineHarness;
using shop::testkit::firstStatedMismatch;
using shop::testkit::TempDir;

namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kStart = 1'800'000'000'000'000'000;  // some day in 2027, in ns

// A clock the test moves by hand; the engine reads it on the test thread.
struct ManualClock {
  std::shared_ptr<int64_t> now = std::make_shared<int64_t>(kStart);
  std::function<int64_t()> fn() const {
    return [now = now] { return *now; };
  }
  void advanceMs(int64_t ms) { *now += ms * kMs; }
};

EngineConfig configWith(const ManualClock& clock, unsigned shards = 3) {
  return EngineConfig{.shards = shards, .maxHolds = 3, .maxHoldTtlMs = 60'000, .clock = clock.fn()};
}

// A copy: the reply is often a temporary.
template <typename T>
T acceptedAs(const Reply& reply) {
  REQUIRE(reply.status == ReplyStatus::accepted);
  REQUIRE(std::holds_alternative<T>(reply.event->body));
  return std::get<T>(reply.event->body);
}

RejectReason reasonOf(const Reply& reply) {
  REQUIRE(reply.rejection() != nullptr);
  return reply.rejection()->reason;
}

// The live state agrees with a replay of everything published, and every
// product's units add up: stock + held + sold = what was added and restocked.
void checkConsistent(EngineHarness& h, const std::map<std::string, Quantity>& added) {
  h.engine.drain();
  ShopState live = h.engine.snapshot();
  CHECK(live == replay(h.listener.events));
  CHECK(firstStatedMismatch(h.listener.events).empty());
  for (const auto& [id, units] : added) {
    const Product& p = live.products.at(id);
    CHECK(p.stock + p.held + p.sold == units);
    Quantity inHolds = 0, owned = 0;
    for (const auto& [customer, c] : live.customers) {
      for (const auto& hold : c.holds) inHolds += hold.product == id ? hold.quantity : 0;
      owned += c.unitsHeld(id);
    }
    CHECK(p.held == inHolds);
    CHECK(p.sold == owned);
  }
}

// A customer on the product's shard, or on another one.
std::string customerOn(const Engine& engine, const std::string& product, bool sameShard) {
  for (int i = 0;; ++i) {
    std::string id = "cust-" + std::to_string(i);
    bool same = engine.shardOfCustomer(id) == engine.shardOfProduct(product);
    if (same == sameShard) return id;
  }
}

}  // namespace

TEST_CASE("hold, then confirm: the held units are bought at the held price") {
  for (bool sameShard : {true, false}) {
    CAPTURE(sameShard);
    ManualClock clock;
    EngineHarness h{configWith(clock)};
    std::string alice = customerOn(h.engine, "apple", sameShard);
    h.run(AddProduct{"apple", 150, 10});
    h.run(CreateCustomer{alice, 1'000});

    const auto held = acceptedAs<ProductHeld>(h.run(HoldProduct{alice, "apple", 4, 30'000}));
    CHECK(held.holdId != 0);
    CHECK(held.customer == alice);
    CHECK(held.quantity == 4);
    CHECK(held.unitPrice == 150);
    CHECK(held.expiresAtNs == kStart + 30'000 * kMs);
    HoldId id = held.holdId;
    CHECK(h.engine.holds().liveCount() == 1);

    // Held units are nobody else's: only 6 can be bought now.
    h.run(CreateCustomer{"bob", 10'000});
    CHECK(reasonOf(h.run(BuyProduct{"bob", "apple", 7})) == RejectReason::outOfStock);
    CHECK(h.engine.snapshot().products.at("apple").held == 4);

    // The customer's view lists the hold.
    Reply view = h.run(GetCustomer{alice});
    REQUIRE(view.customer);
    REQUIRE(view.customer->holds.size() == 1);
    CHECK(view.customer->holds[0] == HoldView{id, "apple", 4, 150, kStart + 30'000 * kMs});

    clock.advanceMs(29'999);
    const auto confirmed = acceptedAs<HoldConfirmed>(h.run(ConfirmHold{.holdId = id}));
    CHECK(confirmed.holdId == id);
    CHECK(confirmed.customer == alice);
    CHECK(confirmed.product == "apple");
    CHECK(confirmed.quantity == 4);
    CHECK(confirmed.balance == 1'000 - 600);
    CHECK(h.engine.holds().liveCount() == 0);

    // It ended: a second confirmation, or a release, says how.
    Reply again = h.run(ConfirmHold{.holdId = id});
    CHECK(reasonOf(again) == RejectReason::unknownHold);
    CHECK(again.rejection()->detail.find("was confirmed") != std::string::npos);
    CHECK(reasonOf(h.run(ReleaseHold{.holdId = id})) == RejectReason::unknownHold);

    ShopState state = h.engine.snapshot();
    CHECK(state.customers.at(alice).unitsHeld("apple") == 4);
    CHECK(state.customers.at(alice).holds.empty());
    CHECK(state.products.at("apple").held == 0);
    CHECK(state.products.at("apple").stock == 6);
    checkConsistent(h, {{"apple", 10}});
  }
}

TEST_CASE("release and expiry give the units back, and a late confirmation is holdExpired") {
  for (bool sameShard : {true, false}) {
    CAPTURE(sameShard);
    ManualClock clock;
    EngineHarness h{configWith(clock)};
    std::string alice = customerOn(h.engine, "pear", sameShard);
    h.run(AddProduct{"pear", 90, 5});
    h.run(CreateCustomer{alice, 1'000});

    HoldId released = acceptedAs<ProductHeld>(h.run(HoldProduct{alice, "pear", 2, 1'000})).holdId;
    const auto r = acceptedAs<HoldReleased>(h.run(ReleaseHold{.holdId = released}));
    CHECK(r.quantity == 2);
    CHECK(r.product == "pear");
    CHECK(h.engine.snapshot().products.at("pear").stock == 5);

    HoldId expiring = acceptedAs<ProductHeld>(h.run(HoldProduct{alice, "pear", 3, 1'000})).holdId;
    CHECK(h.engine.msUntilNextExpiry() == 1'000);
    clock.advanceMs(999);
    h.engine.commit();
    h.engine.drain();
    CHECK(h.engine.holds().liveCount() == 1);  // not yet
    CHECK(h.engine.msUntilNextExpiry() == 1);

    clock.advanceMs(1);
    size_t before = h.listener.events.size();
    h.engine.commit();  // the timer: the ingress sequences the expiry
    h.engine.drain();
    REQUIRE(h.listener.events.size() == before + 1);
    const Event& event = h.listener.events.back();
    REQUIRE(std::holds_alternative<HoldExpired>(event.body));
    CHECK(std::get<HoldExpired>(event.body) == HoldExpired{expiring, alice, "pear", 3});
    CHECK(event.commandId == CommandId{});  // no client's command caused it
    CHECK(event.timestampNs == kStart + 1'000 * kMs);
    CHECK(h.engine.holds().liveCount() == 0);
    CHECK(h.engine.msUntilNextExpiry() == -1);
    CHECK(h.engine.snapshot().products.at("pear").stock == 5);

    CHECK(reasonOf(h.run(ConfirmHold{.holdId = expiring})) == RejectReason::holdExpired);
    CHECK(reasonOf(h.run(ReleaseHold{.holdId = expiring})) == RejectReason::holdExpired);
    CHECK(reasonOf(h.run(ConfirmHold{.holdId = 999})) == RejectReason::unknownHold);
    checkConsistent(h, {{"pear", 5}});
  }
}

TEST_CASE("a confirmation that arrives after the deadline expires the hold first") {
  ManualClock clock;
  EngineHarness h{configWith(clock)};
  h.run(AddProduct{"fig", 100, 3});
  h.run(CreateCustomer{"alice", 1'000});
  HoldId id = acceptedAs<ProductHeld>(h.run(HoldProduct{"alice", "fig", 1, 500})).holdId;
  clock.advanceMs(500);
  // No commit ran since the deadline passed: the confirmation itself finds it.
  Reply late = h.run(ConfirmHold{.holdId = id});
  CHECK(reasonOf(late) == RejectReason::holdExpired);
  CHECK(std::get<OperationRejected>(late.event->body).customer == "alice");
  h.engine.drain();
  size_t expired = 0, bought = 0;
  Seq expiredAt = 0;
  for (const auto& e : h.listener.events) {
    expired += std::holds_alternative<HoldExpired>(e.body);
    bought += std::holds_alternative<HoldConfirmed>(e.body);
    if (std::holds_alternative<HoldExpired>(e.body)) expiredAt = e.seq;
  }
  CHECK(late.event->seq > expiredAt);  // the refusal follows the expiry it reports
  CHECK(expired == 1);
  CHECK(bought == 0);
  checkConsistent(h, {{"fig", 3}});
}

TEST_CASE("a confirmation in flight before the deadline wins over the expiry behind it") {
  ManualClock clock;
  EngineHarness h{configWith(clock)};
  h.run(AddProduct{"kiwi", 100, 3});
  h.run(CreateCustomer{"alice", 1'000});
  HoldId id = acceptedAs<ProductHeld>(h.run(HoldProduct{"alice", "kiwi", 2, 500})).holdId;

  unsigned shard = h.engine.shardOfCustomer("alice");
  h.engine.holdShard(shard);
  uint64_t confirm = h.send(ConfirmHold{.holdId = id});  // admitted in time
  clock.advanceMs(600);
  h.engine.commit();  // the expiry is sequenced behind the confirmation
  CHECK(h.engine.inFlight() == 2);
  uint64_t release = h.send(ReleaseHold{.holdId = id});  // late, behind both
  h.engine.resumeShard(shard);
  acceptedAs<HoldConfirmed>(h.await(confirm));
  // Told what happened: the hold was bought, not expired.
  const Reply& released = h.await(release);
  CHECK(reasonOf(released) == RejectReason::unknownHold);
  CHECK(released.rejection()->detail.find("was confirmed") != std::string::npos);
  h.engine.drain();
  for (const auto& e : h.listener.events) CHECK_FALSE(std::holds_alternative<HoldExpired>(e.body));
  CHECK(h.engine.holds().liveCount() == 0);
  checkConsistent(h, {{"kiwi", 3}});
}

TEST_CASE("a refused confirmation keeps the hold, and limits are rejected with reasons") {
  ManualClock clock;
  EngineHarness h{configWith(clock)};
  h.run(AddProduct{"plum", 400, 100});
  h.run(CreateCustomer{"alice", 500});

  HoldId id = acceptedAs<ProductHeld>(h.run(HoldProduct{"alice", "plum", 2, 10'000})).holdId;
  CHECK(reasonOf(h.run(ConfirmHold{.holdId = id})) == RejectReason::insufficientFunds);
  CHECK(h.engine.holds().liveCount() == 1);
  h.run(Deposit{"alice", 300});
  acceptedAs<HoldConfirmed>(h.run(ConfirmHold{.holdId = id}));

  // At most maxHolds (3) live holds per customer; one ending frees a place.
  std::vector<HoldId> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(acceptedAs<ProductHeld>(h.run(HoldProduct{"alice", "plum", 1, 10'000})).holdId);
  }
  CHECK(reasonOf(h.run(HoldProduct{"alice", "plum", 1, 10'000})) == RejectReason::tooManyHolds);
  acceptedAs<HoldReleased>(h.run(ReleaseHold{.holdId = ids[0]}));
  acceptedAs<ProductHeld>(h.run(HoldProduct{"alice", "plum", 1, 10'000}));

  CHECK(reasonOf(h.run(HoldProduct{"alice", "plum", 1, 60'001})) == RejectReason::invalidTtl);
  CHECK(reasonOf(h.run(HoldProduct{"alice", "plum", 1, 0})) == RejectReason::invalidTtl);
  CHECK(reasonOf(h.run(HoldProduct{"alice", "plum", 0, 100})) == RejectReason::invalidQuantity);
  CHECK(reasonOf(h.run(HoldProduct{"alice", "plum", 101, 100})) == RejectReason::outOfStock);
  CHECK(reasonOf(h.run(HoldProduct{"nobody", "plum", 1, 100})) == RejectReason::unknownCustomer);
  CHECK(reasonOf(h.run(HoldProduct{"alice", "none", 1, 100})) == RejectReason::unknownProduct);
  CHECK(reasonOf(h.run(ConfirmHold{.holdId = 0})) == RejectReason::unknownHold);
  // The timer's command is the engine's own: refused, nothing published.
  size_t published = h.listener.events.size();
  CHECK(reasonOf(h.run(ExpireHold{ids[1], "alice", "plum"})) == RejectReason::forbidden);
  CHECK(h.listener.events.size() == published);
  checkConsistent(h, {{"plum", 100}});
}

TEST_CASE("a retried hold command is applied once") {
  ManualClock clock;
  EngineHarness h{configWith(clock)};
  h.run(AddProduct{"lime", 10, 10});
  h.run(CreateCustomer{"alice", 1'000});
  CommandId holdCmd = CommandId::random();
  Reply first = h.run(HoldProduct{"alice", "lime", 2, 5'000}, holdCmd);
  Reply retry = h.run(HoldProduct{"alice", "lime", 2, 5'000}, holdCmd);
  CHECK(retry.event->seq == first.event->seq);
  HoldId id = acceptedAs<ProductHeld>(first).holdId;
  CommandId confirmCmd = CommandId::random();
  Reply confirmed = h.run(ConfirmHold{.holdId = id}, confirmCmd);
  Reply confirmedAgain = h.run(ConfirmHold{.holdId = id}, confirmCmd);
  CHECK(confirmedAgain.status == ReplyStatus::accepted);
  CHECK(confirmedAgain.event->seq == confirmed.event->seq);
  CHECK(h.engine.snapshot().customers.at("alice").unitsHeld("lime") == 2);
  checkConsistent(h, {{"lime", 10}});
}

TEST_CASE("200 customers race to hold the last units: exactly the available units are held") {
  ManualClock clock;
  EngineHarness h{configWith(clock, 3)};
  constexpr int kCustomers = 200;
  constexpr Quantity kUnits = 37;
  h.run(AddProduct{"ticket", 50, kUnits});
  for (int c = 0; c < kCustomers; ++c) h.run(CreateCustomer{"r" + std::to_string(c), 1'000});
  // Every shard is held while all 200 holds are admitted, then all go at once.
  for (unsigned k = 0; k < 3; ++k) h.engine.holdShard(k);
  std::vector<uint64_t> tags;
  for (int c = 0; c < kCustomers; ++c) {
    tags.push_back(h.send(HoldProduct{"r" + std::to_string(c), "ticket", 1, 10'000}));
  }
  for (unsigned k = 0; k < 3; ++k) h.engine.resumeShard(k);
  int held = 0, outOfStock = 0;
  for (uint64_t tag : tags) {
    const Reply& r = h.await(tag);
    if (r.status == ReplyStatus::accepted) {
      ++held;
    } else if (reasonOf(r) == RejectReason::outOfStock) {
      ++outOfStock;
    }
  }
  CHECK(held == kUnits);
  CHECK(outOfStock == kCustomers - kUnits);
  CHECK(h.engine.snapshot().products.at("ticket").stock == 0);
  CHECK(h.engine.snapshot().products.at("ticket").held == kUnits);

  // Half are confirmed, the rest expire: every hold ends exactly once.
  std::vector<HoldId> ids;
  for (const auto& e : h.listener.events) {
    if (auto* p = std::get_if<ProductHeld>(&e.body)) ids.push_back(p->holdId);
  }
  for (size_t i = 0; i < ids.size(); i += 2) acceptedAs<HoldConfirmed>(h.run(ConfirmHold{ids[i]}));
  clock.advanceMs(10'000);
  h.engine.commit();
  h.engine.drain();
  std::map<HoldId, int> ends;
  for (const auto& e : h.listener.events) {
    std::visit(
        [&](const auto& b) {
          using T = std::decay_t<decltype(b)>;
          if constexpr (std::is_same_v<T, HoldConfirmed> || std::is_same_v<T, HoldReleased> ||
                        std::is_same_v<T, HoldExpired>) {
            ++ends[b.holdId];
          }
        },
        e.body);
  }
  CHECK(ends.size() == ids.size());
  for (const auto& [id, n] : ends) CHECK(n == 1);
  CHECK(h.engine.snapshot().products.at("ticket").stock == kUnits - (kUnits + 1) / 2);
  checkConsistent(h, {{"ticket", kUnits}});
}

TEST_CASE("a journal restart keeps live holds, their deadlines and the hold ids") {
  TempDir dir;
  JournalConfig config{.dir = dir.str()};
  ManualClock clock;
  const EngineConfig engineConfig = configWith(clock);
  HoldId live = 0, confirmed = 0;
  ShopState before;
  {
    Journal journal(config);
    journal.recover([](Seq, kj::ArrayPtr<const capnp::word>) {});
    EngineHarness h(engineConfig, &journal);
    journal.start(h.engine.serverId(), 1);
    h.run(AddProduct{"melon", 300, 10});
    h.run(CreateCustomer{"alice", 5'000});
    confirmed = acceptedAs<ProductHeld>(h.run(HoldProduct{"alice", "melon", 1, 2'000})).holdId;
    h.run(ConfirmHold{.holdId = confirmed});
    live = acceptedAs<ProductHeld>(h.run(HoldProduct{"alice", "melon", 3, 2'000})).holdId;
    before = h.engine.snapshot();
    journal.waitDurable(journal.committed());
  }
  Journal journal(config);
  EngineHarness h(engineConfig, &journal);
  JournalContents contents = journal.recover(
      [&](Seq, kj::ArrayPtr<const capnp::word> message) { h.engine.recover(message); });
  h.engine.finishRecovery(contents.serverId);
  journal.start(h.engine.serverId(), h.engine.log().headSeq() + 1);
  CHECK(h.engine.snapshot() == before);
  CHECK(h.engine.holds().liveCount() == 1);
  CHECK(h.engine.msUntilNextExpiry() == 2'000);
  CHECK(reasonOf(h.run(ConfirmHold{.holdId = confirmed})) == RejectReason::unknownHold);
  // A new hold never reuses an id.
  CHECK(acceptedAs<ProductHeld>(h.run(HoldProduct{"alice", "melon", 1, 9'000})).holdId > live);
  clock.advanceMs(2'000);
  h.engine.commit();
  h.engine.drain();
  REQUIRE(std::holds_alternative<HoldExpired>(h.listener.events.back().body));
  CHECK(std::get<HoldExpired>(h.listener.events.back().body).holdId == live);
}

TEST_CASE("the hold book routes by id and runs deadlines in order") {
  HoldBook book(2);
  HoldId a = book.allocate(), b = book.allocate(), c = book.allocate();
  CHECK(a == 1);
  book.onEvent(10, ProductHeld{a, "alice", "apple", 1, 5, 300});
  book.onEvent(11, ProductHeld{b, "bob", "apple", 1, 5, 100});
  book.onEvent(12, ProductHeld{c, "carol", "pear", 1, 5, 200});
  CHECK(book.liveCount() == 3);
  CHECK(book.find(b)->customer == "bob");
  CHECK(book.nextDeadline() == 100);
  std::vector<HoldId> due;
  book.takeDue(250, 10, [&](HoldId id, HoldBook::Live& live) {
    CHECK(live.expiring);
    due.push_back(id);
  });
  CHECK(due == std::vector<HoldId>{b, c});
  CHECK(book.nextDeadline() == 300);
  book.retryExpiry(b, 400);  // a failed expiry is taken again, later
  CHECK(book.nextDeadline() == 300);
  std::vector<HoldId> second;
  book.takeDue(1000, 1, [&](HoldId id, HoldBook::Live&) { second.push_back(id); });
  CHECK(second == std::vector<HoldId>{a});  // at most one: the earliest
  CHECK(book.nextDeadline() == 400);
  book.onEvent(13, HoldExpired{b, "bob", "apple", 1});
  book.onEvent(14, HoldConfirmed{a, "alice", "apple", 1, 5, 0});
  book.onEvent(15, HoldReleased{c, "carol", "pear", 1});
  CHECK(book.liveCount() == 0);
  CHECK(book.nextDeadline() == std::nullopt);
  // Two ended holds are remembered: the oldest went.
  CHECK(book.ended(b) == nullptr);
  CHECK(book.ended(a)->how == HoldBook::End::confirmed);
  CHECK(book.ended(c)->seq == 15);
  book.reserveBelow(100);
  CHECK(book.allocate() == 100);
}
