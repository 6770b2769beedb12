#include <doctest/doctest.h>

#include "core/ingress_state.h"

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

TEST_CASE("the dedupe window forgets the oldest completed ids beyond its capacity") {
  DedupeWindow window(2);
  auto id = [](uint64_t n) { return CommandId::fromNumber(0, n); };
  for (uint64_t n = 1; n <= 3; ++n) {
    window.begin(id(n), 7);
    CHECK(window.find(id(n))->op == 7);
    window.complete(id(n), Reply{id(n)}, true);
  }
  CHECK(window.find(id(1)) == nullptr);
  REQUIRE(window.find(id(3)) != nullptr);
  CHECK(window.find(id(3))->op == DedupeWindow::kNoOp);
  CHECK(window.find(id(3))->reply.commandId == id(3));

  window.begin(id(9), 1);
  window.complete(id(9), Reply{id(9)}, false);
  CHECK(window.find(id(9)) == nullptr);
}

TEST_CASE("the event log numbers events from 1 without gaps and keeps the newest") {
  EventLog log(3);
  CHECK(log.oldestSeq() == 1);
  CHECK(log.read(1, 10).empty());
  for (int i = 0; i < 5; ++i) log.append(Event{});
  CHECK(log.headSeq() == 5);
  CHECK(log.oldestSeq() == 3);
  auto page = log.read(1, 10);
  REQUIRE(page.size() == 3);
  CHECK(page[0].seq == 3);
  CHECK(page[2].seq == 5);
  auto two = log.read(4, 1);
  REQUIRE(two.size() == 1);
  CHECK(two[0].seq == 4);
}
