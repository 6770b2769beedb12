// libFuzzer target: untrusted command frames, as a client sends them, through
// the server's decoders (bus::decodeCommandFrame, and bus::JsonWire for a
// frame that starts with '{') into a live in-process Engine.
//
// An input is one frame, or several joined by kFrameSeparator (fuzz/harness.h),
// so that one input can create a customer, fund it and buy. Each frame is
// decoded as bus::Server decodes it; a malformed one is answered as the
// server answers it. A command is submitted three times: twice at once (the
// second is a retry while the first is in flight) and once after its reply
// (a retry the dedupe window answers). Every reply is encoded as the server
// encodes it and decoded as a client decodes it.
//
// Invariants (FUZZ_EXPECT; a failure aborts, which libFuzzer reports):
//  - decoding does not depend on the frame's alignment, and a decoded command
//    survives a trip back through the wire;
//  - every submission gets exactly one reply, carrying its commandId, and a
//    retry gets the original's outcome; nothing stays in flight or pending;
//  - no field-valid command fails validation, and no invalid one passes;
//  - a fresh mutation publishes exactly one event, a retry or a query none;
//    seqs are gap-free and each event decodes back to itself;
//  - no balance, stock, price or quantity in an event, a view or the state
//    folded from the events is negative, and no step ends in internalError;
//  - GetCustomer agrees with the fold of the published events, and so does
//    the engine's whole state (Engine::snapshot) every 1024 frames;
//  - a ReadEvents page is the contiguous run of retained seqs it asked for.
//
// One Engine serves the whole run: starting shard threads per input would
// cost more than the input. So state carries over from one input to the
// next; the replay executable feeds the corpus in name order, and a
// reproducer that needs earlier state says it in its own frames.
#include <capnp/message.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bus/codec.h"
#include "bus/json.h"
#include "core/engine.h"
#include "core/validation.h"
#include "fuzz/harness.h"

namespace shop::fuzz {
namespace {

// The engine's whole state is compared with the fold of its events on these
// frame counts: powers of two up to this, then every multiple of it.
constexpr uint64_t kSnapshotEvery = 1024;
// A reply that takes longer than this is a hang (libFuzzer's -timeout is 10 s).
constexpr auto kReplyDeadline = std::chrono::seconds(5);
// The harness's own commandIds have this high half (fixtures, GetCustomer).
constexpr uint64_t kHarnessIds = 0x66757a7a'68617273;  // "fuzzhars"

// Small limits, so that the run reaches the paths behind them: retention and
// the dedupe window evict, pages stop at their count and byte caps, and a
// retry of an evicted event is answered `retired`.
EngineConfig fuzzConfig() {
  return EngineConfig{.shards = 2,
                      .maxPending = 5,
                      .retention = 1024,
                      .dedupeWindow = 2048,
                      .readPageLimit = 256,
                      .maxInFlight = 1024,
                      .readPageBytes = 16 * 1024,
                      // Time stands still: no hold expires behind an input's back,
                      // so each command publishes exactly what it alone causes.
                      .clock = [] { return int64_t{1'800'000'000'000'000'000}; }};
}

// The catalog and customers every run starts with (the seed corpus names them).
const AddProduct kProducts[] = {{"apple", 150, 1000}, {"banana", 45, 1000}, {"tv", 49900, 5}};
const CreateCustomer kCustomers[] = {{"alice", 100'000}, {"bob", 0}};

bool isQuery(CommandKind kind) {
  return kind == CommandKind::getCustomer || kind == CommandKind::readEvents ||
         kind == CommandKind::getStats;
}

std::string hexOf(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes.substr(0, 64)) {
    out += kDigits[c >> 4];
    out += kDigits[c & 0xF];
  }
  if (bytes.size() > 64) out += "...";
  return out;
}

// The command's frame, for comparing commands (Command has no operator==).
std::string wireBytes(const Command& command) {
  capnp::MallocMessageBuilder message;
  bus::toWire(command, message.initRoot<wire::Command>());
  zmq::message_t frame = bus::toFrame(message);
  return std::string(frame.data<char>(), frame.size());
}

bool sameEvent(const Event& a, const Event& b) {
  return a.seq == b.seq && a.timestampNs == b.timestampNs && a.commandId == b.commandId &&
         a.body == b.body;
}

// Fields that the event's kind requires to be positive or non-negative.
void expectSane(const Event& e) {
  const EventBody& body = e.body;
  if (auto* c = std::get_if<CustomerCreated>(&body)) {
    FUZZ_EXPECT(c->initialBalance >= 0, "seq %" PRIu64, e.seq);
  } else if (auto* d = std::get_if<FundsDeposited>(&body)) {
    FUZZ_EXPECT(d->amount > 0 && d->balance >= 0, "seq %" PRIu64, e.seq);
  } else if (auto* b = std::get_if<ProductBought>(&body)) {
    FUZZ_EXPECT(b->quantity > 0 && b->unitPrice > 0 && b->balance >= 0, "seq %" PRIu64, e.seq);
  } else if (auto* r = std::get_if<ProductReturned>(&body)) {
    FUZZ_EXPECT(r->quantity > 0 && r->refund >= 0 && r->balance >= 0, "seq %" PRIu64, e.seq);
  } else if (auto* a = std::get_if<ProductAdded>(&body)) {
    FUZZ_EXPECT(a->price > 0 && a->stock >= 0, "seq %" PRIu64, e.seq);
  } else if (auto* s = std::get_if<ProductRestocked>(&body)) {
    FUZZ_EXPECT(s->quantity > 0 && s->stock >= 0, "seq %" PRIu64, e.seq);
  } else if (auto* o = std::get_if<OperationRejected>(&body)) {
    FUZZ_EXPECT(o->reason != RejectReason::internalError, "seq %" PRIu64 ": %s", e.seq,
                o->detail.c_str());
  } else if (auto* h = std::get_if<ProductHeld>(&body)) {
    FUZZ_EXPECT(h->holdId != 0 && h->quantity > 0 && h->unitPrice > 0, "seq %" PRIu64, e.seq);
  } else if (auto* c = std::get_if<HoldConfirmed>(&body)) {
    FUZZ_EXPECT(c->quantity > 0 && c->unitPrice > 0 && c->balance >= 0, "seq %" PRIu64, e.seq);
  }
}

void expectSane(const Customer& c, std::string_view id) {
  FUZZ_EXPECT(c.balance >= 0, "customer %s", hexOf(id).c_str());
  for (const auto& h : c.holdings) {
    FUZZ_EXPECT(!h.lots.empty(), "customer %s", hexOf(id).c_str());
    for (const auto& lot : h.lots) {
      FUZZ_EXPECT(lot.quantity > 0 && lot.unitPrice > 0, "customer %s", hexOf(id).c_str());
    }
  }
  for (const auto& h : c.holds) {
    FUZZ_EXPECT(h.quantity > 0 && h.unitPrice > 0, "customer %s", hexOf(id).c_str());
  }
}

void expectSane(const Product& p, std::string_view id) {
  FUZZ_EXPECT(p.stock >= 0 && p.held >= 0 && p.price > 0, "product %s", hexOf(id).c_str());
}

// The engine's sinks: replies as a client decodes them, events as a
// subscriber folds them. Owned by the fuzzing thread (the engine's ingress).
class Recorder final : public EventSink, public ReplySink {
 public:
  void append(const PublishedEvent& entry) override {
    const Event& e = entry.event;
    FUZZ_EXPECT(e.seq == lastSeq_ + 1, "seq %" PRIu64 " after %" PRIu64, e.seq, lastSeq_);
    lastSeq_ = e.seq;
    FUZZ_EXPECT(sameEvent(decodeEvent(entry.message), e), "seq %" PRIu64, e.seq);
    expectSane(e);
    apply(folded, e);
    if (auto c = folded.customers.find(e.customer()); c != folded.customers.end()) {
      expectSane(c->second, c->first);
    }
    if (auto p = folded.products.find(e.product()); p != folded.products.end()) {
      expectSane(p->second, p->first);
    }
    ++published;
  }
  void commit() override {}

  void reply(uint64_t tag, const ReplyView& view) override {
    Reply direct = toReply(view);
    zmq::message_t frame = encoder_.encode(view);
    bus::ClientReply decoded;
    try {
      decoded = bus::readFrame<wire::Reply>(frame, [](auto r) { return bus::fromWire(r); });
    } catch (const DecodeError& e) {
      FUZZ_EXPECT(false, "the reply frame for tag %" PRIu64 " does not decode: %s", tag, e.what());
    } catch (const kj::Exception& e) {
      FUZZ_EXPECT(false, "the reply frame for tag %" PRIu64 " does not decode: %s", tag,
                  e.getDescription().cStr());
    }
    FUZZ_EXPECT(!decoded.malformed, "tag %" PRIu64, tag);
    expectSameOnWire(direct, decoded.reply);
    replies[tag].push_back(std::move(decoded.reply));
  }

  // Replies by tag since the last clear; more than one per tag is a bug.
  std::map<uint64_t, std::vector<Reply>> replies;
  // The fold of every event published, as a subscriber rebuilds the shop.
  ShopState folded;
  size_t published = 0;

 private:
  // What the client decodes is what the engine replied.
  static void expectSameOnWire(const Reply& direct, const Reply& sent) {
    FUZZ_EXPECT(sent.commandId == direct.commandId && sent.status == direct.status, "status %d",
                static_cast<int>(direct.status));
    switch (direct.status) {
      case ReplyStatus::accepted:
        FUZZ_EXPECT(direct.event && sent.event && sameEvent(*direct.event, *sent.event),
                    "accepted");
        break;
      case ReplyStatus::rejected: {
        const OperationRejected* a = direct.rejection();
        const OperationRejected* b = sent.rejection();
        FUZZ_EXPECT(a && b && a->reason == b->reason && a->detail == b->detail &&
                        direct.event->seq == sent.event->seq && direct.oldestSeq == sent.oldestSeq,
                    "rejected");
        break;
      }
      case ReplyStatus::customer:
        FUZZ_EXPECT(direct.customer && sent.customer && *direct.customer == *sent.customer,
                    "customer");
        break;
      case ReplyStatus::events: {
        const EventPage& a = direct.page;
        const EventPage& b = sent.page;
        FUZZ_EXPECT(
            a.headSeq == b.headSeq && a.capped == b.capped && a.events.size() == b.events.size(),
            "page");
        for (size_t i = 0; i < a.events.size(); ++i) {
          FUZZ_EXPECT(sameEvent(a.events[i], b.events[i]), "page event %zu", i);
        }
        break;
      }
      case ReplyStatus::retired:
        FUZZ_EXPECT(direct.seq == sent.seq && direct.oldestSeq == sent.oldestSeq, "retired");
        break;
      case ReplyStatus::stats:
        FUZZ_EXPECT(direct.stats && sent.stats && *direct.stats == *sent.stats, "stats");
        break;
    }
  }

  bus::ReplyEncoder encoder_;
  Seq lastSeq_ = 0;
};

// Two replies to the same command are the same outcome.
bool sameOutcome(const Reply& a, const Reply& b) {
  if (a.commandId != b.commandId || a.status != b.status) return false;
  switch (a.status) {
    case ReplyStatus::accepted:
      return sameEvent(*a.event, *b.event);
    case ReplyStatus::rejected:
      return a.rejection()->reason == b.rejection()->reason &&
             a.rejection()->detail == b.rejection()->detail && a.event->seq == b.event->seq &&
             a.oldestSeq == b.oldestSeq;
    case ReplyStatus::customer:
      return *a.customer == *b.customer;
    case ReplyStatus::events:
      if (a.page.headSeq != b.page.headSeq || a.page.events.size() != b.page.events.size()) {
        return false;
      }
      for (size_t i = 0; i < a.page.events.size(); ++i) {
        if (!sameEvent(a.page.events[i], b.page.events[i])) return false;
      }
      return a.page.capped == b.page.capped;
    case ReplyStatus::retired:
      return a.seq == b.seq && a.oldestSeq == b.oldestSeq;
    case ReplyStatus::stats:  // a query: answered afresh each time
      return a.stats && b.stats && a.stats->serverId == b.stats->serverId;
  }
  return false;
}

// Owned by the fuzzing thread, which is the engine's ingress thread.
class CommandFuzzer {
 public:
  CommandFuzzer() : engine_(fuzzConfig(), recorder_, recorder_) {
    for (const auto& p : kProducts) {
      FUZZ_EXPECT(submitOne(p).status == ReplyStatus::accepted, "fixture %s", p.product.c_str());
    }
    for (const auto& c : kCustomers) {
      FUZZ_EXPECT(submitOne(c).status == ReplyStatus::accepted, "fixture %s", c.customer.c_str());
    }
  }

  void run(std::string_view input) {
    for (size_t n = 0; n < kMaxFramesPerInput; ++n) {
      size_t end = input.find(kFrameSeparator);
      runFrame(input.substr(0, end));
      if (end == std::string_view::npos) break;
      input.remove_prefix(end + kFrameSeparator.size());
    }
  }

 private:
  void runFrame(std::string_view bytes) {
    bus::DecodedCommand decoded = decode(bytes);
    if (!decoded.command) {
      expectMalformedReply(decoded);
    } else {
      std::string bytesOut = wireBytes(*decoded.command);
      zmq::message_t again(bytesOut.data(), bytesOut.size());
      bus::DecodedCommand redecoded = bus::decodeCommandFrame(again, scratch_);
      FUZZ_EXPECT(redecoded.command && wireBytes(*redecoded.command) == bytesOut,
                  "a decoded command does not survive the wire: %s", hexOf(bytesOut).c_str());
      submitThrice(*decoded.command);
    }
    ++frames_;
    if (frames_ % kSnapshotEvery == 0 || (frames_ & (frames_ - 1)) == 0) {
      FUZZ_EXPECT(engine_.snapshot() == recorder_.folded,
                  "live state differs from the fold of the events after %" PRIu64 " frames",
                  frames_);
    }
  }

  // Decodes from an aligned and from an unaligned buffer (the server meets
  // both), and expects the same answer.
  bus::DecodedCommand decode(std::string_view bytes) {
    if (bus::isJsonFrame(bytes)) return decodeJson(bytes);
    aligned_.assign(bytes.size() / sizeof(uint64_t) + 1, 0);
    std::memcpy(aligned_.data(), bytes.data(), bytes.size());
    // Borrowed buffers (no free function): they outlive the messages.
    zmq::message_t atWord(aligned_.data(), bytes.size(), nullptr, nullptr);
    bus::DecodedCommand a = bus::decodeCommandFrame(atWord, scratch_);
    unaligned_.assign(bytes.size() + 1, 0);
    std::memcpy(unaligned_.data() + 1, bytes.data(), bytes.size());
    zmq::message_t atOdd(unaligned_.data() + 1, bytes.size(), nullptr, nullptr);
    bus::DecodedCommand b = bus::decodeCommandFrame(atOdd, scratch_);
    FUZZ_EXPECT(a.command.has_value() == b.command.has_value() && a.malformed == b.malformed &&
                    a.id == b.id && (!a.command || wireBytes(*a.command) == wireBytes(*b.command)),
                "alignment changes the decoding of %s", hexOf(bytes).c_str());
    FUZZ_EXPECT(a.command.has_value() != !a.malformed.empty(), "decoded and malformed: '%s'",
                a.malformed.c_str());
    return a;
  }

  // A JSON frame, as the server decodes one; a decoded command prints back
  // to JSON that decodes to the same command.
  bus::DecodedCommand decodeJson(std::string_view bytes) {
    bus::DecodedCommand a = json_.decodeCommand(bytes);
    FUZZ_EXPECT(a.command.has_value() != !a.malformed.empty(), "decoded and malformed: '%s'",
                a.malformed.c_str());
    if (a.command) {
      std::string text = json_.commandText(*a.command);
      bus::DecodedCommand b = json_.decodeCommand(text);
      FUZZ_EXPECT(b.command && b.id == a.id && wireBytes(*b.command) == wireBytes(*a.command),
                  "a JSON command does not survive printing: %s", text.c_str());
    }
    return a;
  }

  // The server's `malformed` reply reaches the client whole.
  void expectMalformedReply(const bus::DecodedCommand& decoded) {
    zmq::message_t frame = malformedEncoder_.malformed(decoded.id, decoded.malformed);
    bus::ClientReply reply =
        bus::readFrame<wire::Reply>(frame, [](auto r) { return bus::fromWire(r); });
    FUZZ_EXPECT(reply.malformed && *reply.malformed == decoded.malformed &&
                    reply.reply.commandId == decoded.id,
                "malformed reply '%s'", decoded.malformed.c_str());
  }

  void submitThrice(const Command& command) {
    const CommandKind kind = command.kind();
    const bool query = isQuery(kind);
    const DedupeWindow::Hit seen = engine_.dedupe().find(command.id);
    FUZZ_EXPECT(seen.kind != DedupeWindow::Hit::Kind::inFlight, "in flight between inputs");
    const bool fresh = query || seen.kind == DedupeWindow::Hit::Kind::absent;
    const std::optional<Rejection> invalid = validate(command);
    const size_t publishedBefore = recorder_.published;

    const uint64_t tags[3] = {nextTag_, nextTag_ + 1, nextTag_ + 2};
    nextTag_ += 3;
    engine_.submit(Command(command), tags[0]);
    engine_.submit(Command(command), tags[1]);  // a retry while the first is in flight
    await(tags[0]);
    await(tags[1]);
    engine_.submit(Command(command), tags[2]);  // a retry after the reply
    await(tags[2]);
    expectIdle();

    FUZZ_EXPECT(recorder_.replies.size() == 3, "%zu tags answered, 3 submitted",
                recorder_.replies.size());
    for (uint64_t tag : tags) {
      FUZZ_EXPECT(recorder_.replies[tag].size() == 1, "tag %" PRIu64 " answered %zu times", tag,
                  recorder_.replies[tag].size());
    }
    const Reply first = recorder_.replies[tags[0]].front();
    for (uint64_t tag : tags) {
      FUZZ_EXPECT(sameOutcome(first, recorder_.replies[tag].front()),
                  "a retry of %s got another outcome", std::string(name(kind)).c_str());
    }
    recorder_.replies.clear();
    FUZZ_EXPECT(first.commandId == command.id, "reply to another commandId");

    const size_t published = recorder_.published - publishedBefore;
    FUZZ_EXPECT(published == (fresh && !query ? 1u : 0u), "%s published %zu events",
                std::string(name(kind)).c_str(), published);
    if (const OperationRejected* r = first.rejection()) {
      FUZZ_EXPECT(r->reason != RejectReason::internalError &&
                      r->reason != RejectReason::tooManyPending &&
                      r->reason != RejectReason::overloaded,
                  "%s: %s", std::string(name(r->reason)).c_str(), r->detail.c_str());
      FUZZ_EXPECT((first.event->seq == 0) == query, "rejection seq %" PRIu64, first.event->seq);
    }
    if (fresh && kind != CommandKind::readEvents) {
      // Validation decides alone whether a command's fields are acceptable.
      const OperationRejected* r = first.rejection();
      if (invalid) {
        FUZZ_EXPECT(r && r->reason == invalid->reason, "%s passed with '%s'",
                    std::string(name(kind)).c_str(), invalid->detail.c_str());
      } else {
        FUZZ_EXPECT(!r || (r->reason != RejectReason::invalidId &&
                           r->reason != RejectReason::invalidAmount &&
                           r->reason != RejectReason::invalidQuantity),
                    "valid %s rejected: %s", std::string(name(kind)).c_str(), r->detail.c_str());
      }
    }
    if (fresh && !query && first.status == ReplyStatus::accepted) {
      FUZZ_EXPECT(first.event->seq == engine_.log().headSeq(), "seq %" PRIu64, first.event->seq);
    }

    if (auto* read = std::get_if<ReadEvents>(&command.body)) {
      expectPage(*read, first);
    } else if (!command.customer().empty() && !checkId(command.customer())) {
      expectCustomerAsFolded(std::string(command.customer()), query ? &first : nullptr);
    }
  }

  // GetCustomer (or `answer`, a GetCustomer's reply) shows the fold of the events.
  void expectCustomerAsFolded(const std::string& customer, const Reply* answer) {
    Reply fetched;
    if (!answer) {
      fetched = submitOne(GetCustomer{customer});
      answer = &fetched;
    }
    auto it = recorder_.folded.customers.find(customer);
    if (it == recorder_.folded.customers.end()) {
      FUZZ_EXPECT(
          answer->rejection() && answer->rejection()->reason == RejectReason::unknownCustomer,
          "customer %s is in no event", hexOf(customer).c_str());
      return;
    }
    FUZZ_EXPECT(answer->status == ReplyStatus::customer && answer->customer, "customer %s",
                hexOf(customer).c_str());
    const CustomerView& view = *answer->customer;
    FUZZ_EXPECT(view.balance >= 0, "balance %" PRId64, view.balance);
    for (const auto& h : view.holdings) {
      FUZZ_EXPECT(h.quantity > 0 && h.paid > 0, "%s holds %" PRId64 " paid %" PRId64,
                  hexOf(h.product).c_str(), h.quantity, h.paid);
    }
    FUZZ_EXPECT(view == it->second.view(customer),
                "GetCustomer %s differs from the fold of the events", hexOf(customer).c_str());
  }

  // A page is the retained run of seqs it asked for, within its limits.
  void expectPage(const ReadEvents& read, const Reply& reply) {
    const EventLog& log = engine_.log();
    const Seq oldest = log.oldestSeq();
    const Seq head = log.headSeq();
    if (reply.status == ReplyStatus::rejected) {
      FUZZ_EXPECT(reply.rejection()->reason == RejectReason::retentionExceeded &&
                      read.fromSeq != 0 && read.fromSeq < oldest && reply.oldestSeq == oldest,
                  "ReadEvents from %" PRIu64 " rejected", read.fromSeq);
      return;
    }
    FUZZ_EXPECT(reply.status == ReplyStatus::events && reply.page.headSeq == head, "page head");
    const Seq first = std::max(read.fromSeq, oldest);
    uint64_t limit = engine_.config().readPageLimit;
    if (read.maxCount != 0) limit = std::min<uint64_t>(limit, read.maxCount);
    const uint64_t available = first > head ? 0 : head - first + 1;
    const auto& events = reply.page.events;
    const uint64_t expected = std::min(limit, available);
    FUZZ_EXPECT(
        reply.page.capped ? events.size() < expected && !events.empty() : events.size() == expected,
        "page of %zu events from %" PRIu64 ", %" PRIu64 " expected", events.size(), read.fromSeq,
        expected);
    for (size_t i = 0; i < events.size(); ++i) {
      FUZZ_EXPECT(events[i].seq == first + i, "page seq %" PRIu64 " at %zu", events[i].seq, i);
    }
  }

  // Submits one command of the harness's own and returns its only reply.
  Reply submitOne(CommandBody body) {
    const uint64_t tag = nextTag_++;
    engine_.submit(Command{CommandId::fromNumber(kHarnessIds, nextHarnessId_++), std::move(body)},
                   tag);
    await(tag);
    expectIdle();
    FUZZ_EXPECT(recorder_.replies.size() == 1 && recorder_.replies[tag].size() == 1,
                "one submission, %zu tags answered", recorder_.replies.size());
    Reply reply = std::move(recorder_.replies[tag].front());
    recorder_.replies.clear();
    return reply;
  }

  // Waits for `tag`'s reply, blocking on the engine's wakeup (no sleeps).
  void await(uint64_t tag) {
    const auto deadline = std::chrono::steady_clock::now() + kReplyDeadline;
    while (!recorder_.replies.contains(tag)) {
      FUZZ_EXPECT(engine_.inFlight() > 0, "tag %" PRIu64 " has no reply and nothing is in flight",
                  tag);
      FUZZ_EXPECT(std::chrono::steady_clock::now() < deadline, "no reply for tag %" PRIu64, tag);
      engine_.wait(100);
    }
  }

  // Nothing in flight, no pending slot held, no dedupe entry in flight.
  void expectIdle() {
    engine_.drain();
    FUZZ_EXPECT(engine_.inFlight() == 0 && engine_.gate().customersWithPending() == 0 &&
                    engine_.dedupe().inFlight() == 0,
                "in flight %zu, customers pending %zu, dedupe in flight %zu", engine_.inFlight(),
                engine_.gate().customersWithPending(), engine_.dedupe().inFlight());
  }

  Recorder recorder_;
  Engine engine_;
  bus::ReplyEncoder malformedEncoder_;
  bus::JsonWire json_;
  std::vector<capnp::word> scratch_;  // decodeCommandFrame's copy of unaligned frames
  std::vector<uint64_t> aligned_;
  std::vector<char> unaligned_;
  uint64_t nextTag_ = 1;
  uint64_t nextHarnessId_ = 1;
  uint64_t frames_ = 0;
};

}  // namespace
}  // namespace shop::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static shop::fuzz::CommandFuzzer fuzzer;
  fuzzer.run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
