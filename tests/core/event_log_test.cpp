#include <doctest/doctest.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "core/event_codec.h"
#include "core/event_log.h"

using namespace shop;

namespace {
Event eventWith(Seq seq, std::string customer) {
  return Event{seq, 1, CommandId::fromNumber(0, seq), CustomerCreated{std::move(customer), 0}};
}
}  // namespace

TEST_CASE("the event log numbers events from 1 without gaps and keeps the newest") {
  EventLog log(3);
  EventEncoder encoder;
  CHECK(log.oldestSeq() == 1);
  CHECK_FALSE(log.retains(1));
  for (Seq s = 1; s <= 5; ++s) encoder.append(eventWith(s, "c" + std::to_string(s)), log);
  CHECK(log.headSeq() == 5);
  CHECK(log.oldestSeq() == 3);
  CHECK(log.size() == 3);
  CHECK_FALSE(log.retains(2));
  CHECK(log.retains(3));
  Event third = decodeEvent(log.at(3));
  CHECK(third.seq == 3);
  CHECK(std::get<CustomerCreated>(third.body).customer == "c3");
  CHECK(decodeEvent(log.at(5)).seq == 5);
  CHECK_THROWS_AS(log.at(2), std::logic_error);
}

TEST_CASE("the event log recycles its storage once full and keeps every retained event intact") {
  EventLog log(1000);
  EventEncoder encoder;
  // Ids of varied length so events straddle chunk boundaries.
  auto name = [](Seq s) { return std::string(1 + s % 60, static_cast<char>('a' + s % 26)); };
  for (Seq s = 1; s <= 20'000; ++s) encoder.append(eventWith(s, name(s)), log);
  size_t storage = log.storageBytes();
  for (Seq s = 20'001; s <= 100'000; ++s) encoder.append(eventWith(s, name(s)), log);
  CHECK(log.storageBytes() == storage);  // steady state: chunks are reused, none added
  for (Seq s = log.oldestSeq(); s <= log.headSeq(); ++s) {
    Event e = decodeEvent(log.at(s));
    REQUIRE(e.seq == s);
    REQUIRE(std::get<CustomerCreated>(e.body).customer == name(s));
  }
}

TEST_CASE("an event larger than a chunk gets storage of its own") {
  EventLog log(4);
  EventEncoder encoder;
  Event big{
      1, 1, CommandId::fromNumber(0, 1),
      OperationRejected{
          RejectReason::invalidId, CommandKind::createCustomer, {}, {}, std::string(400'000, 'x')}};
  encoder.append(big, log);
  encoder.append(eventWith(2, "after"), log);
  CHECK(std::get<OperationRejected>(decodeEvent(log.at(1)).body).detail.size() == 400'000);
  CHECK(std::get<CustomerCreated>(decodeEvent(log.at(2)).body).customer == "after");
}

TEST_CASE("an event encoded by a shard and sequenced later equals one encoded at sequencing") {
  EventLog direct(8), copied(8);
  EventEncoder encoder;
  CommandId id = CommandId::fromNumber(7, 9);
  EventBody body = ProductBought{"customer-0001", "apple", 3, 150, 9'550};
  encoder.append(Event{1, 1'700'000'000'123'456'789, id, body}, direct);
  PreEncodedEvent pre;
  encoder.preEncode(id, body, pre);
  REQUIRE(pre.size > 0);
  encoder.append(pre, 1'700'000'000'123'456'789, copied);
  auto a = direct.at(1), b = copied.at(1);
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.begin(), b.begin(), a.size() * sizeof(capnp::word)) == 0);

  // Too big to travel inline: left for the ingress to encode.
  encoder.preEncode(
      id,
      OperationRejected{
          RejectReason::invalidId, CommandKind::deposit, std::string(400, 'x'), {}, "too long"},
      pre);
  CHECK(pre.size == 0);
}
