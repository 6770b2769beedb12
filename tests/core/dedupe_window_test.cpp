#include <doctest/doctest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/dedupe_window.h"

using namespace shop;

namespace {
CommandId id(uint64_t n) {
  return CommandId::fromNumber(0, n);
}
using Kind = DedupeWindow::Hit::Kind;
}  // namespace

TEST_CASE("the dedupe window forgets the oldest completed ids beyond its capacity") {
  DedupeWindow window(2);
  for (uint64_t n = 1; n <= 3; ++n) {
    window.begin(id(n), 7);
    auto hit = window.find(id(n));
    CHECK(hit.kind == Kind::inFlight);
    CHECK(hit.op == 7);
    window.complete(id(n), {n * 10, ReplyStatus::accepted});
  }
  CHECK(window.find(id(1)).kind == Kind::absent);
  auto third = window.find(id(3));
  REQUIRE(third.kind == Kind::completed);
  CHECK(third.outcome.seq == 30);
  CHECK(third.outcome.status == ReplyStatus::accepted);
  CHECK(window.size() == 2);

  window.begin(id(9), 1);
  window.forget(id(9));
  CHECK(window.find(id(9)).kind == Kind::absent);
  CHECK(window.inFlight() == 0);
}

TEST_CASE("the dedupe window remembers rejections with their reason") {
  DedupeWindow window(4);
  window.remember(id(5), {12, ReplyStatus::rejected, RejectReason::unknownCustomer});
  auto hit = window.find(id(5));
  REQUIRE(hit.kind == Kind::completed);
  CHECK(hit.outcome.status == ReplyStatus::rejected);
  CHECK(hit.outcome.reason == RejectReason::unknownCustomer);
  CHECK(hit.outcome.seq == 12);
}

TEST_CASE("a dedupe window of capacity 0 remembers nothing") {
  DedupeWindow window(0);
  window.begin(id(1), 0);
  window.complete(id(1), {1, ReplyStatus::accepted});
  window.remember(id(2), {2, ReplyStatus::accepted});
  CHECK(window.find(id(1)).kind == Kind::absent);
  CHECK(window.find(id(2)).kind == Kind::absent);
}

TEST_CASE("the dedupe window agrees with a reference model under random churn") {
  unsigned seed = std::random_device{}();
  if (const char* s = std::getenv("SHOP_SEED")) seed = static_cast<unsigned>(std::stoul(s));
  INFO("SHOP_SEED=" << seed);
  std::mt19937 rng(seed);
  constexpr size_t kCapacity = 300;
  DedupeWindow window(kCapacity);
  std::vector<uint64_t> completed;  // completion order
  std::vector<std::pair<uint64_t, uint32_t>> inFlight;
  uint64_t next = 1;
  // Many in flight at once first, so that the in-flight table grows in use.
  for (int i = 0; i < 1500; ++i) {
    window.begin(id(next), static_cast<uint32_t>(next));
    inFlight.emplace_back(next, static_cast<uint32_t>(next));
    ++next;
  }
  for (int step = 0; step < 20000; ++step) {
    unsigned action = rng() % 4;
    if (action == 0 || inFlight.empty()) {
      window.begin(id(next), static_cast<uint32_t>(next));
      inFlight.emplace_back(next, static_cast<uint32_t>(next));
      ++next;
    } else {
      size_t k = rng() % inFlight.size();
      uint64_t n = inFlight[k].first;
      inFlight[k] = inFlight.back();
      inFlight.pop_back();
      if (action == 1) {
        window.forget(id(n));
      } else {
        window.complete(id(n), {n, ReplyStatus::accepted});
        completed.push_back(n);
      }
    }
  }
  for (auto& [n, op] : inFlight) {
    auto hit = window.find(id(n));
    REQUIRE(hit.kind == Kind::inFlight);
    CHECK(hit.op == op);
  }
  size_t kept = std::min(kCapacity, completed.size());
  for (size_t i = 0; i < completed.size(); ++i) {
    auto hit = window.find(id(completed[i]));
    if (i + kept >= completed.size()) {
      REQUIRE(hit.kind == Kind::completed);
      CHECK(hit.outcome.seq == completed[i]);
    } else {
      CHECK(hit.kind == Kind::absent);
    }
  }
  CHECK(window.size() == kept);
  CHECK(window.inFlight() == inFlight.size());
}
