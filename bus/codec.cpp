#include "bus/codec.h"

#include <capnp/serialize.h>
#include <kj/io.h>
#include <stdexcept>

#include "core/check.h"

namespace shop::bus {
namespace {

std::string text(capnp::Text::Reader t) {
  return std::string(t.cStr(), t.size());
}

}  // namespace

capnp::ReaderOptions untrustedReaderOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kMaxFrameBytes / sizeof(capnp::word);
  options.nestingLimit = 8;
  return options;
}

// ---- commands ---------------------------------------------------------------

void toWire(const Command& command, wire::Command::Builder out) {
  out.setCommandId(bytesOf(command.id));
  std::visit(
      [&](const auto& c) {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, CreateCustomer>) {
          auto b = out.initCreateCustomer();
          b.setCustomer(textOf(c.customer));
          b.setInitialBalance(c.initialBalance);
        } else if constexpr (std::is_same_v<T, Deposit>) {
          auto b = out.initDeposit();
          b.setCustomer(textOf(c.customer));
          b.setAmount(c.amount);
        } else if constexpr (std::is_same_v<T, BuyProduct>) {
          auto b = out.initBuyProduct();
          b.setCustomer(textOf(c.customer));
          b.setProduct(textOf(c.product));
          b.setQuantity(c.quantity);
        } else if constexpr (std::is_same_v<T, ReturnProduct>) {
          auto b = out.initReturnProduct();
          b.setCustomer(textOf(c.customer));
          b.setProduct(textOf(c.product));
          b.setQuantity(c.quantity);
        } else if constexpr (std::is_same_v<T, AddProduct>) {
          auto b = out.initAddProduct();
          b.setProduct(textOf(c.product));
          b.setPrice(c.price);
          b.setStock(c.stock);
        } else if constexpr (std::is_same_v<T, Restock>) {
          auto b = out.initRestock();
          b.setProduct(textOf(c.product));
          b.setQuantity(c.quantity);
        } else if constexpr (std::is_same_v<T, GetCustomer>) {
          out.initGetCustomer().setCustomer(textOf(c.customer));
        } else if constexpr (std::is_same_v<T, ReadEvents>) {
          auto b = out.initReadEvents();
          b.setFromSeq(c.fromSeq);
          b.setMaxCount(c.maxCount);
        } else if constexpr (std::is_same_v<T, GetStats>) {
          out.initGetStats();
        } else if constexpr (std::is_same_v<T, HoldProduct>) {
          auto b = out.initHoldProduct();
          b.setCustomer(textOf(c.customer));
          b.setProduct(textOf(c.product));
          b.setQuantity(c.quantity);
          b.setTtlMs(c.ttlMs);
        } else if constexpr (std::is_same_v<T, ConfirmHold>) {
          out.initConfirmHold().setHoldId(c.holdId);
        } else if constexpr (std::is_same_v<T, ReleaseHold>) {
          out.initReleaseHold().setHoldId(c.holdId);
        } else {
          static_assert(std::is_same_v<T, ExpireHold>);
          throw std::logic_error("expireHold is the engine's own: it has no wire form");
        }
      },
      command.body);
}

Command fromWire(wire::Command::Reader in) {
  return fromWire(in, commandIdFromWire(in.getCommandId()));
}

Command fromWire(wire::Command::Reader in, const CommandId& id) {
  Command out{id, {}};
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
    case wire::Command::GET_STATS:
      out.body = GetStats{};
      break;
    case wire::Command::HOLD_PRODUCT: {
      auto c = in.getHoldProduct();
      out.body = HoldProduct{.customer = text(c.getCustomer()),
                             .product = text(c.getProduct()),
                             .quantity = c.getQuantity(),
                             .ttlMs = c.getTtlMs()};
      break;
    }
    case wire::Command::CONFIRM_HOLD:
      out.body = ConfirmHold{.holdId = in.getConfirmHold().getHoldId()};
      break;
    case wire::Command::RELEASE_HOLD:
      out.body = ReleaseHold{.holdId = in.getReleaseHold().getHoldId()};
      break;
    default:
      throw DecodeError("unknown command kind " + std::to_string(static_cast<int>(in.which())) +
                        " (a newer client?)");
  }
  return out;
}

DecodedCommand decodeCommandFrame(const zmq::message_t& frame) {
  std::vector<capnp::word> scratch;
  return decodeCommandFrame(frame, scratch);
}

DecodedCommand decodeCommandFrame(const zmq::message_t& frame, std::vector<capnp::word>& scratch) {
  DecodedCommand out;
  if (frame.size() > kMaxFrameBytes) {
    out.malformed = "frame of " + std::to_string(frame.size()) + " bytes exceeds the limit of " +
                    std::to_string(kMaxFrameBytes);
    return out;
  }
  try {
    AlignedWords words(frame, &scratch);
    capnp::FlatArrayMessageReader reader(words.words(), untrustedReaderOptions());
    auto root = reader.getRoot<wire::Command>();
    // Read once; kept even when the rest is malformed, so that the reply
    // still names the command.
    out.id = commandIdFromWire(root.getCommandId());
    out.command = fromWire(root, out.id);
  } catch (const DecodeError& e) {
    out.malformed = e.what();
  } catch (const kj::Exception& e) {
    out.malformed = "not a valid Command message: " + std::string(e.getDescription().cStr());
  }
  return out;
}

// ---- replies ----------------------------------------------------------------

void toWire(const CustomerView& view, wire::CustomerView::Builder out) {
  out.setCustomer(textOf(view.customer));
  out.setBalance(view.balance);
  auto list = out.initHoldings(static_cast<unsigned>(view.holdings.size()));
  for (unsigned i = 0; i < view.holdings.size(); ++i) {
    list[i].setProduct(textOf(view.holdings[i].product));
    list[i].setQuantity(view.holdings[i].quantity);
    list[i].setPaid(view.holdings[i].paid);
  }
  auto holds = out.initHolds(static_cast<unsigned>(view.holds.size()));
  for (unsigned i = 0; i < view.holds.size(); ++i) {
    const HoldView& h = view.holds[i];
    holds[i].setHoldId(h.holdId);
    holds[i].setProduct(textOf(h.product));
    holds[i].setQuantity(h.quantity);
    holds[i].setUnitPrice(h.unitPrice);
    holds[i].setExpiresAtNs(h.expiresAtNs);
  }
}

void toWire(const Reply& reply, wire::Reply::Builder out) {
  out.setCommandId(bytesOf(reply.commandId));
  switch (reply.status) {
    case ReplyStatus::accepted:
      toWire(*reply.event, out.initAccepted());
      break;
    case ReplyStatus::rejected: {
      // The same fields as the engine's reply: one encoder for them.
      const OperationRejected* rejection = reply.rejection();
      toWire(ReplyView{.commandId = reply.commandId,
                       .status = ReplyStatus::rejected,
                       .reason = rejection->reason,
                       .detail = rejection->detail,
                       .seq = reply.event->seq,
                       .oldestSeq = reply.oldestSeq},
             out);
      break;
    }
    case ReplyStatus::customer:
      toWire(*reply.customer, out.initCustomer());
      break;
    case ReplyStatus::events: {
      auto page = out.initEvents();
      page.setHeadSeq(reply.page.headSeq);
      page.setCapped(reply.page.capped);
      page.setServerId(reply.page.serverId);
      // `skipped` has no wire form: those events could not be read to begin with.
      auto list = page.initEvents(static_cast<unsigned>(reply.page.events.size()));
      for (unsigned i = 0; i < reply.page.events.size(); ++i) toWire(reply.page.events[i], list[i]);
      break;
    }
    case ReplyStatus::retired:
      toWire(ReplyView{.commandId = reply.commandId,
                       .status = ReplyStatus::retired,
                       .seq = reply.seq,
                       .oldestSeq = reply.oldestSeq},
             out);
      break;
    case ReplyStatus::stats:
      toWire(*reply.stats, out.initStats());
      break;
  }
}

namespace {
// Reads one message of the event log: trusted, aligned, standard framing.
wire::Event::Reader logged(capnp::FlatArrayMessageReader& reader) {
  return reader.getRoot<wire::Event>();
}
}  // namespace

void toWire(const ReplyView& reply, wire::Reply::Builder out) {
  out.setCommandId(bytesOf(reply.commandId));
  switch (reply.status) {
    case ReplyStatus::accepted: {
      // The event's encoded struct is copied as it is: it is never re-encoded.
      capnp::FlatArrayMessageReader reader(reply.event);
      out.setAccepted(logged(reader));
      break;
    }
    case ReplyStatus::rejected: {
      auto r = out.initRejected();
      r.setReason(static_cast<wire::RejectReason>(reply.reason));
      r.setDetail(capnp::Text::Reader(reply.detail.data(), reply.detail.size()));
      r.setSeq(reply.seq);
      r.setOldestSeq(reply.oldestSeq);
      break;
    }
    case ReplyStatus::customer:
      toWire(*reply.customer, out.initCustomer());
      break;
    case ReplyStatus::events: {
      auto page = out.initEvents();
      page.setHeadSeq(reply.headSeq);
      page.setCapped(reply.capped);
      page.setServerId(reply.serverId);
      auto list = page.initEvents(static_cast<unsigned>(reply.count));
      for (unsigned i = 0; i < reply.count; ++i) {
        capnp::FlatArrayMessageReader reader(pageEvent(reply, i));
        list.setWithCaveats(i, logged(reader));
      }
      break;
    }
    case ReplyStatus::retired: {
      auto r = out.initRetired();
      r.setSeq(reply.seq);
      r.setOldestSeq(reply.oldestSeq);
      break;
    }
    case ReplyStatus::stats:
      toWire(*reply.stats, out.initStats());
      break;
  }
}

void toWire(const ShopStats& stats, wire::ShopStats::Builder out) {
  out.setVersion(stats.version);
  out.setServerId(stats.serverId);
  out.setUptimeMs(stats.uptimeMs);
  out.setHeadSeq(stats.headSeq);
  out.setCustomers(stats.customers);
  out.setProducts(stats.products);
  out.setInFlight(stats.inFlight);
  out.setCommandsPerSecond(stats.commandsPerSecond);
  auto list = out.initRejections(static_cast<unsigned>(stats.rejections.size()));
  for (unsigned i = 0; i < stats.rejections.size(); ++i) {
    list[i].setReason(static_cast<wire::RejectReason>(stats.rejections[i].first));
    list[i].setCount(stats.rejections[i].second);
  }
  out.setDedupeSize(stats.dedupeSize);
  out.setDedupeCapacity(stats.dedupeCapacity);
  out.setLogSize(stats.logSize);
  out.setLogCapacity(stats.logCapacity);
  out.setRssBytes(stats.rssBytes);
  out.setLiveHolds(stats.liveHolds);
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
      e.body = OperationRejected{reasonFromWire(rej.getReason()),
                                 CommandKind::createCustomer,
                                 {},
                                 {},
                                 text(rej.getDetail())};
      r.event = std::move(e);
      r.oldestSeq = rej.getOldestSeq();
      break;
    }
    case wire::Reply::MALFORMED:
      out.malformed = text(in.getMalformed());
      break;
    case wire::Reply::CUSTOMER: {
      auto v = in.getCustomer();
      CustomerView view{text(v.getCustomer()), v.getBalance(), {}, {}};
      for (auto h : v.getHoldings()) {
        view.holdings.push_back(Holding{text(h.getProduct()), h.getQuantity(), h.getPaid()});
      }
      for (auto h : v.getHolds()) {
        view.holds.push_back(HoldView{h.getHoldId(), text(h.getProduct()), h.getQuantity(),
                                      h.getUnitPrice(), h.getExpiresAtNs()});
      }
      r.status = ReplyStatus::customer;
      r.customer = std::move(view);
      break;
    }
    case wire::Reply::RETIRED: {
      auto retired = in.getRetired();
      r.status = ReplyStatus::retired;
      r.seq = retired.getSeq();
      r.oldestSeq = retired.getOldestSeq();
      break;
    }
    case wire::Reply::STATS: {
      auto s = in.getStats();
      ShopStats stats{.version = text(s.getVersion()),
                      .serverId = s.getServerId(),
                      .uptimeMs = s.getUptimeMs(),
                      .headSeq = s.getHeadSeq(),
                      .customers = s.getCustomers(),
                      .products = s.getProducts(),
                      .inFlight = s.getInFlight(),
                      .commandsPerSecond = s.getCommandsPerSecond(),
                      .rejections = {},
                      .dedupeSize = s.getDedupeSize(),
                      .dedupeCapacity = s.getDedupeCapacity(),
                      .logSize = s.getLogSize(),
                      .logCapacity = s.getLogCapacity(),
                      .rssBytes = s.getRssBytes(),
                      .liveHolds = s.getLiveHolds()};
      for (auto c : s.getRejections()) {
        stats.rejections.emplace_back(reasonFromWire(c.getReason()), c.getCount());
      }
      r.status = ReplyStatus::stats;
      r.stats = std::move(stats);
      break;
    }
    case wire::Reply::EVENTS: {
      auto page = in.getEvents();
      r.status = ReplyStatus::events;
      r.page.headSeq = page.getHeadSeq();
      r.page.capped = page.getCapped();
      r.page.serverId = page.getServerId();
      // Event by event: one that cannot be decoded (a newer server's event
      // kind, a broken struct) costs only itself, not the page. Its seq is in
      // the list element's data section, so it can always be named.
      for (auto e : page.getEvents()) {
        try {
          r.page.events.push_back(fromWire(e));
        } catch (const DecodeError& error) {
          r.page.skipped.push_back({e.getSeq(), error.what()});
        } catch (const kj::Exception& error) {
          r.page.skipped.push_back(
              {e.getSeq(), "not a valid Event: " + std::string(error.getDescription().cStr())});
        }
      }
      break;
    }
    default:
      throw DecodeError("unknown reply kind " + std::to_string(static_cast<int>(in.which())));
  }
  return out;
}

zmq::message_t toFrame(kj::ArrayPtr<const capnp::word> message) {
  return zmq::message_t(message.begin(), message.size() * sizeof(capnp::word));
}

namespace {
// Reads a pointer word (little-endian, as on the wire).
uint64_t wordAt(kj::ArrayPtr<const capnp::word> words, size_t i) {
  uint64_t w;
  std::memcpy(&w, words.begin() + i, 8);
  return w;
}
// The word a struct or list pointer at `at` points to.
size_t target(uint64_t pointer, size_t at) {
  int32_t offset = static_cast<int32_t>(static_cast<uint32_t>(pointer)) >> 2;
  return at + 1 + static_cast<size_t>(static_cast<int64_t>(offset));
}
}  // namespace

ReplyEncoder::ReplyEncoder() : scratch_(new capnp::word[kScratchWords]()) {
  // Let capnp lay out an accepted Reply once, then keep everything before
  // the event struct as the header. The layout is checked, not assumed.
  capnp::MallocMessageBuilder builder;
  auto reply = builder.initRoot<wire::Reply>();
  uint8_t zeros[16] = {};
  reply.setCommandId(kj::arrayPtr(zeros, 16));
  reply.initAccepted();
  auto segments = builder.getSegmentsForOutput();
  SHOP_CHECK(segments.size() == 1, "template reply has %zu segments", segments.size());
  kj::ArrayPtr<const capnp::word> words = segments[0];
  uint64_t root = wordAt(words, 0);
  size_t structAt = target(root, 0);
  size_t dataWords = (root >> 32) & 0xFFFF;
  size_t pointers = root >> 48;
  SHOP_CHECK((root & 3) == 0 && pointers == 2, "unexpected Reply layout");
  size_t pointerSection = structAt + dataWords;
  commandIdWord_ = target(wordAt(words, pointerSection), pointerSection);
  acceptedWord_ = pointerSection + 1;
  size_t eventAt = target(wordAt(words, acceptedWord_), acceptedWord_);
  SHOP_CHECK(commandIdWord_ + 2 == eventAt && eventAt + 3 <= words.size(),
             "unexpected Reply layout: commandId at %zu, event at %zu", commandIdWord_, eventAt);
  header_.assign(words.begin(), words.begin() + eventAt);
}

bool ReplyEncoder::acceptedFrame(const ReplyView& reply, zmq::message_t& out) const {
  uint32_t table[2];
  std::memcpy(table, reply.event.begin(), sizeof table);
  if (table[0] != 0 || table[1] + 1 != reply.event.size()) return false;  // not one segment
  uint32_t eventWords = table[1];
  size_t headerWords = header_.size();
  out.rebuild((2 + headerWords + eventWords) * sizeof(capnp::word));
  constexpr size_t kWord = sizeof(capnp::word);
  auto* frame = static_cast<kj::byte*>(out.data());
  uint32_t newTable[4] = {1, static_cast<uint32_t>(headerWords), eventWords, 0};  // 2 segments
  std::memcpy(frame, newTable, sizeof newTable);
  kj::byte* segment0 = frame + 2 * kWord;
  std::memcpy(segment0, header_.data(), headerWords * kWord);
  std::memcpy(segment0 + commandIdWord_ * kWord, reply.commandId.bytes.data(), 16);
  // A single-far pointer: segment 1, word 0, which is the event message's
  // own root pointer and so a valid landing pad.
  uint64_t far = (uint64_t{1} << 32) | 2;
  std::memcpy(segment0 + acceptedWord_ * kWord, &far, 8);
  std::memcpy(segment0 + headerWords * kWord, reply.event.begin() + 1, eventWords * kWord);
  return true;
}

zmq::message_t ReplyEncoder::encode(const ReplyView& reply) {
  if (reply.status == ReplyStatus::accepted) {
    zmq::message_t frame;
    if (acceptedFrame(reply, frame)) return frame;
  }
  if (reply.status == ReplyStatus::events) {
    // A page: one segment sized for its events, so the copy never spills.
    size_t words = 64;
    for (size_t i = 0; i < reply.count; ++i) words += pageEvent(reply, i).size() + 8;
    capnp::MallocMessageBuilder builder(static_cast<unsigned>(words));
    toWire(reply, builder.initRoot<wire::Reply>());
    return toFrame(builder);
  }
  capnp::MallocMessageBuilder builder(kj::arrayPtr(scratch_.get(), kScratchWords));
  toWire(reply, builder.initRoot<wire::Reply>());
  return toFrame(builder);
}

zmq::message_t ReplyEncoder::malformed(const CommandId& id, std::string_view why) {
  capnp::MallocMessageBuilder builder(kj::arrayPtr(scratch_.get(), kScratchWords));
  auto reply = builder.initRoot<wire::Reply>();
  reply.setCommandId(bytesOf(id));
  reply.setMalformed(capnp::Text::Reader(why.data(), why.size()));
  return toFrame(builder);
}

zmq::message_t toFrame(capnp::MessageBuilder& message) {
  size_t words = capnp::computeSerializedSizeInWords(message);
  zmq::message_t frame(words * sizeof(capnp::word));
  kj::ArrayOutputStream stream(kj::arrayPtr(static_cast<kj::byte*>(frame.data()), frame.size()));
  capnp::writeMessage(stream, message);
  return frame;
}

}  // namespace shop::bus
