#include "core/event_codec.h"

#include <capnp/serialize.h>
#include <kj/io.h>

#include <cstring>

#include "core/check.h"

namespace shop {
namespace {

std::string text(capnp::Text::Reader t) {
  return std::string(t.cStr(), t.size());
}

CommandKind kindFromWire(wire::CommandKind k) {
  auto v = static_cast<uint16_t>(k);
  // expireHold is the engine's own and never on the wire.
  return v <= static_cast<uint16_t>(CommandKind::releaseHold) ? static_cast<CommandKind>(v)
                                                              : CommandKind::createCustomer;
}

}  // namespace

RejectReason reasonFromWire(wire::RejectReason r) {
  auto v = static_cast<uint16_t>(r);
  return v <= static_cast<uint16_t>(RejectReason::invalidTtl) ? static_cast<RejectReason>(v)
                                                              : RejectReason::internalError;
}

kj::ArrayPtr<const kj::byte> bytesOf(const CommandId& id) {
  return kj::arrayPtr(id.bytes.data(), id.bytes.size());
}

CommandId commandIdFromWire(capnp::Data::Reader in) {
  CommandId id;
  if (in.size() != id.bytes.size()) {
    throw DecodeError("commandId must be 16 bytes, got " + std::to_string(in.size()));
  }
  std::memcpy(id.bytes.data(), in.begin(), in.size());
  return id;
}

void toWire(const Event& event, wire::Event::Builder out) {
  toWire(event.seq, event.timestampNs, event.commandId, event.body, out);
}

void toWire(Seq seq, int64_t timestampNs, const CommandId& id, const EventBody& body,
            wire::Event::Builder out) {
  out.setSeq(seq);
  out.setTimestampNs(timestampNs);
  out.setCommandId(bytesOf(id));
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, CustomerCreated>) {
          auto b = out.initCustomerCreated();
          b.setCustomer(textOf(e.customer));
          b.setInitialBalance(e.initialBalance);
        } else if constexpr (std::is_same_v<T, FundsDeposited>) {
          auto b = out.initFundsDeposited();
          b.setCustomer(textOf(e.customer));
          b.setAmount(e.amount);
          b.setBalance(e.balance);
        } else if constexpr (std::is_same_v<T, ProductBought>) {
          auto b = out.initProductBought();
          b.setCustomer(textOf(e.customer));
          b.setProduct(textOf(e.product));
          b.setQuantity(e.quantity);
          b.setUnitPrice(e.unitPrice);
          b.setBalance(e.balance);
        } else if constexpr (std::is_same_v<T, ProductReturned>) {
          auto b = out.initProductReturned();
          b.setCustomer(textOf(e.customer));
          b.setProduct(textOf(e.product));
          b.setQuantity(e.quantity);
          b.setRefund(e.refund);
          b.setBalance(e.balance);
        } else if constexpr (std::is_same_v<T, ProductAdded>) {
          auto b = out.initProductAdded();
          b.setProduct(textOf(e.product));
          b.setPrice(e.price);
          b.setStock(e.stock);
        } else if constexpr (std::is_same_v<T, ProductRestocked>) {
          auto b = out.initProductRestocked();
          b.setProduct(textOf(e.product));
          b.setQuantity(e.quantity);
          b.setStock(e.stock);
        } else if constexpr (std::is_same_v<T, ProductHeld>) {
          auto b = out.initProductHeld();
          b.setHoldId(e.holdId);
          b.setCustomer(textOf(e.customer));
          b.setProduct(textOf(e.product));
          b.setQuantity(e.quantity);
          b.setUnitPrice(e.unitPrice);
          b.setExpiresAtNs(e.expiresAtNs);
        } else if constexpr (std::is_same_v<T, HoldConfirmed>) {
          auto b = out.initHoldConfirmed();
          b.setHoldId(e.holdId);
          b.setCustomer(textOf(e.customer));
          b.setProduct(textOf(e.product));
          b.setQuantity(e.quantity);
          b.setUnitPrice(e.unitPrice);
          b.setBalance(e.balance);
        } else if constexpr (std::is_same_v<T, HoldReleased> || std::is_same_v<T, HoldExpired>) {
          auto b = [&] {
            if constexpr (std::is_same_v<T, HoldReleased>) {
              return out.initHoldReleased();
            } else {
              return out.initHoldExpired();
            }
          }();
          b.setHoldId(e.holdId);
          b.setCustomer(textOf(e.customer));
          b.setProduct(textOf(e.product));
          b.setQuantity(e.quantity);
        } else {
          static_assert(std::is_same_v<T, OperationRejected>);
          auto b = out.initOperationRejected();
          b.setReason(static_cast<wire::RejectReason>(e.reason));
          b.setCommand(static_cast<wire::CommandKind>(e.command));
          b.setCustomer(textOf(e.customer));
          b.setProduct(textOf(e.product));
          b.setDetail(textOf(e.detail));
        }
      },
      body);
}

Event fromWire(wire::Event::Reader in) {
  Event out{in.getSeq(), in.getTimestampNs(), commandIdFromWire(in.getCommandId()), {}};
  switch (in.which()) {
    case wire::Event::CUSTOMER_CREATED: {
      auto e = in.getCustomerCreated();
      out.body = CustomerCreated{text(e.getCustomer()), e.getInitialBalance()};
      break;
    }
    case wire::Event::FUNDS_DEPOSITED: {
      auto e = in.getFundsDeposited();
      out.body = FundsDeposited{text(e.getCustomer()), e.getAmount(), e.getBalance()};
      break;
    }
    case wire::Event::PRODUCT_BOUGHT: {
      auto e = in.getProductBought();
      out.body = ProductBought{text(e.getCustomer()), text(e.getProduct()), e.getQuantity(),
                               e.getUnitPrice(), e.getBalance()};
      break;
    }
    case wire::Event::PRODUCT_RETURNED: {
      auto e = in.getProductReturned();
      out.body = ProductReturned{text(e.getCustomer()), text(e.getProduct()), e.getQuantity(),
                                 e.getRefund(), e.getBalance()};
      break;
    }
    case wire::Event::PRODUCT_ADDED: {
      auto e = in.getProductAdded();
      out.body = ProductAdded{text(e.getProduct()), e.getPrice(), e.getStock()};
      break;
    }
    case wire::Event::PRODUCT_RESTOCKED: {
      auto e = in.getProductRestocked();
      out.body = ProductRestocked{text(e.getProduct()), e.getQuantity(), e.getStock()};
      break;
    }
    case wire::Event::OPERATION_REJECTED: {
      auto e = in.getOperationRejected();
      out.body =
          OperationRejected{reasonFromWire(e.getReason()), kindFromWire(e.getCommand()),
                            text(e.getCustomer()), text(e.getProduct()), text(e.getDetail())};
      break;
    }
    case wire::Event::PRODUCT_HELD: {
      auto e = in.getProductHeld();
      out.body = ProductHeld{e.getHoldId(),   text(e.getCustomer()), text(e.getProduct()),
                             e.getQuantity(), e.getUnitPrice(),      e.getExpiresAtNs()};
      break;
    }
    case wire::Event::HOLD_CONFIRMED: {
      auto e = in.getHoldConfirmed();
      out.body = HoldConfirmed{e.getHoldId(),   text(e.getCustomer()), text(e.getProduct()),
                               e.getQuantity(), e.getUnitPrice(),      e.getBalance()};
      break;
    }
    case wire::Event::HOLD_RELEASED: {
      auto e = in.getHoldReleased();
      out.body =
          HoldReleased{e.getHoldId(), text(e.getCustomer()), text(e.getProduct()), e.getQuantity()};
      break;
    }
    case wire::Event::HOLD_EXPIRED: {
      auto e = in.getHoldExpired();
      out.body =
          HoldExpired{e.getHoldId(), text(e.getCustomer()), text(e.getProduct()), e.getQuantity()};
      break;
    }
    default:
      throw DecodeError("unknown event kind " + std::to_string(static_cast<int>(in.which())) +
                        " (a newer server?)");
  }
  return out;
}

Event decodeEvent(kj::ArrayPtr<const capnp::word> message) {
  capnp::FlatArrayMessageReader reader(message);
  return fromWire(reader.getRoot<wire::Event>());
}

EventEncoder::EventEncoder() : scratch_(new capnp::word[kScratchWords]()) {
  // Find seq and timestampNs by encoding distinctive values.
  constexpr uint64_t kSeq = 0x5E05E05E05E05E05ull;
  constexpr int64_t kTime = 0x71E71E71E71E71E7ll;
  capnp::MallocMessageBuilder builder;
  toWire(kSeq, kTime, CommandId{}, FundsDeposited{"x", 1, 1}, builder.initRoot<wire::Event>());
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(builder);
  for (size_t i = 0; i < flat.size(); ++i) {
    uint64_t w;
    std::memcpy(&w, flat.begin() + i, 8);
    if (w == kSeq) seqWord_ = i;
    if (w == static_cast<uint64_t>(kTime)) timestampWord_ = i;
  }
  SHOP_CHECK(seqWord_ != 0 && timestampWord_ != 0, "seq or timestampNs not found in an Event");
}

kj::ArrayPtr<const capnp::word> EventEncoder::append(const Event& event, EventLog& log) {
  SHOP_CHECK(event.seq == log.headSeq() + 1, "event seq %llu after head %llu",
             static_cast<unsigned long long>(event.seq),
             static_cast<unsigned long long>(log.headSeq()));
  // The builder zeroes the part of scratch_ it used when it goes.
  capnp::MallocMessageBuilder builder(kj::arrayPtr(scratch_.get(), kScratchWords));
  toWire(event, builder.initRoot<wire::Event>());
  kj::ArrayPtr<capnp::word> out = log.append(capnp::computeSerializedSizeInWords(builder));
  kj::ArrayOutputStream stream(out.asBytes());
  capnp::writeMessage(stream, builder);
  SHOP_CHECK(stream.getArray().size() == out.asBytes().size(), "event framing size mismatch");
  return out;
}

void EventEncoder::preEncode(const CommandId& id, const EventBody& body, PreEncodedEvent& out) {
  out.size = 0;
  capnp::MallocMessageBuilder builder(kj::arrayPtr(scratch_.get(), kScratchWords));
  toWire(0, 0, id, body, builder.initRoot<wire::Event>());
  size_t words = capnp::computeSerializedSizeInWords(builder);
  // Only single-segment messages have seq and time where the template did.
  if (words > PreEncodedEvent::kMaxWords || builder.getSegmentsForOutput().size() != 1) return;
  kj::ArrayOutputStream stream(kj::arrayPtr(out.words.data(), words).asBytes());
  capnp::writeMessage(stream, builder);
  out.size = static_cast<uint16_t>(words);
}

kj::ArrayPtr<const capnp::word> EventEncoder::append(const PreEncodedEvent& pre,
                                                     int64_t timestampNs, EventLog& log) const {
  SHOP_CHECK(pre.size > timestampWord_ && pre.size > seqWord_, "pre-encoded event too short");
  kj::ArrayPtr<capnp::word> out = log.append(pre.size);
  std::memcpy(out.begin(), pre.words.data(), pre.size * sizeof(capnp::word));
  Seq seq = log.headSeq();
  kj::byte* bytes = out.asBytes().begin();
  std::memcpy(bytes + seqWord_ * sizeof(capnp::word), &seq, 8);
  std::memcpy(bytes + timestampWord_ * sizeof(capnp::word), &timestampNs, 8);
  return out;
}

}  // namespace shop
