// The codec on untrusted bytes: every bad frame yields a reason, never a crash.
#include <doctest/doctest.h>

#include <capnp/schema.h>
#include <capnp/serialize.h>

#include <climits>
#include <cstring>
#include <random>

#include "bus/codec.h"
#include "bus/topic.h"
#include "core/validation.h"
#include "tests/testkit/wire_patch.h"

using namespace shop;
using namespace shop::bus;

namespace {

zmq::message_t frameOf(const Command& command) {
  capnp::MallocMessageBuilder message;
  toWire(command, message.initRoot<wire::Command>());
  return toFrame(message);
}

zmq::message_t bytes(const void* data, size_t size) {
  return zmq::message_t(data, size);
}

Command sample() {
  return Command{CommandId::fromNumber(1, 2), BuyProduct{"alice", "apple", 3}};
}

}  // namespace

TEST_CASE("every command kind survives a round trip through the wire") {
  std::vector<CommandBody> bodies = {CreateCustomer{"a", 5},  Deposit{"a", -7},
                                     BuyProduct{"a", "p", 2}, ReturnProduct{"a", "p", 1},
                                     AddProduct{"p", 3, 4},   Restock{"p", LLONG_MAX},
                                     GetCustomer{"a"},        ReadEvents{9, 10}};
  for (auto& body : bodies) {
    Command in{CommandId::random(), body};
    DecodedCommand out = decodeCommandFrame(frameOf(in));
    REQUIRE(out.command.has_value());
    CHECK(out.command->id == in.id);
    CHECK(out.command->kind() == in.kind());
    CHECK(out.command->customer() == in.customer());
    CHECK(out.command->product() == in.product());
  }
}

TEST_CASE("a frame at an unaligned address is copied and decoded") {
  zmq::message_t good = frameOf(sample());
  std::vector<char> storage(good.size() + 1);
  std::memcpy(storage.data() + 1, good.data(), good.size());
  zmq::message_t unaligned;
  // Borrow the odd address; the buffer outlives the message.
  zmq_msg_init_data(unaligned.handle(), storage.data() + 1, good.size(), nullptr, nullptr);
  REQUIRE(reinterpret_cast<uintptr_t>(unaligned.data()) % 8 != 0);
  DecodedCommand out = decodeCommandFrame(unaligned);
  REQUIRE(out.command.has_value());
  CHECK(std::get<BuyProduct>(out.command->body).quantity == 3);
}

TEST_CASE("random bytes are malformed, never a crash") {
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> junk(rng() % 200);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    DecodedCommand out = decodeCommandFrame(bytes(junk.data(), junk.size()));
    if (!out.command) CHECK_FALSE(out.malformed.empty());
  }
  // Mutations of a valid frame: every prefix and single-byte corruption.
  zmq::message_t good = frameOf(sample());
  const auto* base = static_cast<const uint8_t*>(good.data());
  for (size_t cut = 0; cut < good.size(); ++cut) {
    DecodedCommand out = decodeCommandFrame(bytes(base, cut));
    CHECK_FALSE(out.command.has_value());
    CHECK_FALSE(out.malformed.empty());
  }
  for (size_t at = 0; at < good.size(); ++at) {
    std::vector<uint8_t> copy(base, base + good.size());
    copy[at] ^= static_cast<uint8_t>(1 + rng() % 255);
    DecodedCommand out = decodeCommandFrame(bytes(copy.data(), copy.size()));
    if (!out.command) CHECK_FALSE(out.malformed.empty());
  }
}

TEST_CASE("a segment table claiming many segments is malformed") {
  zmq::message_t good = frameOf(sample());
  std::vector<uint8_t> copy(static_cast<const uint8_t*>(good.data()),
                            static_cast<const uint8_t*>(good.data()) + good.size());
  uint32_t segments = 511;  // the count is stored minus one
  std::memcpy(copy.data(), &segments, 4);
  DecodedCommand out = decodeCommandFrame(bytes(copy.data(), copy.size()));
  CHECK_FALSE(out.command.has_value());
  CHECK(out.malformed.find("not a valid Command") != std::string::npos);
}

TEST_CASE("frames over the size limit are malformed without being read") {
  std::vector<uint8_t> big(kMaxFrameBytes + 8, 0);
  DecodedCommand out = decodeCommandFrame(bytes(big.data(), big.size()));
  CHECK_FALSE(out.command.has_value());
  CHECK(out.malformed.find("exceeds the limit") != std::string::npos);
}

TEST_CASE("a commandId that is not 16 bytes is malformed") {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<wire::Command>();
  root.initCommandId(3);
  root.initGetCustomer().setCustomer("a");
  DecodedCommand out = decodeCommandFrame(toFrame(message));
  CHECK_FALSE(out.command.has_value());
  CHECK(out.malformed.find("16 bytes") != std::string::npos);
}

TEST_CASE("an unknown union member from a newer client is malformed and names the command") {
  zmq::message_t good = frameOf(sample());
  std::vector<capnp::word> words(good.size() / 8);
  std::memcpy(words.data(), good.data(), good.size());
  // Find the root struct's data section and overwrite the union tag.
  auto structSchema = capnp::Schema::from<wire::Command>().getProto().getStruct();
  uint32_t tagOffsetBytes = structSchema.getDiscriminantOffset() * 2;
  auto* segment = reinterpret_cast<uint8_t*>(words.data() + 1);  // after a one-segment table
  int32_t pointer;
  std::memcpy(&pointer, segment, 4);
  int32_t dataOffsetWords = pointer >> 2;
  uint8_t* data = segment + 8 + static_cast<size_t>(dataOffsetWords) * 8;
  uint16_t future = 42;
  std::memcpy(data + tagOffsetBytes, &future, 2);

  DecodedCommand out = decodeCommandFrame(bytes(words.data(), good.size()));
  CHECK_FALSE(out.command.has_value());
  CHECK(out.malformed.find("unknown command kind 42") != std::string::npos);
  CHECK(out.id == CommandId::fromNumber(1, 2));
}

TEST_CASE("a list pointer claiming more than the frame holds is malformed") {
  zmq::message_t good = frameOf(sample());
  std::vector<capnp::word> words(good.size() / 8);
  std::memcpy(words.data(), good.data(), good.size());
  // The commandId Data pointer is the root's first pointer: claim 2^29 bytes.
  auto* segment = reinterpret_cast<uint8_t*>(words.data() + 1);
  int32_t rootPointer;
  std::memcpy(&rootPointer, segment, 4);
  uint16_t dataWords;
  std::memcpy(&dataWords, segment + 4, 2);
  uint8_t* firstPointer = segment + 8 + static_cast<size_t>(rootPointer >> 2) * 8 + dataWords * 8u;
  uint32_t sizeAndType = (0x1FFFFFFFu << 3) | 2;  // byte list, huge
  std::memcpy(firstPointer + 4, &sizeAndType, 4);
  DecodedCommand out = decodeCommandFrame(bytes(words.data(), good.size()));
  CHECK_FALSE(out.command.has_value());
  CHECK_FALSE(out.malformed.empty());
}

TEST_CASE("events and replies survive a round trip") {
  Event e{7, 123, CommandId::fromNumber(3, 4), ProductBought{"a", "p", 2, 150, 700}};
  capnp::MallocMessageBuilder m;
  toWire(e, m.initRoot<wire::Event>());
  zmq::message_t frame = toFrame(m);
  Event back = readFrame<wire::Event>(frame, [](wire::Event::Reader r) { return fromWire(r); });
  CHECK(back.seq == 7);
  CHECK(back.commandId == e.commandId);
  CHECK(std::get<ProductBought>(back.body) == std::get<ProductBought>(e.body));

  Reply reply{e.commandId, ReplyStatus::customer};
  reply.customer = CustomerView{"a", 5, {Holding{"p", 2, 300}}};
  capnp::MallocMessageBuilder rm;
  toWire(reply, rm.initRoot<wire::Reply>());
  zmq::message_t rf = toFrame(rm);
  ClientReply cr = readFrame<wire::Reply>(rf, [](wire::Reply::Reader r) { return fromWire(r); });
  REQUIRE(cr.reply.customer.has_value());
  CHECK(*cr.reply.customer == *reply.customer);
}

TEST_CASE("a reply built from the log carries the logged event's bytes unchanged") {
  EventLog log(8);
  EventEncoder encoder;
  Event e{1, 99, CommandId::fromNumber(5, 6), FundsDeposited{"alice", 40, 140}};
  auto message = encoder.append(e, log);
  ReplyEncoder replies;
  ReplyView accepted{.commandId = e.commandId, .status = ReplyStatus::accepted, .event = message};
  ClientReply a = readFrame<wire::Reply>(replies.encode(accepted),
                                         [](wire::Reply::Reader r) { return fromWire(r); });
  REQUIRE(a.reply.status == ReplyStatus::accepted);
  CHECK(a.reply.commandId == e.commandId);
  CHECK(a.reply.event->seq == 1);
  CHECK(a.reply.event->timestampNs == 99);
  CHECK(std::get<FundsDeposited>(a.reply.event->body) == std::get<FundsDeposited>(e.body));

  ReplyView retired{
      .commandId = e.commandId, .status = ReplyStatus::retired, .seq = 1, .oldestSeq = 5};
  ClientReply r = readFrame<wire::Reply>(replies.encode(retired),
                                         [](wire::Reply::Reader r) { return fromWire(r); });
  CHECK(r.reply.status == ReplyStatus::retired);
  CHECK(r.reply.seq == 1);
  CHECK(r.reply.oldestSeq == 5);

  ReplyView page{.commandId = e.commandId,
                 .status = ReplyStatus::events,
                 .log = &log,
                 .first = 1,
                 .count = 1,
                 .headSeq = 1,
                 .serverId = 0x0123456789ABCDEF};
  ClientReply p = readFrame<wire::Reply>(replies.encode(page),
                                         [](wire::Reply::Reader r) { return fromWire(r); });
  REQUIRE(p.reply.page.events.size() == 1);
  CHECK(p.reply.page.serverId == 0x0123456789ABCDEF);
  CHECK(p.reply.page.skipped.empty());
  CHECK(std::get<FundsDeposited>(p.reply.page.events[0].body) == std::get<FundsDeposited>(e.body));
}

TEST_CASE("a rejection of an invalid id is published on s/, never under a customer's prefix") {
  Event e{1, 1, CommandId{},
          OperationRejected{RejectReason::invalidId,
                            CommandKind::createCustomer,
                            displayId("a/b"),
                            {},
                            "customer id contains '/' at byte 1"}};
  CHECK(topicOf(e) == "s/operationRejected");
  CHECK_FALSE(topicOf(e).starts_with(customerTopicPrefix("a")));
  Event product{2, 1, CommandId{},
                OperationRejected{RejectReason::invalidId,
                                  CommandKind::addProduct,
                                  {},
                                  displayId("p/q"),
                                  "product id contains '/' at byte 1"}};
  CHECK(topicOf(product) == "s/operationRejected");
  // Other rejections name valid ids and stay with their customer.
  Event unknown{
      3, 1, CommandId{},
      OperationRejected{
          RejectReason::unknownCustomer, CommandKind::deposit, "a", {}, "no customer 'a'"}};
  CHECK(topicOf(unknown) == "c/a/operationRejected");
}

TEST_CASE("a page is decoded event by event: one that cannot be read is listed, not fatal") {
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<wire::Reply>();
  CommandId id = CommandId::fromNumber(3, 4);
  reply.setCommandId(bytesOf(id));
  auto page = reply.initEvents();
  page.setHeadSeq(4);
  page.setServerId(0xFEEDFACE12345678);
  auto list = page.initEvents(4);
  for (unsigned i = 0; i < 4; ++i) {
    toWire(Event{i + 1, 7, CommandId::fromNumber(0, i + 1),
                 CustomerCreated{"c" + std::to_string(i + 1), 1}},
           list[i]);
  }
  testkit::setEventKind(list[1], 100);                         // seq 2: a kind from a newer server
  list[2].setCommandId(kj::arrayPtr(bytesOf(id).begin(), 3));  // seq 3: a broken commandId

  zmq::message_t frame = toFrame(message);
  ClientReply decoded =
      readFrame<wire::Reply>(frame, [](wire::Reply::Reader r) { return fromWire(r); });
  REQUIRE(decoded.reply.status == ReplyStatus::events);
  const EventPage& p = decoded.reply.page;
  CHECK(p.serverId == 0xFEEDFACE12345678);
  CHECK(p.headSeq == 4);
  REQUIRE(p.events.size() == 2);
  CHECK(p.events[0].seq == 1);
  CHECK(p.events[1].seq == 4);
  REQUIRE(p.skipped.size() == 2);
  CHECK(p.skipped[0].seq == 2);
  CHECK(p.skipped[0].why.find("unknown event kind 100") != std::string::npos);
  CHECK(p.skipped[1].seq == 3);
  CHECK(p.skipped[1].why.find("commandId must be 16 bytes") != std::string::npos);
  CHECK(serverIdHex(0xFEEDFACE12345678) == "feedface12345678");
  CHECK(serverIdHex(0xAB) == "00000000000000ab");
}
