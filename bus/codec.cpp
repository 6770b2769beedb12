#include "bus/codec.h"

#include <capnp/serialize.h>
#include <kj/io.h>

namespace shop::bus {
namespace {

kj::ArrayPtr<const kj::byte> bytesOf(const CommandId& id) {
  return kj::arrayPtr(id.bytes.data(), id.bytes.size());
}

std::string text(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

// Enum values from a peer may be newer than ours; map unknown ones to a
// value that still reads as a rejection.
RejectReason reasonFromWire(wire::RejectReason r) {
  auto v = static_cast<uint16_t>(r);
  return v <= static_cast<uint16_t>(RejectReason::retentionExceeded) ? static_cast<RejectReason>(v)
                                                                      : RejectReason::internalError;
}

CommandKind kindFromWire(wire::CommandKind k) {
  auto v = static_cast<uint16_t>(k);
  return v <= static_cast<uint16_t>(CommandKind::readEvents) ? static_cast<CommandKind>(v)
                                                              : CommandKind::createCustomer;
}

}  // namespace

capnp::ReaderOptions untrustedReaderOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kMaxFrameBytes / sizeof(capnp::word);
  options.nestingLimit = 8;
  return options;
}

CommandId commandIdFromWire(capnp::Data::Reader in) {
  CommandId id;
  if (in.size() != id.bytes.size()) {
    throw DecodeError("commandId must be 16 bytes, got " + std::to_string(in.size()));
  }
  std::memcpy(id.bytes.data(), in.begin(), in.size());
  return id;
}

// ---- commands ---------------------------------------------------------------

void toWire(const Command& command, wire::Command::Builder out) {
  out.setCommandId(bytesOf(command.id));
  std::visit(
      [&](const auto& c) {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, CreateCustomer>) {
          auto b = out.initCreateCustomer();
          b.setCustomer(c.customer);
          b.setInitialBalance(c.initialBalance);
        } else if constexpr (std::is_same_v<T, Deposit>) {
          auto b = out.initDeposit();
          b.setCustomer(c.customer);
          b.setAmount(c.amount);
        } else if constexpr (std::is_same_v<T, BuyProduct>) {
          auto b = out.initBuyProduct();
          b.setCustomer(c.customer);
          b.setProduct(c.product);
          b.setQuantity(c.quantity);
        } else if constexpr (std::is_same_v<T, ReturnProduct>) {
          auto b = out.initReturnProduct();
          b.setCustomer(c.customer);
          b.setProduct(c.product);
          b.setQuantity(c.quantity);
        } else if constexpr (std::is_same_v<T, AddProduct>) {
          auto b = out.initAddProduct();
          b.setProduct(c.product);
          b.setPrice(c.price);
          b.setStock(c.stock);
        } else if constexpr (std::is_same_v<T, Restock>) {
          auto b = out.initRestock();
          b.setProduct(c.product);
          b.setQuantity(c.quantity);
        } else if constexpr (std::is_same_v<T, GetCustomer>) {
          out.initGetCustomer().setCustomer(c.customer);
        } else {
          auto b = out.initReadEvents();
          b.setFromSeq(c.fromSeq);
          b.setMaxCount(c.maxCount);
        }
      },
      command.body);
}

Command fromWire(wire::Command::Reader in) {
  Command out{commandIdFromWire(in.getCommandId()), {}};
  switch (in.which()) {
    case wire::Command::CREATE_CUSTOMER: {
      auto c = in.getCreateCustomer();
      out.body = CreateCustomer{text(c.getCustomer()), c.getInitialBalance()};
      break;
    }
    case wire::Command::DEPOSIT: {
      auto c = in.getDeposit();
      out.body = Deposit{text(c.getCustomer()), c.getAmount()};
      break;
    }
    case wire::Command::BUY_PRODUCT: {
      auto c = in.getBuyProduct();
      out.body = BuyProduct{text(c.getCustomer()), text(c.getProduct()), c.getQuantity()};
      break;
    }
    case wire::Command::RETURN_PRODUCT: {
      auto c = in.getReturnProduct();
      out.body = ReturnProduct{text(c.getCustomer()), text(c.getProduct()), c.getQuantity()};
      break;
    }
    case wire::Command::ADD_PRODUCT: {
      auto c = in.getAddProduct();
      out.body = AddProduct{text(c.getProduct()), c.getPrice(), c.getStock()};
      break;
    }
    case wire::Command::RESTOCK: {
      auto c = in.getRestock();
      out.body = Restock{text(c.getProduct()), c.getQuantity()};
      break;
    }
    case wire::Command::GET_CUSTOMER:
      out.body = GetCustomer{text(in.getGetCustomer().getCustomer())};
      break;
    case wire::Command::READ_EVENTS: {
      auto c = in.getReadEvents();
      out.body = ReadEvents{c.getFromSeq(), c.getMaxCount()};
      break;
    }
    default:
      throw DecodeError("unknown command kind " + std::to_string(static_cast<int>(in.which())) +
                        " (a newer client?)");
  }
  return out;
}

DecodedCommand decodeCommandFrame(const zmq::message_t& frame) {
  DecodedCommand out;
  if (frame.size() > kMaxFrameBytes) {
    out.malformed = "frame of " + std::to_string(frame.size()) + " bytes exceeds the limit of " +
                    std::to_string(kMaxFrameBytes);
    return out;
  }
  try {
    AlignedWords words(frame);
    capnp::FlatArrayMessageReader reader(words.words(), untrustedReaderOptions());
    auto root = reader.getRoot<wire::Command>();
    // Best effort: a malformed reply still names the command when it can.
    if (root.hasCommandId() && root.getCommandId().size() == out.id.bytes.size()) {
      out.id = commandIdFromWire(root.getCommandId());
    }
    out.command = fromWire(root);
  } catch (const DecodeError& e) {
    out.malformed = e.what();
  } catch (const kj::Exception& e) {
    out.malformed = "not a valid Command message: " + std::string(e.getDescription().cStr());
  }
  return out;
}

// ---- events -----------------------------------------------------------------

void toWire(const Event& event, wire::Event::Builder out) {
  out.setSeq(event.seq);
  out.setTimestampNs(event.timestampNs);
  out.setCommandId(bytesOf(event.commandId));
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, CustomerCreated>) {
          auto b = out.initCustomerCreated();
          b.setCustomer(e.customer);
          b.setInitialBalance(e.initialBalance);
        } else if constexpr (std::is_same_v<T, FundsDeposited>) {
          auto b = out.initFundsDeposited();
          b.setCustomer(e.customer);
          b.setAmount(e.amount);
          b.setBalance(e.balance);
        } else if constexpr (std::is_same_v<T, ProductBought>) {
          auto b = out.initProductBought();
          b.setCustomer(e.customer);
          b.setProduct(e.product);
          b.setQuantity(e.quantity);
          b.setUnitPrice(e.unitPrice);
          b.setBalance(e.balance);
        } else if constexpr (std::is_same_v<T, ProductReturned>) {
          auto b = out.initProductReturned();
          b.setCustomer(e.customer);
          b.setProduct(e.product);
          b.setQuantity(e.quantity);
          b.setRefund(e.refund);
          b.setBalance(e.balance);
        } else if constexpr (std::is_same_v<T, ProductAdded>) {
          auto b = out.initProductAdded();
          b.setProduct(e.product);
          b.setPrice(e.price);
          b.setStock(e.stock);
        } else if constexpr (std::is_same_v<T, ProductRestocked>) {
          auto b = out.initProductRestocked();
          b.setProduct(e.product);
          b.setQuantity(e.quantity);
          b.setStock(e.stock);
        } else {
          auto b = out.initOperationRejected();
          b.setReason(static_cast<wire::RejectReason>(e.reason));
          b.setCommand(static_cast<wire::CommandKind>(e.command));
          b.setCustomer(e.customer);
          b.setProduct(e.product);
          b.setDetail(e.detail);
        }
      },
      event.body);
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
      out.body = OperationRejected{reasonFromWire(e.getReason()), kindFromWire(e.getCommand()),
                                   text(e.getCustomer()), text(e.getProduct()),
                                   text(e.getDetail())};
      break;
    }
    default:
      throw DecodeError("unknown event kind " + std::to_string(static_cast<int>(in.which())) +
                        " (a newer server?)");
  }
  return out;
}

// ---- replies ----------------------------------------------------------------

void toWire(const CustomerView& view, wire::CustomerView::Builder out) {
  out.setCustomer(view.customer);
  out.setBalance(view.balance);
  auto list = out.initHoldings(static_cast<unsigned>(view.holdings.size()));
  for (unsigned i = 0; i < view.holdings.size(); ++i) {
    list[i].setProduct(view.holdings[i].product);
    list[i].setQuantity(view.holdings[i].quantity);
    list[i].setPaid(view.holdings[i].paid);
  }
}

void toWire(const Reply& reply, wire::Reply::Builder out) {
  out.setCommandId(bytesOf(reply.commandId));
  switch (reply.status) {
    case ReplyStatus::accepted:
      toWire(*reply.event, out.initAccepted());
      break;
    case ReplyStatus::rejected: {
      auto r = out.initRejected();
      const OperationRejected* rejection = reply.rejection();
      r.setReason(static_cast<wire::RejectReason>(rejection->reason));
      r.setDetail(rejection->detail);
      r.setSeq(reply.event->seq);
      r.setOldestSeq(reply.oldestSeq);
      break;
    }
    case ReplyStatus::customer:
      toWire(*reply.customer, out.initCustomer());
      break;
    case ReplyStatus::events: {
      auto page = out.initEvents();
      page.setHeadSeq(reply.page.headSeq);
      auto list = page.initEvents(static_cast<unsigned>(reply.page.events.size()));
      for (unsigned i = 0; i < reply.page.events.size(); ++i) toWire(reply.page.events[i], list[i]);
      break;
    }
  }
}

ClientReply fromWire(wire::Reply::Reader in) {
  ClientReply out;
  Reply& r = out.reply;
  if (in.getCommandId().size() == r.commandId.bytes.size()) {
    r.commandId = commandIdFromWire(in.getCommandId());
  }
  switch (in.which()) {
    case wire::Reply::ACCEPTED:
      r.status = ReplyStatus::accepted;
      r.event = fromWire(in.getAccepted());
      break;
    case wire::Reply::REJECTED: {
      auto rej = in.getRejected();
      r.status = ReplyStatus::rejected;
      // The reply carries the rejection, not the whole event: rebuild the
      // parts a client needs (reason, detail, seq).
      Event e;
      e.seq = rej.getSeq();
      e.commandId = r.commandId;
      e.body = OperationRejected{reasonFromWire(rej.getReason()), CommandKind::createCustomer, {},
                                 {}, text(rej.getDetail())};
      r.event = std::move(e);
      r.oldestSeq = rej.getOldestSeq();
      break;
    }
    case wire::Reply::MALFORMED:
      out.malformed = text(in.getMalformed());
      break;
    case wire::Reply::CUSTOMER: {
      auto v = in.getCustomer();
      CustomerView view{text(v.getCustomer()), v.getBalance(), {}};
      for (auto h : v.getHoldings()) {
        view.holdings.push_back(Holding{text(h.getProduct()), h.getQuantity(), h.getPaid()});
      }
      r.status = ReplyStatus::customer;
      r.customer = std::move(view);
      break;
    }
    case wire::Reply::EVENTS: {
      auto page = in.getEvents();
      r.status = ReplyStatus::events;
      r.page.headSeq = page.getHeadSeq();
      for (auto e : page.getEvents()) r.page.events.push_back(fromWire(e));
      break;
    }
    default:
      throw DecodeError("unknown reply kind " + std::to_string(static_cast<int>(in.which())));
  }
  return out;
}

zmq::message_t toFrame(capnp::MessageBuilder& message) {
  size_t words = capnp::computeSerializedSizeInWords(message);
  zmq::message_t frame(words * sizeof(capnp::word));
  kj::ArrayOutputStream stream(
      kj::arrayPtr(static_cast<kj::byte*>(frame.data()), frame.size()));
  capnp::writeMessage(stream, message);
  return frame;
}

}  // namespace shop::bus
