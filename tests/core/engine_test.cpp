// Engine behaviour: the pending-slot gate, isolation between customers,
// dedupe, supervision and replay. Deterministic: shards are held still
// through the test seam, never raced or slept on.
#include <doctest/doctest.h>

#include "tests/testkit/engine_harness.h"

using namespace shop;
using shop::testkit::EngineHarness;
using shop::testkit::firstStatedMismatch;

namespace {

// A customer id other than `other` that lives on the same shard.
// A customer id that lives on a shard other than product `product`'s.
std::string otherShardThan(const Engine& engine, const std::string& product) {
  for (int i = 0;; ++i) {
    std::string id = "far-" + std::to_string(i);
    if (engine.shardOfCustomer(id) != engine.shardOfProduct(product)) return id;
  }
}

std::string sameShardAs(const Engine& engine, const std::string& other) {
  for (int i = 0;; ++i) {
    std::string id = "neighbour-" + std::to_string(i);
    if (engine.shardOfCustomer(id) == engine.shardOfCustomer(other)) return id;
  }
}

size_t countEvents(const EngineHarness& h, auto predicate) {
  size_t n = 0;
  for (const auto& e : h.listener.events) n += predicate(e) ? 1 : 0;
  return n;
}

bool isRejection(const Event& e, RejectReason reason) {
  auto* r = std::get_if<OperationRejected>(&e.body);
  return r && r->reason == reason;
}

void gateScenario(uint32_t limit) {
  EngineHarness h{EngineConfig{.shards = 2, .maxPending = limit}};
  REQUIRE(h.run(CreateCustomer{"alice", 0}).status == ReplyStatus::accepted);
  unsigned shard = h.engine.shardOfCustomer("alice");
  h.engine.holdShard(shard);

  std::vector<uint64_t> admitted;
  for (uint32_t i = 0; i < limit; ++i) admitted.push_back(h.send(Deposit{"alice", 10}));
  CHECK(h.engine.gate().pending("alice") == limit);
  for (uint64_t tag : admitted) CHECK(h.replyOf(tag) == nullptr);

  // One more is rejected at once, while the shard is still held.
  uint64_t extra = h.send(Deposit{"alice", 10});
  const Reply* rejected = h.replyOf(extra);
  REQUIRE(rejected != nullptr);
  REQUIRE(rejected->rejection() != nullptr);
  CHECK(rejected->rejection()->reason == RejectReason::tooManyPending);
  CHECK(isRejection(h.listener.events.back(), RejectReason::tooManyPending));
  CHECK(std::get<OperationRejected>(h.listener.events.back().body).customer == "alice");
  CHECK(h.engine.gate().pending("alice") == limit);  // the rejection took no slot

  h.engine.resumeShard(shard);
  for (uint64_t tag : admitted) CHECK(h.await(tag).status == ReplyStatus::accepted);
  CHECK(h.engine.gate().pending("alice") == 0);
  CHECK(h.run(Deposit{"alice", 10}).status == ReplyStatus::accepted);

  Reply v = h.run(GetCustomer{"alice"});
  CHECK(v.customer->balance == 10 * (limit + 1));
}

}  // namespace

TEST_CASE("sixth pending operation for one customer is rejected with tooManyPending") {
  gateScenario(5);
}

TEST_CASE("the pending limit is configurable") {
  gateScenario(2);
  gateScenario(9);
}

TEST_CASE("queries count against the customer's pending slots") {
  EngineHarness h{EngineConfig{.shards = 1, .maxPending = 1}};
  h.run(CreateCustomer{"alice", 0});
  h.engine.holdShard(0);
  uint64_t get = h.send(GetCustomer{"alice"});
  const Reply* second = h.replyOf(h.send(Deposit{"alice", 1}));
  REQUIRE(second != nullptr);
  CHECK(second->rejection()->reason == RejectReason::tooManyPending);
  h.engine.resumeShard(0);
  CHECK(h.await(get).status == ReplyStatus::customer);
}

TEST_CASE("a customer at its limit does not block another customer on the same shard") {
  EngineHarness h{EngineConfig{.shards = 2}};
  std::string bob = sameShardAs(h.engine, "alice");
  h.run(CreateCustomer{"alice", 0});
  h.run(CreateCustomer{bob, 0});
  unsigned shard = h.engine.shardOfCustomer("alice");
  h.engine.holdShard(shard);

  for (int i = 0; i < 5; ++i) h.send(Deposit{"alice", 1});
  const Reply* aliceExtra = h.replyOf(h.send(Deposit{"alice", 1}));
  REQUIRE(aliceExtra != nullptr);
  CHECK(aliceExtra->rejection()->reason == RejectReason::tooManyPending);

  uint64_t bobTag = h.send(Deposit{bob, 7});
  CHECK(h.replyOf(bobTag) == nullptr);  // admitted: pending, not rejected
  CHECK(h.engine.gate().pending(bob) == 1);

  h.engine.resumeShard(shard);
  CHECK(h.await(bobTag).status == ReplyStatus::accepted);
}

TEST_CASE("the same commandId sent twice applies once and both replies carry the same outcome") {
  EngineHarness h{EngineConfig{.shards = 2}};
  h.run(CreateCustomer{"alice", 100});
  CommandId id = CommandId::random();
  size_t expectedDeposits = 1;

  SUBCASE("a retry after the outcome") {
    Reply first = h.run(Deposit{"alice", 40}, id);
    Reply second = h.run(Deposit{"alice", 40}, id);
    CHECK(first.status == ReplyStatus::accepted);
    CHECK(second.status == first.status);
    CHECK(second.event->seq == first.event->seq);
    CHECK(std::get<FundsDeposited>(second.event->body) ==
          std::get<FundsDeposited>(first.event->body));
  }
  SUBCASE("a retry while the original is in flight") {
    unsigned shard = h.engine.shardOfCustomer("alice");
    h.engine.holdShard(shard);
    uint64_t a = h.send(Deposit{"alice", 40}, id);
    uint64_t b = h.send(Deposit{"alice", 40}, id);
    CHECK(h.engine.gate().pending("alice") == 1);  // the retry took no slot
    h.engine.resumeShard(shard);
    const Reply& first = h.await(a);
    const Reply& second = h.await(b);
    CHECK(first.status == ReplyStatus::accepted);
    CHECK(second.event->seq == first.event->seq);
  }
  SUBCASE("a retried rejection is not published again") {
    expectedDeposits = 0;
    Reply first = h.run(Deposit{"nobody", 40}, id);
    size_t events = h.listener.events.size();
    Reply second = h.run(Deposit{"nobody", 40}, id);
    CHECK(second.rejection()->reason == RejectReason::unknownCustomer);
    CHECK(second.event->seq == first.event->seq);
    CHECK(h.listener.events.size() == events);
  }

  size_t deposits =
      countEvents(h, [](const Event& e) { return std::holds_alternative<FundsDeposited>(e.body); });
  CHECK(deposits == expectedDeposits);
  CHECK(h.run(GetCustomer{"alice"}).customer->balance == 100 + 40 * Money(expectedDeposits));
  for (const auto& [tag, replies] : h.listener.replies) CHECK(replies.size() == 1);
}

TEST_CASE("a retry is answered from the window while it evicts older ids, and applies nothing") {
  // A full window at steady state: every completion evicts the oldest id.
  EngineHarness h{EngineConfig{.shards = 2, .retention = 1000, .dedupeWindow = 8}};
  h.run(CreateCustomer{"alice", 0});
  CommandId kept = CommandId::random();
  CommandId rejected = CommandId::random();
  Reply original = h.run(Deposit{"alice", 7}, kept);
  Reply refused = h.run(Deposit{"nobody", 7}, rejected);
  for (int i = 0; i < 6; ++i) h.run(Deposit{"alice", 1});  // the window is full and evicting
  REQUIRE(h.engine.dedupe().size() == 8);
  size_t events = h.listener.events.size();

  Reply again = h.run(Deposit{"alice", 7}, kept);
  CHECK(again.status == ReplyStatus::accepted);
  CHECK(again.event->seq == original.event->seq);
  CHECK(std::get<FundsDeposited>(again.event->body) ==
        std::get<FundsDeposited>(original.event->body));
  Reply refusedAgain = h.run(Deposit{"nobody", 7}, rejected);
  REQUIRE(refusedAgain.status == ReplyStatus::rejected);
  CHECK(refusedAgain.rejection()->reason == RejectReason::unknownCustomer);
  CHECK(refusedAgain.rejection()->detail == refused.rejection()->detail);
  CHECK(refusedAgain.event->seq == refused.event->seq);
  CHECK(h.listener.events.size() == events);  // nothing published, nothing applied
  CHECK(h.run(GetCustomer{"alice"}).customer->balance == 7 + 6);
}

TEST_CASE("a refused command that is also invalid is remembered, as recovery remembers it") {
  // The server refuses a command (overloaded, forbidden) before submitting
  // it; validation still decides its reason. Its rejection is then
  // remembered like any invalid command's, so that a retry gets the same
  // seq now and after a restart, where recovery remembers it from its event.
  EngineHarness h{EngineConfig{.shards = 1}};
  CommandId id = CommandId::random();
  constexpr uint64_t kTag = 1'000'000;
  h.engine.refuse(Command{id, Deposit{"a/b", 5}}, kTag, RejectReason::overloaded, "busy");
  const Reply* first = h.replyOf(kTag);
  REQUIRE(first);
  REQUIRE(first->rejection());
  CHECK(first->rejection()->reason == RejectReason::invalidId);
  size_t events = h.listener.events.size();
  Reply again = h.run(Deposit{"a/b", 5}, id);
  REQUIRE(again.rejection());
  CHECK(again.rejection()->reason == RejectReason::invalidId);
  CHECK(again.event->seq == first->event->seq);  // from the window
  CHECK(h.listener.events.size() == events);     // nothing published again
  // A valid refused command applied nothing and stays a new attempt.
  CommandId busy = CommandId::random();
  h.engine.refuse(Command{busy, CreateCustomer{"carol", 1}}, kTag + 1, RejectReason::overloaded,
                  "busy");
  CHECK(h.run(CreateCustomer{"carol", 1}, busy).status == ReplyStatus::accepted);
}

TEST_CASE("a retry whose event left retention gets its compact outcome and applies nothing") {
  EngineHarness h{EngineConfig{.shards = 2, .retention = 4, .dedupeWindow = 100}};
  h.run(CreateCustomer{"alice", 0});
  CommandId id = CommandId::random();
  CommandId rejected = CommandId::random();
  Seq seq = h.run(Deposit{"alice", 7}, id).event->seq;
  Seq rejectedSeq = h.run(Deposit{"nobody", 7}, rejected).event->seq;
  for (int i = 0; i < 10; ++i) h.run(Deposit{"alice", 1});
  REQUIRE(h.engine.log().oldestSeq() > rejectedSeq);
  size_t events = h.listener.events.size();

  Reply retired = h.run(Deposit{"alice", 7}, id);
  CHECK(retired.status == ReplyStatus::retired);
  CHECK(retired.seq == seq);
  CHECK(retired.oldestSeq == h.engine.log().oldestSeq());
  Reply refused = h.run(Deposit{"nobody", 7}, rejected);
  REQUIRE(refused.status == ReplyStatus::rejected);
  CHECK(refused.rejection()->reason == RejectReason::unknownCustomer);
  CHECK(refused.event->seq == rejectedSeq);
  CHECK(refused.rejection()->detail.find("no longer retained") != std::string::npos);
  CHECK(h.listener.events.size() == events);
  CHECK(h.run(GetCustomer{"alice"}).customer->balance == 7 + 10);
}

TEST_CASE("an id that has left the dedupe window is a new command (the window is bounded)") {
  EngineHarness h{EngineConfig{.shards = 1, .dedupeWindow = 2}};
  h.run(CreateCustomer{"alice", 0});
  CommandId id = CommandId::random();
  Seq first = h.run(Deposit{"alice", 7}, id).event->seq;
  h.run(Deposit{"alice", 1});
  h.run(Deposit{"alice", 1});  // `id` is now the third-newest: forgotten
  Reply again = h.run(Deposit{"alice", 7}, id);
  CHECK(again.status == ReplyStatus::accepted);
  CHECK(again.event->seq > first);
  CHECK(h.run(GetCustomer{"alice"}).customer->balance == 7 + 1 + 1 + 7);
}

TEST_CASE("a command rejected for tooManyPending can be retried with the same id") {
  EngineHarness h{EngineConfig{.shards = 1, .maxPending = 1}};
  h.run(CreateCustomer{"alice", 0});
  h.engine.holdShard(0);
  uint64_t first = h.send(Deposit{"alice", 1});
  CommandId id = CommandId::random();
  CHECK(h.replyOf(h.send(Deposit{"alice", 5}, id))->rejection()->reason ==
        RejectReason::tooManyPending);
  h.engine.resumeShard(0);
  h.await(first);
  CHECK(h.run(Deposit{"alice", 5}, id).status == ReplyStatus::accepted);
}

TEST_CASE("an injected fault rejects one command with internalError and harms nothing else") {
  EngineHarness h{EngineConfig{.shards = 2}};
  std::string bob = sameShardAs(h.engine, "alice");
  h.run(CreateCustomer{"alice", 1000});
  h.run(CreateCustomer{bob, 500});
  h.run(AddProduct{"apple", 100, 5});
  h.run(BuyProduct{"alice", "apple", 2});
  ShopState before = h.engine.snapshot();

  h.engine.injectCustomerFault("alice");
  Reply faulted = h.run(Deposit{"alice", 1});
  REQUIRE(faulted.rejection() != nullptr);
  CHECK(faulted.rejection()->reason == RejectReason::internalError);
  CHECK(isRejection(h.listener.events.back(), RejectReason::internalError));
  CHECK(h.engine.snapshot() == before);  // the half-applied change was dropped

  // The shard goes on, for alice and for her neighbour.
  CHECK(h.run(Deposit{bob, 5}).status == ReplyStatus::accepted);
  CHECK(h.run(Deposit{"alice", 7}).status == ReplyStatus::accepted);
  CHECK(h.run(GetCustomer{"alice"}).customer->balance == 1000 - 200 + 7);

  SUBCASE("a fault in the debit half of a buy gives the reserved stock back") {
    h.engine.injectCustomerFault("alice");
    CHECK(h.run(BuyProduct{"alice", "apple", 1}).rejection()->reason ==
          RejectReason::internalError);
    h.engine.drain();
    CHECK(h.engine.snapshot().products.at("apple").stock == 3);
  }
  SUBCASE("a fault at the product rejects the buy and keeps the stock") {
    h.engine.injectProductFault("apple");
    CHECK(h.run(BuyProduct{"alice", "apple", 1}).rejection()->reason ==
          RejectReason::internalError);
    CHECK(h.run(BuyProduct{"alice", "apple", 1}).status == ReplyStatus::accepted);
    CHECK(h.engine.snapshot().products.at("apple").stock == 2);
  }
  // Replay still agrees with live state: the fault published no half event.
  h.engine.drain();
  CHECK(replay(h.listener.events) == h.engine.snapshot());
}

TEST_CASE("replaying the event log rebuilds exactly the live state") {
  EngineHarness h{EngineConfig{.shards = 3}};
  h.run(AddProduct{"apple", 150, 10});
  h.run(AddProduct{"pear", 90, 3});
  for (int i = 0; i < 6; ++i) {
    std::string c = "c" + std::to_string(i);
    h.run(CreateCustomer{c, 1000});
    h.send(BuyProduct{c, "apple", 1 + i % 2});
    h.send(BuyProduct{c, "pear", 1});
    h.send(Deposit{c, 5});
  }
  h.engine.drain();
  for (int i = 0; i < 6; i += 2) h.send(ReturnProduct{"c" + std::to_string(i), "apple", 1});
  h.send(Restock{"pear", 4});
  h.engine.drain();

  ShopState live = h.engine.snapshot();
  ShopState rebuilt = replay(h.listener.events);
  CHECK(rebuilt == live);
  CHECK(rebuilt.customers.size() == 6);
  CHECK(rebuilt.products.at("apple").stock == live.products.at("apple").stock);
}

TEST_CASE(
    "a buy whose product and customer share a shard is decided in one step, faults included") {
  EngineHarness h{EngineConfig{.shards = 1}};  // every buy is local
  h.run(CreateCustomer{"alice", 500});
  h.run(AddProduct{"apple", 100, 3});
  CHECK(h.run(BuyProduct{"alice", "apple", 2}).status == ReplyStatus::accepted);
  CHECK(h.run(BuyProduct{"alice", "apple", 2}).rejection()->reason == RejectReason::outOfStock);
  h.run(Restock{"apple", 10});
  CHECK(h.run(BuyProduct{"alice", "apple", 4}).rejection()->reason ==
        RejectReason::insufficientFunds);
  h.engine.injectCustomerFault("alice");
  CHECK(h.run(BuyProduct{"alice", "apple", 1}).rejection()->reason == RejectReason::internalError);
  h.engine.injectProductFault("apple");
  CHECK(h.run(BuyProduct{"alice", "apple", 1}).rejection()->reason == RejectReason::internalError);
  ShopState live = h.engine.snapshot();
  CHECK(live.products.at("apple").stock == 3 - 2 + 10);  // only the one accepted buy took stock
  CHECK(live.customers.at("alice").balance == 300);
  CHECK(replay(h.listener.events) == live);
}

TEST_CASE("past the global in-flight bound a command is rejected at once with overloaded") {
  EngineHarness h{EngineConfig{.shards = 1, .maxInFlight = 3}};
  for (const char* c : {"a", "b", "c", "d"}) h.run(CreateCustomer{c, 100});
  h.engine.holdShard(0);
  std::vector<uint64_t> admitted;
  for (const char* c : {"a", "b", "c"}) admitted.push_back(h.send(Deposit{c, 10}));
  CommandId id = CommandId::random();
  const Reply* refused = h.replyOf(h.send(Deposit{"d", 10}, id));
  REQUIRE(refused != nullptr);  // at once, with the shard still held
  CHECK(refused->rejection()->reason == RejectReason::overloaded);
  CHECK(isRejection(h.listener.events.back(), RejectReason::overloaded));
  CHECK(h.engine.gate().pending("d") == 0);  // it took no slot
  CHECK(h.engine.inFlight() == 3);
  h.engine.resumeShard(0);
  for (uint64_t tag : admitted) CHECK(h.await(tag).status == ReplyStatus::accepted);
  // Nothing was applied, and nothing remembered: the same id is a new attempt.
  CHECK(h.run(Deposit{"d", 10}, id).status == ReplyStatus::accepted);
  for (const char* c : {"a", "b", "c", "d"}) {
    CHECK(h.run(GetCustomer{c}).customer->balance == 110);
  }
}

TEST_CASE("a restock decided while returned units are on their way states the replayed stock") {
  EngineHarness h{EngineConfig{.shards = 2}};
  h.run(AddProduct{"kettle", 30, 5});
  std::string customer = otherShardThan(h.engine, "kettle");
  h.run(CreateCustomer{customer, 100});
  REQUIRE(h.run(BuyProduct{customer, "kettle", 2}).status == ReplyStatus::accepted);
  // The restock reaches the product shard before the returned units do:
  // the return is decided at the customer's shard and published at once.
  unsigned productShard = h.engine.shardOfProduct("kettle");
  h.engine.holdShard(productShard);
  uint64_t restock = h.send(Restock{"kettle", 10});
  REQUIRE(h.run(ReturnProduct{customer, "kettle", 2}).status == ReplyStatus::accepted);
  h.engine.resumeShard(productShard);
  const Reply& restocked = h.await(restock);
  REQUIRE(restocked.status == ReplyStatus::accepted);
  // In seq order: 5 added, 2 bought, 2 returned, then +10.
  CHECK(std::get<ProductRestocked>(restocked.event->body).stock == 15);
  CHECK(firstStatedMismatch(h.listener.events) == "");
  h.engine.drain();
  CHECK(replay(h.listener.events) == h.engine.snapshot());
}

TEST_CASE("a restock decided while a buy holds reserved units states the replayed stock") {
  EngineHarness h{EngineConfig{.shards = 2}};
  h.run(AddProduct{"kettle", 30, 5});
  std::string customer = otherShardThan(h.engine, "kettle");
  h.run(CreateCustomer{customer, 100});
  // The buy reserves at the product, then waits at the held customer shard;
  // the restock is decided and published in between.
  unsigned customerShard = h.engine.shardOfCustomer(customer);
  h.engine.holdShard(customerShard);
  uint64_t buy = h.send(BuyProduct{customer, "kettle", 2});
  const Reply& restocked = h.run(Restock{"kettle", 10});
  REQUIRE(restocked.status == ReplyStatus::accepted);
  CHECK(std::get<ProductRestocked>(restocked.event->body).stock ==
        15);  // the buy is not in the log yet
  h.engine.resumeShard(customerShard);
  REQUIRE(h.await(buy).status == ReplyStatus::accepted);
  CHECK(firstStatedMismatch(h.listener.events) == "");
  h.engine.drain();
  CHECK(h.engine.snapshot().products.at("kettle").stock == 13);
}

TEST_CASE("GetStats reports the engine's figures and publishes nothing") {
  EngineHarness h{EngineConfig{.shards = 2, .retention = 100, .dedupeWindow = 50}};
  h.run(AddProduct{"apple", 150, 10});
  h.run(AddProduct{"pear", 90, 10});
  for (const char* c : {"alice", "bob", "carol"}) h.run(CreateCustomer{c, 200});
  h.run(BuyProduct{"alice", "apple", 5});  // insufficientFunds
  h.run(CreateCustomer{"bob", 1});         // customerExists
  h.run(GetCustomer{"nobody"});            // a query's rejection: not an event, not counted
  const size_t published = h.listener.events.size();

  Reply reply = h.run(GetStats{});
  REQUIRE(reply.status == ReplyStatus::stats);
  REQUIRE(reply.stats);
  const ShopStats& s = *reply.stats;
  CHECK(s.version == "unknown");
  CHECK(s.serverId == h.engine.serverId());
  CHECK(s.headSeq == 7);
  CHECK(s.customers == 3);
  CHECK(s.products == 2);
  CHECK(s.inFlight == 0);
  CHECK(s.rejections ==
        std::vector<std::pair<RejectReason, uint64_t>>{{RejectReason::customerExists, 1},
                                                       {RejectReason::insufficientFunds, 1}});
  CHECK(s.dedupeSize == 7);
  CHECK(s.dedupeCapacity == 50);
  CHECK(s.logSize == 7);
  CHECK(s.logCapacity == 100);
  CHECK(s.rssBytes > 0);
  CHECK(s.commandsPerSecond >= 0);
  CHECK(h.listener.events.size() == published);  // a query publishes nothing
}
