#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "core/pending_gate.h"

using namespace shop;

TEST_CASE("the gate admits up to its limit per customer and frees slots on release") {
  PendingGate gate(2);
  CHECK(gate.tryAdmit("a"));
  CHECK(gate.tryAdmit("a"));
  CHECK_FALSE(gate.tryAdmit("a"));
  CHECK(gate.tryAdmit("b"));
  CHECK(gate.pending("a") == 2);
  gate.release("a");
  CHECK(gate.tryAdmit("a"));
  gate.release("a");
  gate.release("a");
  gate.release("b");
  CHECK(gate.customersWithPending() == 0);
}

TEST_CASE("the gate keeps every customer's count through growth and deletions") {
  PendingGate gate(3);
  constexpr int kCustomers = 5000;  // several times the initial table
  auto id = [](int i) { return "customer-" + std::to_string(i); };
  for (int i = 0; i < kCustomers; ++i) {
    for (int k = 0; k <= i % 3; ++k) REQUIRE(gate.tryAdmit(id(i)));
  }
  CHECK(gate.customersWithPending() == kCustomers);
  // Free every other customer: backward-shift deletion must keep the rest findable.
  for (int i = 0; i < kCustomers; i += 2) {
    for (int k = 0; k <= i % 3; ++k) gate.release(id(i));
  }
  for (int i = 0; i < kCustomers; ++i) {
    CHECK(gate.pending(id(i)) == (i % 2 == 0 ? 0u : static_cast<uint32_t>(i % 3 + 1)));
  }
  CHECK(gate.customersWithPending() == kCustomers / 2);
  CHECK(gate.tryAdmit(std::string(64, 'x')));  // the longest valid id fits inline
  CHECK(gate.pending(std::string(64, 'x')) == 1);
}

TEST_CASE("releasing a slot that was never taken is a bug the gate reports") {
  PendingGate gate(5);
  CHECK_THROWS_AS(gate.release("nobody"), std::logic_error);
}
