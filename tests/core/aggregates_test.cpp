// Every command's success path and every rejection reason, through the
// engine so that each rejection is also checked as a published event.
#include <doctest/doctest.h>

#include <climits>
#include <limits>

#include "core/validation.h"
#include "tests/testkit/engine_harness.h"

using namespace shop;
using shop::testkit::EngineHarness;

namespace {

// The reply is a rejection for `reason`, and the same rejection was published.
void checkRejected(EngineHarness& h, const Reply& reply, RejectReason reason) {
  REQUIRE(reply.status == ReplyStatus::rejected);
  const OperationRejected* r = reply.rejection();
  REQUIRE(r != nullptr);
  CHECK(name(r->reason) == name(reason));
  CHECK_FALSE(r->detail.empty());
  REQUIRE_FALSE(h.listener.events.empty());
  const Event& last = h.listener.events.back();
  CHECK(last.seq == reply.event->seq);
  CHECK(last.commandId == reply.commandId);
  CHECK(std::get<OperationRejected>(last.body) == *r);
}

// A copy, not a reference: callers pass the temporary that run() returns.
template <typename T>
T acceptedAs(const Reply& reply) {
  REQUIRE(reply.status == ReplyStatus::accepted);
  REQUIRE(reply.event.has_value());
  REQUIRE(std::holds_alternative<T>(reply.event->body));
  return std::get<T>(reply.event->body);
}

CustomerView view(EngineHarness& h, const std::string& customer) {
  Reply r = h.run(GetCustomer{customer});
  REQUIRE(r.status == ReplyStatus::customer);
  return *r.customer;
}

struct Shop {
  EngineHarness h{EngineConfig{.shards = 2}};
  Shop() {
    acceptedAs<CustomerCreated>(h.run(CreateCustomer{"alice", 10'000}));
    acceptedAs<ProductAdded>(h.run(AddProduct{"apple", 150, 10}));
  }
};

}  // namespace

TEST_CASE("create customer publishes CustomerCreated with the initial balance") {
  EngineHarness h{EngineConfig{.shards = 1}};
  Reply r = h.run(CreateCustomer{"bob", 2500});
  auto e = acceptedAs<CustomerCreated>(r);
  CHECK(e.customer == "bob");
  CHECK(e.initialBalance == 2500);
  CHECK(r.event->seq == 1);
  REQUIRE(h.listener.events.size() == 1);
  CHECK(view(h, "bob").balance == 2500);
}

TEST_CASE("a zero initial balance is valid") {
  EngineHarness h{EngineConfig{.shards = 1}};
  acceptedAs<CustomerCreated>(h.run(CreateCustomer{"zero", 0}));
}

TEST_CASE("deposit adds to the balance") {
  Shop s;
  auto e = acceptedAs<FundsDeposited>(s.h.run(Deposit{"alice", 250}));
  CHECK(e.amount == 250);
  CHECK(e.balance == 10'250);
  CHECK(view(s.h, "alice").balance == 10'250);
}

TEST_CASE("buy debits the customer at the unit price and takes stock") {
  Shop s;
  auto e = acceptedAs<ProductBought>(s.h.run(BuyProduct{"alice", "apple", 3}));
  CHECK(e.quantity == 3);
  CHECK(e.unitPrice == 150);
  CHECK(e.balance == 10'000 - 450);
  CustomerView v = view(s.h, "alice");
  CHECK(v.balance == 9'550);
  REQUIRE(v.holdings.size() == 1);
  CHECK(v.holdings[0] == Holding{"apple", 3, 450});
  CHECK(s.h.engine.snapshot().products.at("apple").stock == 7);
}

TEST_CASE("return refunds the price paid and restores stock") {
  Shop s;
  acceptedAs<ProductBought>(s.h.run(BuyProduct{"alice", "apple", 3}));
  auto e = acceptedAs<ProductReturned>(s.h.run(ReturnProduct{"alice", "apple", 2}));
  CHECK(e.refund == 300);
  CHECK(e.quantity == 2);
  CustomerView v = view(s.h, "alice");
  CHECK(v.balance == 10'000 - 450 + 300);
  CHECK(e.balance == v.balance);
  REQUIRE(v.holdings.size() == 1);
  CHECK(v.holdings[0] == Holding{"apple", 1, 150});
  CHECK(s.h.engine.snapshot().products.at("apple").stock == 10 - 3 + 2);
}

TEST_CASE("returns consume the most recent lot first when prices differ") {
  // Lots at different prices come from replaying history, since a live
  // product has one price: build the customer state and check the decision.
  Customer c{0, {ProductLots{"apple", {Lot{100, 2}, Lot{300, 1}}}}};
  auto d = decideReturn(&c, ReturnProduct{"alice", "apple", 2});
  REQUIRE(std::holds_alternative<EventBody>(d));
  const auto& e = std::get<ProductReturned>(std::get<EventBody>(d));
  CHECK(e.refund == 300 + 100);
  applyToCustomer(c, e);
  REQUIRE(c.holdings.size() == 1);
  CHECK(c.holdings[0].lots == std::vector<Lot>{Lot{100, 1}});
}

TEST_CASE("add product and restock publish the new stock") {
  Shop s;
  auto added = acceptedAs<ProductAdded>(s.h.run(AddProduct{"kiwi", 99, 0}));
  CHECK(added.price == 99);
  CHECK(added.stock == 0);
  auto restocked = acceptedAs<ProductRestocked>(s.h.run(Restock{"kiwi", 4}));
  CHECK(restocked.quantity == 4);
  CHECK(restocked.stock == 4);
}

TEST_CASE("get customer reports balance and holdings and publishes nothing") {
  Shop s;
  size_t before = s.h.listener.events.size();
  CustomerView v = view(s.h, "alice");
  CHECK(v.customer == "alice");
  CHECK(v.balance == 10'000);
  CHECK(v.holdings.empty());
  CHECK(s.h.listener.events.size() == before);
}

TEST_CASE("read events returns the log from a seq, inclusive, with the head") {
  Shop s;
  Reply r = s.h.run(ReadEvents{2, 0});
  REQUIRE(r.status == ReplyStatus::events);
  CHECK(r.page.headSeq == 2);
  REQUIRE(r.page.events.size() == 1);
  CHECK(r.page.events[0].seq == 2);
  CHECK(std::holds_alternative<ProductAdded>(r.page.events[0].body));

  Reply all = s.h.run(ReadEvents{0, 1});
  REQUIRE(all.page.events.size() == 1);
  CHECK(all.page.events[0].seq == 1);

  Reply beyond = s.h.run(ReadEvents{99, 0});
  CHECK(beyond.status == ReplyStatus::events);
  CHECK(beyond.page.events.empty());
}

TEST_CASE(
    "ids that are empty, too long, contain '/' or control characters, or bad UTF-8 are rejected") {
  EngineHarness h{EngineConfig{.shards = 1}};
  for (std::string bad :
       {std::string(""), std::string(65, 'x'), std::string("a/b"), std::string("tab\there"),
        std::string("nul\0x", 5), std::string("\xff\xfe"), std::string("\xc0\xaf"),
        std::string("del\x7f")}) {
    CAPTURE(bad);
    checkRejected(h, h.run(CreateCustomer{bad, 1}), RejectReason::invalidId);
  }
  acceptedAs<CustomerCreated>(h.run(CreateCustomer{std::string(64, 'x'), 1}));
  acceptedAs<CustomerCreated>(h.run(CreateCustomer{"zoë-日本", 1}));
  checkRejected(h, h.run(AddProduct{"p/q", 1, 1}), RejectReason::invalidId);
  checkRejected(h, h.run(BuyProduct{"ok", "", 1}), RejectReason::invalidId);
}

TEST_CASE("invalid amounts and quantities are rejected before anything changes") {
  Shop s;
  auto& h = s.h;
  checkRejected(h, h.run(CreateCustomer{"neg", -1}), RejectReason::invalidAmount);
  checkRejected(h, h.run(Deposit{"alice", 0}), RejectReason::invalidAmount);
  checkRejected(h, h.run(Deposit{"alice", LLONG_MIN}), RejectReason::invalidAmount);
  checkRejected(h, h.run(AddProduct{"free", 0, 1}), RejectReason::invalidAmount);
  checkRejected(h, h.run(AddProduct{"neg", 1, -1}), RejectReason::invalidQuantity);
  checkRejected(h, h.run(BuyProduct{"alice", "apple", 0}), RejectReason::invalidQuantity);
  checkRejected(h, h.run(ReturnProduct{"alice", "apple", -3}), RejectReason::invalidQuantity);
  checkRejected(h, h.run(Restock{"apple", 0}), RejectReason::invalidQuantity);
  CHECK(view(h, "alice").balance == 10'000);
}

TEST_CASE("existing aggregates cannot be created twice") {
  Shop s;
  checkRejected(s.h, s.h.run(CreateCustomer{"alice", 5}), RejectReason::customerExists);
  checkRejected(s.h, s.h.run(AddProduct{"apple", 5, 5}), RejectReason::productExists);
  CHECK(view(s.h, "alice").balance == 10'000);
}

TEST_CASE("commands naming an unknown customer or product are rejected") {
  Shop s;
  auto& h = s.h;
  checkRejected(h, h.run(Deposit{"nobody", 5}), RejectReason::unknownCustomer);
  // A query's rejection is its reply alone (see "a read never changes the log").
  size_t events = h.listener.events.size();
  Reply nobody = h.run(GetCustomer{"nobody"});
  REQUIRE(nobody.status == ReplyStatus::rejected);
  CHECK(nobody.rejection()->reason == RejectReason::unknownCustomer);
  CHECK(h.listener.events.size() == events);
  checkRejected(h, h.run(ReturnProduct{"nobody", "apple", 1}), RejectReason::unknownCustomer);
  checkRejected(h, h.run(BuyProduct{"nobody", "apple", 1}), RejectReason::unknownCustomer);
  checkRejected(h, h.run(BuyProduct{"alice", "durian", 1}), RejectReason::unknownProduct);
  checkRejected(h, h.run(Restock{"durian", 1}), RejectReason::unknownProduct);
  // The unknown customer's buy reserved and then released the stock.
  h.engine.drain();
  CHECK(h.engine.snapshot().products.at("apple").stock == 10);
}

TEST_CASE("buying more than the stock is rejected as out of stock") {
  Shop s;
  checkRejected(s.h, s.h.run(BuyProduct{"alice", "apple", 11}), RejectReason::outOfStock);
  CHECK(view(s.h, "alice").balance == 10'000);
}

TEST_CASE("an overdraft is rejected and the reserved stock goes back") {
  Shop s;
  acceptedAs<ProductAdded>(s.h.run(AddProduct{"tv", 9'000, 2}));
  acceptedAs<ProductBought>(s.h.run(BuyProduct{"alice", "tv", 1}));
  checkRejected(s.h, s.h.run(BuyProduct{"alice", "tv", 1}), RejectReason::insufficientFunds);
  CHECK(view(s.h, "alice").balance == 1'000);
  s.h.engine.drain();
  CHECK(s.h.engine.snapshot().products.at("tv").stock == 1);
}

TEST_CASE("returning more than is held is rejected as not owned") {
  Shop s;
  checkRejected(s.h, s.h.run(ReturnProduct{"alice", "apple", 1}), RejectReason::notOwned);
  acceptedAs<ProductBought>(s.h.run(BuyProduct{"alice", "apple", 1}));
  checkRejected(s.h, s.h.run(ReturnProduct{"alice", "apple", 2}), RejectReason::notOwned);
  checkRejected(s.h, s.h.run(ReturnProduct{"alice", "durian", 1}), RejectReason::notOwned);
}

TEST_CASE("sums that would leave the Int64 range are rejected as overflow") {
  Shop s;
  checkRejected(s.h, s.h.run(Deposit{"alice", LLONG_MAX}), RejectReason::overflow);
  checkRejected(s.h, s.h.run(Restock{"apple", LLONG_MAX}), RejectReason::overflow);
  acceptedAs<ProductAdded>(s.h.run(AddProduct{"gold", LLONG_MAX / 2, 4}));
  checkRejected(s.h, s.h.run(BuyProduct{"alice", "gold", 3}), RejectReason::overflow);
  CHECK(view(s.h, "alice").balance == 10'000);
}

TEST_CASE("reading events older than the retention says so with the oldest seq") {
  EngineHarness h{EngineConfig{.shards = 1, .retention = 3}};
  for (int i = 0; i < 5; ++i) h.run(CreateCustomer{"c" + std::to_string(i), 1});
  Reply r = h.run(ReadEvents{1, 0});
  REQUIRE(r.status == ReplyStatus::rejected);
  CHECK(r.rejection()->reason == RejectReason::retentionExceeded);
  CHECK(r.oldestSeq == 3);  // seqs 3..5: the read published nothing
  CHECK(r.rejection()->detail.find("the oldest is 3") != std::string::npos);
  Reply ok = h.run(ReadEvents{3, 0});
  REQUIRE(ok.status == ReplyStatus::events);
  CHECK(ok.page.events.front().seq == 3);
}

TEST_CASE("a read never changes the log: queries and their rejections publish nothing") {
  EngineHarness h{EngineConfig{.shards = 1, .maxPending = 1, .retention = 1000}};
  h.run(CreateCustomer{"alice", 0});
  Seq head = h.engine.log().headSeq();
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(h.run(ReadEvents{1, 0}).status == ReplyStatus::events);
    REQUIRE(h.run(GetCustomer{"nobody"}).status == ReplyStatus::rejected);
    REQUIRE(h.run(GetCustomer{"a/b"}).rejection()->reason == RejectReason::invalidId);
  }
  // A GetCustomer turned away by the gate publishes nothing either.
  h.engine.holdShard(0);
  uint64_t held = h.send(GetCustomer{"alice"});
  for (int i = 0; i < 100; ++i) {
    const Reply* r = h.replyOf(h.send(GetCustomer{"alice"}));
    REQUIRE(r != nullptr);
    REQUIRE(r->rejection()->reason == RejectReason::tooManyPending);
  }
  h.engine.resumeShard(0);
  CHECK(h.await(held).status == ReplyStatus::customer);
  CHECK(h.engine.log().headSeq() == head);
  CHECK(h.engine.log().oldestSeq() == 1);
}

TEST_CASE("an invalid id is never echoed raw: events carry a bounded, valid UTF-8 form") {
  EngineHarness h;
  auto carried = [&](std::string id) {
    Reply r = h.run(CreateCustomer{std::move(id), 1});
    REQUIRE(r.status == ReplyStatus::rejected);
    REQUIRE(r.rejection()->reason == RejectReason::invalidId);
    return std::get<OperationRejected>(h.listener.events.back().body).customer;
  };
  std::string bytes = carried("\xff\xfe");
  CHECK_FALSE(checkId(bytes).has_value());  // valid UTF-8 now: U+FFFD twice
  CHECK(bytes == "\xEF\xBF\xBD\xEF\xBF\xBD");
  std::string slash = carried("a/b");
  CHECK(slash.find('/') == std::string::npos);
  CHECK(carried(std::string("a\0b", 3)).find('\0') == std::string::npos);
  std::string huge = carried(std::string(16 * 1024, 'x'));
  CHECK(huge.size() <= 3 * kMaxIdBytes + 24);
  CHECK(huge.find("(16384 bytes)") != std::string::npos);
  // The log keeps that bounded form, not the 16 KiB the client sent.
  CHECK(h.engine.log().at(h.engine.log().headSeq()).size() * sizeof(capnp::word) < 1024);
}

TEST_CASE("a ReadEvents page is capped in bytes as well as in count, and says so") {
  EngineHarness h{EngineConfig{.shards = 1, .readPageBytes = 64 * 1024}};
  for (int i = 0; i < 2000; ++i) h.run(CreateCustomer{"customer-" + std::to_string(i), 1});
  Reply page = h.run(ReadEvents{1, 10'000});
  REQUIRE(page.status == ReplyStatus::events);
  CHECK(page.page.capped);
  REQUIRE_FALSE(page.page.events.empty());
  CHECK(page.page.events.size() < 2000);
  size_t bytes = 0;
  for (Seq s = 1; s <= page.page.events.back().seq; ++s) {
    bytes += h.engine.log().at(s).size() * sizeof(capnp::word);
  }
  CHECK(bytes <= 64 * 1024);
  // Reading on from the last seq + 1 gets the rest; a page within the cap says so.
  Reply rest = h.run(ReadEvents{page.page.events.back().seq + 1, 10});
  CHECK(rest.page.events.front().seq == page.page.events.back().seq + 1);
  CHECK_FALSE(rest.page.capped);
}

TEST_CASE("units sold count against the stock range, so returns and holdings never overflow") {
  EngineHarness h{EngineConfig{.shards = 2}};
  constexpr Quantity kMax = std::numeric_limits<Quantity>::max();
  h.run(AddProduct{"grain", 1, kMax});
  h.run(CreateCustomer{"miller", kMax});
  REQUIRE(h.run(BuyProduct{"miller", "grain", kMax}).status == ReplyStatus::accepted);
  // Stock is 0, but kMax units are out: one more would overflow on return.
  const Reply& restock = h.run(Restock{"grain", 1});
  REQUIRE(restock.rejection() != nullptr);
  CHECK(restock.rejection()->reason == RejectReason::overflow);
  CHECK(h.run(ReturnProduct{"miller", "grain", kMax}).status == ReplyStatus::accepted);
  h.engine.drain();
  CHECK(h.engine.snapshot().products.at("grain").stock == kMax);
}

TEST_CASE("a buy that would make a holding's total price overflow is refused") {
  EngineHarness h{EngineConfig{.shards = 2}};
  constexpr Money kMax = std::numeric_limits<Money>::max();
  h.run(AddProduct{"gold", 2, kMax});
  h.run(CreateCustomer{"midas", kMax});
  Quantity half = (Quantity{1} << 62) - 1;  // costs 2^63 - 2
  REQUIRE(h.run(BuyProduct{"midas", "gold", half}).status == ReplyStatus::accepted);
  REQUIRE(h.run(Deposit{"midas", kMax - 1}).status == ReplyStatus::accepted);
  const Reply& again = h.run(BuyProduct{"midas", "gold", half});
  REQUIRE(again.rejection() != nullptr);
  CHECK(again.rejection()->reason == RejectReason::overflow);
  const Reply& view = h.run(GetCustomer{"midas"});
  CHECK(view.customer->holdings.at(0).paid == 2 * half);
}
