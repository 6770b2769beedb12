// The read models alone: Event values in, state out. No sockets, no
// threads; time is a variable the test moves.
#include <doctest/doctest.h>

#include <memory>
#include <span>

#include "projections/read_models.h"

using namespace shop;
using namespace shop::projections;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kStart = 1'800'000'000 * kSecond;  // an arbitrary wall-clock time

// Events with consecutive seqs and a timestamp the test controls.
struct Stream {
  Seq seq = 0;
  int64_t nowNs = kStart;
  Event next(EventBody body) { return Event{++seq, nowNs, CommandId::random(), std::move(body)}; }
};

struct Fixture {
  int64_t nowNs = kStart;
  Stream stream;
  ReadModels models{
      ReadModelsConfig{.activeWindow = 60s, .gateWindow = 60s, .clock = [this] { return nowNs; }}};
  void apply(EventBody body) {
    stream.nowNs = nowNs;
    models.apply(stream.next(std::move(body)));
  }
  void advance(int64_t ns) { nowNs += ns; }
};

OperationRejected rejected(RejectReason reason, CommandKind kind, std::string customer,
                           std::string product = {}) {
  return OperationRejected{reason, kind, std::move(customer), std::move(product), "detail"};
}

std::vector<std::string> idsOf(const CustomerPage& page) {
  std::vector<std::string> ids;
  for (const auto* row : page.rows) ids.push_back(row->id);
  return ids;
}

}  // namespace

TEST_CASE("apply is idempotent by seq, and reset empties every model") {
  Fixture f;
  Event created = f.stream.next(CustomerCreated{"alice", 100});
  Event deposit = f.stream.next(FundsDeposited{"alice", 50, 150});
  f.models.apply(created);
  f.models.apply(deposit);
  f.models.apply(deposit);  // again: ignored
  f.models.apply(created);  // older: ignored
  REQUIRE(f.models.customers.find("alice"));
  CHECK(f.models.customers.find("alice")->balance == 150);
  CHECK(f.models.customers.find("alice")->accepted == 2);
  CHECK(f.models.throughput.events() == 2);
  CHECK(f.models.lastSeq() == 2);

  f.models.reset();
  CHECK(f.models.lastSeq() == 0);
  CHECK(f.models.customers.size() == 0);
  CHECK(f.models.active.count() == 0);
  CHECK(f.models.throughput.events() == 0);
  // After a reset seq 1 is new again: another server's stream.
  f.models.apply(Event{1, kStart, CommandId::random(), CustomerCreated{"bob", 5}});
  CHECK(f.models.customers.find("bob")->balance == 5);
  CHECK_FALSE(f.models.customers.find("alice"));
}

TEST_CASE("customers: balance, holdings at what they cost, and counts follow the events") {
  Fixture f;
  f.apply(ProductAdded{"apple", 30, 10});
  f.apply(CustomerCreated{"alice", 1000});
  f.apply(ProductBought{"alice", "apple", 2, 30, 940});
  f.apply(ProductBought{"alice", "apple", 1, 40, 900});
  f.apply(ProductReturned{"alice", "apple", 1, 40, 940});  // the newest unit goes back first
  f.apply(rejected(RejectReason::insufficientFunds, CommandKind::buyProduct, "alice", "apple"));
  f.apply(rejected(RejectReason::unknownCustomer, CommandKind::deposit, "nobody"));
  const CustomerRow* alice = f.models.customers.find("alice");
  REQUIRE(alice);
  CHECK(alice->balance == 940);
  REQUIRE(alice->holdings.size() == 1);
  CHECK(alice->holdings[0] == Holding{"apple", 2, 60});
  CHECK(alice->accepted == 4);
  CHECK(alice->rejected == 1);
  CHECK_FALSE(f.models.customers.find("nobody"));

  f.apply(ProductReturned{"alice", "apple", 2, 60, 1000});
  CHECK(f.models.customers.find("alice")->holdings.empty());
}

TEST_CASE("customers: pages by id prefix, in id order either way, and by balance without overlap") {
  Fixture f;
  // Created out of order, and more than the unsorted tail holds, so the
  // index merges while events arrive and again at the query.
  std::vector<std::string> ids;
  for (int i = 0; i < 10'000; ++i) {
    int n = (i * 7919) % 10'000;
    ids.push_back("c" + std::to_string(n));
    f.apply(CustomerCreated{ids.back(), n});
  }
  f.apply(CustomerCreated{"b", 0});
  f.apply(CustomerCreated{"d", 0});

  CustomerPage page = f.models.customers.page({.prefix = "c12", .limit = 5});
  CHECK(page.total == 111);  // c12, c120..c129, c1200..c1299
  CHECK(idsOf(page) == std::vector<std::string>{"c12", "c120", "c1200", "c1201", "c1202"});
  page = f.models.customers.page({.prefix = "c12", .descending = true, .limit = 2});
  CHECK(idsOf(page) == std::vector<std::string>{"c1299", "c1298"});
  page = f.models.customers.page({.prefix = "c12", .offset = 110, .limit = 5});
  CHECK(idsOf(page) == std::vector<std::string>{"c1299"});
  CHECK(f.models.customers.page({.prefix = "zz"}).total == 0);
  CHECK(f.models.customers.page({}).total == 10'002);
  CHECK(idsOf(f.models.customers.page({.limit = 1})) == std::vector<std::string>{"b"});

  // By balance, richest first, in pages that tile the whole set.
  std::vector<std::string> seen;
  for (size_t offset = 0; offset < 10'002; offset += 999) {
    auto p = f.models.customers.page(
        {.order = CustomerOrder::balance, .descending = true, .offset = offset, .limit = 999});
    for (const auto* row : p.rows) seen.push_back(row->id);
  }
  REQUIRE(seen.size() == 10'002);
  CHECK(seen[0] == "c9999");
  CHECK(seen[1] == "c9998");
  // Balance 0 is shared by b, c0 and d: ties go by id.
  CHECK(std::vector<std::string>(seen.end() - 3, seen.end()) ==
        std::vector<std::string>{"b", "c0", "d"});
  std::sort(seen.begin(), seen.end());
  CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());
}

TEST_CASE("catalog: stock, units sold and returned, revenue, and top sellers") {
  Fixture f;
  f.apply(ProductAdded{"apple", 30, 10});
  f.apply(ProductAdded{"pear", 50, 5});
  f.apply(ProductAdded{"fig", 70, 5});
  f.apply(CustomerCreated{"alice", 1000});
  f.apply(ProductBought{"alice", "apple", 3, 30, 910});
  f.apply(ProductBought{"alice", "pear", 2, 50, 810});
  f.apply(ProductReturned{"alice", "apple", 1, 30, 840});
  f.apply(ProductRestocked{"pear", 7, 10});
  f.apply(rejected(RejectReason::outOfStock, CommandKind::buyProduct, "alice", "fig"));

  const ProductRow* apple = f.models.catalog.find("apple");
  REQUIRE(apple);
  CHECK(apple->stock == 8);
  CHECK(apple->sold == 3);
  CHECK(apple->returned == 1);
  CHECK(apple->revenue == 90);
  CHECK(apple->netRevenue() == 60);
  CHECK(f.models.catalog.find("pear")->stock == 10);
  auto top = f.models.catalog.topSellers(2);
  REQUIRE(top.size() == 2);
  CHECK(top[0]->id == "apple");  // 2 net, ties with pear, first by id
  CHECK(top[1]->id == "pear");
}

TEST_CASE("catalog and customers: held units leave the shelf, and a confirmed hold is a sale") {
  Fixture f;
  f.apply(ProductAdded{"apple", 30, 10});
  f.apply(CustomerCreated{"alice", 1000});
  f.apply(ProductHeld{1, "alice", "apple", 3, 30, kStart + 60 * kSecond});
  f.apply(ProductHeld{2, "alice", "apple", 2, 30, kStart + 60 * kSecond});
  f.apply(ProductHeld{3, "alice", "apple", 1, 30, kStart + 60 * kSecond});
  const ProductRow* apple = f.models.catalog.find("apple");
  REQUIRE(apple);
  CHECK(apple->stock == 4);
  CHECK(apple->held == 6);
  CHECK(f.models.customers.find("alice")->liveHolds == 3);

  f.apply(HoldConfirmed{1, "alice", "apple", 3, 30, 910});
  f.apply(HoldReleased{2, "alice", "apple", 2});
  f.apply(HoldExpired{3, "alice", "apple", 1});
  CHECK(apple->stock == 7);
  CHECK(apple->held == 0);
  CHECK(apple->sold == 3);
  CHECK(apple->revenue == 90);
  const CustomerRow* alice = f.models.customers.find("alice");
  CHECK(alice->liveHolds == 0);
  CHECK(alice->balance == 910);
  REQUIRE(alice->holdings.size() == 1);
  CHECK(alice->holdings[0] == Holding{"apple", 3, 90});
}

TEST_CASE("active customers drop off once idle for the window, by the injected clock") {
  Fixture f;  // a 60 s window
  f.apply(CustomerCreated{"alice", 0});
  f.advance(30 * kSecond);
  f.apply(CustomerCreated{"bob", 0});
  f.apply(rejected(RejectReason::unknownCustomer, CommandKind::deposit, "ghost"));
  f.models.expire();
  CHECK(f.models.active.count() == 2);  // a rejection about nobody shows nobody active

  f.advance(31 * kSecond);  // alice idle 61 s, bob 31 s
  f.models.expire();
  CHECK(f.models.active.count() == 1);
  auto recent = f.models.active.recent(10);
  REQUIRE(recent.size() == 1);
  CHECK(recent[0].id == "bob");

  f.apply(FundsDeposited{"alice", 1, 1});  // active again, newest now
  f.models.expire();
  recent = f.models.active.recent(10);
  REQUIRE(recent.size() == 2);
  CHECK(recent[0].id == "alice");
  CHECK(recent[0].lastActivityNs == f.nowNs);
  f.advance(61 * kSecond);
  f.models.expire();
  CHECK(f.models.active.count() == 0);
}

TEST_CASE("gate pressure ranks customers by tooManyPending in the window, and forgets older ones") {
  Fixture f;  // a 60 s window, in 1 s slices
  for (int i = 0; i < 5; ++i) {
    f.apply(rejected(RejectReason::tooManyPending, CommandKind::deposit, "hot"));
  }
  f.apply(rejected(RejectReason::tooManyPending, CommandKind::buyProduct, "warm", "apple"));
  f.apply(rejected(RejectReason::insufficientFunds, CommandKind::buyProduct, "poor", "apple"));
  f.advance(40 * kSecond);
  for (int i = 0; i < 2; ++i) {
    f.apply(rejected(RejectReason::tooManyPending, CommandKind::deposit, "warm"));
  }
  f.models.expire();
  auto hot = f.models.gate.hottest(10);
  REQUIRE(hot.size() == 2);
  CHECK(hot[0].id == "hot");
  CHECK(hot[0].rejections == 5);
  CHECK(hot[1].id == "warm");
  CHECK(hot[1].rejections == 3);
  CHECK(f.models.gate.total() == 8);

  f.advance(21 * kSecond);  // the first burst is 61 s old
  f.models.expire();
  hot = f.models.gate.hottest(10);
  REQUIRE(hot.size() == 1);
  CHECK(hot[0].id == "warm");
  CHECK(hot[0].rejections == 2);
  CHECK(f.models.gate.total() == 2);
}

TEST_CASE("throughput counts events and rejections per second over the last five minutes") {
  Fixture f;
  f.apply(CustomerCreated{"alice", 0});
  f.apply(rejected(RejectReason::customerExists, CommandKind::createCustomer, "alice"));
  f.advance(2 * kSecond);
  f.apply(FundsDeposited{"alice", 1, 1});
  auto seconds = f.models.throughput.lastSeconds();
  REQUIRE(seconds.size() == Throughput::kSeconds);
  CHECK(seconds.back().unixSecond == f.nowNs / kSecond);
  CHECK(seconds.back().events == 1);
  CHECK(seconds[seconds.size() - 2].events == 0);
  CHECK(seconds[seconds.size() - 3].events == 2);
  CHECK(seconds[seconds.size() - 3].rejections == 1);

  f.advance(299 * kSecond);  // the first second has left the window
  seconds = f.models.throughput.lastSeconds();
  uint64_t inWindow = 0;
  for (const auto& s : seconds) inWindow += s.events;
  CHECK(inWindow == 1);
  CHECK(f.models.throughput.events() == 3);
}

TEST_CASE("rejections: counts by reason and command, and only the last hundred kept") {
  Fixture f;
  for (int i = 0; i < 150; ++i) {
    f.apply(rejected(i % 3 == 0 ? RejectReason::outOfStock : RejectReason::tooManyPending,
                     i % 2 == 0 ? CommandKind::buyProduct : CommandKind::deposit,
                     "c" + std::to_string(i)));
  }
  const auto& r = f.models.rejections;
  CHECK(r.total() == 150);
  CHECK(r.byReason(RejectReason::outOfStock) == 50);
  CHECK(r.byReason(RejectReason::tooManyPending) == 100);
  CHECK(r.byCommand(CommandKind::buyProduct) == 75);
  REQUIRE(r.recent().size() == Rejections::kRecent);
  CHECK(r.recent().front()->rejection.customer == "c50");
  CHECK(r.recent().back()->rejection.customer == "c149");
  CHECK(r.recent().back()->seq == 150);
}

TEST_CASE(
    "a batch applies exactly as its events one at a time, duplicates and strangers included") {
  // Many customers, so the look-ahead meets every case: a customer created
  // earlier in the same batch, one unknown, a product event with no
  // customer, a seq seen before.
  std::vector<Event> events;
  Stream stream;
  uint64_t x = 0x9E3779B97F4A7C15ull;
  auto next = [&x](uint64_t n) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x % n;
  };
  for (int p = 0; p < 5; ++p) {
    events.push_back(stream.next(ProductAdded{"p" + std::to_string(p), 10, 1000}));
  }
  int created = 0;
  for (int k = 0; k < 5000; ++k) {
    stream.nowNs += kSecond / 10;
    std::string customer = "c" + std::to_string(next(static_cast<uint64_t>(created) + 3));
    std::string product = "p" + std::to_string(next(5));
    switch (next(8)) {
      case 0:
        events.push_back(stream.next(CustomerCreated{"c" + std::to_string(created++), 100}));
        break;
      case 1:
        events.push_back(stream.next(FundsDeposited{customer, 5, 105}));
        break;
      case 2:
        events.push_back(stream.next(ProductBought{customer, product, 1, 10, 95}));
        break;
      case 3:
        events.push_back(stream.next(ProductReturned{customer, product, 1, 10, 105}));
        break;
      case 4:
        events.push_back(stream.next(ProductRestocked{product, 3, 1003}));
        break;
      case 5:
        events.push_back(stream.next(
            rejected(RejectReason::tooManyPending, CommandKind::buyProduct, customer, product)));
        break;
      case 6:
        if (!events.empty()) events.push_back(events[next(events.size())]);  // a duplicate
        break;
      default:
        events.push_back(stream.next(rejected(RejectReason::unknownCustomer, CommandKind::deposit,
                                              "stranger" + std::to_string(k))));
        break;
    }
  }

  int64_t nowNs = stream.nowNs;
  ReadModelsConfig config{
      .activeWindow = 60s, .gateWindow = 60s, .clock = [&nowNs] { return nowNs; }};
  ReadModels single(config);
  for (const auto& e : events) single.apply(e);
  for (size_t batch : {size_t{1}, size_t{7}, size_t{16}, size_t{256}, events.size()}) {
    CAPTURE(batch);
    ReadModels batched(config);
    std::span<const Event> all(events);
    for (size_t at = 0; at < all.size(); at += batch) {
      batched.apply(all.subspan(at, std::min(batch, all.size() - at)));
    }

    CHECK(batched.lastSeq() == single.lastSeq());
    REQUIRE(batched.customers.size() == single.customers.size());
    for (uint32_t row = 0; row < single.customers.size(); ++row) {
      const auto& a = single.customers.row(row);
      const auto& b = batched.customers.row(row);
      CAPTURE(a.id);
      CHECK(b.id == a.id);
      CHECK(b.balance == a.balance);
      CHECK(b.accepted == a.accepted);
      CHECK(b.rejected == a.rejected);
      CHECK(b.lastActivityNs == a.lastActivityNs);
      CHECK(b.holdings == a.holdings);
    }
    for (int p = 0; p < 5; ++p) {
      std::string id = "p" + std::to_string(p);
      REQUIRE(batched.catalog.find(id));
      CHECK(batched.catalog.find(id)->stock == single.catalog.find(id)->stock);
      CHECK(batched.catalog.find(id)->sold == single.catalog.find(id)->sold);
    }
    CHECK(batched.rejections.total() == single.rejections.total());
    CHECK(batched.throughput.events() == single.throughput.events());
    single.expire();
    batched.expire();
    CHECK(batched.active.count() == single.active.count());
    CHECK(batched.active.count() > 0);
    CHECK(batched.gate.hottest(10).size() == single.gate.hottest(10).size());
  }
}
