// Where the engine's output goes: sequenced events to an EventSink, one
// reply per request to a ReplySink. bus::Server puts both on the wire; the
// journal will hang from EventSink::commit(); tests record them.
//
// Both are called on the engine's ingress thread only.
#pragma once

#include <capnp/common.h>
#include <kj/common.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/domain.h"
#include "core/event_log.h"

namespace shop {

// One event, as it enters the log. Both views are valid during the call
// only; `message` stays readable through the log while retained.
struct PublishedEvent {
  const Event& event;                       // the domain value (seq and time assigned)
  kj::ArrayPtr<const capnp::word> message;  // its encoded message, standard framing
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Each event once, in seq order, after it is in the log. Events of a batch
  // come before the replies that name them.
  virtual void append(const PublishedEvent& event) = 0;
  // End of a batch: everything appended and replied since the last commit
  // may be released, events first.
  virtual void commit() = 0;
};

// A reply as borrowed views, valid during the call only.
struct ReplyView {
  CommandId commandId;
  ReplyStatus status = ReplyStatus::accepted;
  // accepted: the event's message. rejected: the OperationRejected message
  // while retained (empty once it left retention).
  kj::ArrayPtr<const capnp::word> event;
  // rejected
  RejectReason reason = RejectReason::internalError;
  std::string_view detail;
  Seq seq = 0;        // rejected, retired: the seq of the command's event
  Seq oldestSeq = 0;  // rejected with retentionExceeded; retired
  // customer
  const CustomerView* customer = nullptr;
  // stats
  const ShopStats* stats = nullptr;
  // events: the log's seqs [first, first + count), or, read from the
  // journal, `messages` (count of them); and the head when read
  const EventLog* log = nullptr;
  const std::vector<kj::ArrayPtr<const capnp::word>>* messages = nullptr;
  Seq first = 0;
  size_t count = 0;
  Seq headSeq = 0;
  bool capped = false;    // events: the page stopped at its byte cap
  uint64_t serverId = 0;  // events: the engine's id (EventPage.serverId)
};

// Event i of an events reply's page.
inline kj::ArrayPtr<const capnp::word> pageEvent(const ReplyView& view, size_t i) {
  return view.messages ? (*view.messages)[i] : view.log->at(view.first + i);
}

class ReplySink {
 public:
  virtual ~ReplySink() = default;
  // The one reply to the request submitted with `tag`.
  virtual void reply(uint64_t tag, const ReplyView& reply) = 0;
};

// The reply as an owning domain value (events decoded), for tests and tools.
Reply toReply(const ReplyView& view);

// Both sinks as owning domain values, for tests and tools that want events
// and replies rather than their encoded form. It decodes every reply: not
// for the hot path.
class EngineListener : public EventSink, public ReplySink {
 public:
  virtual void onEvent(const Event& event) = 0;
  virtual void onReply(uint64_t tag, const Reply& reply) = 0;

  void append(const PublishedEvent& event) override { onEvent(event.event); }
  void commit() override {}
  void reply(uint64_t tag, const ReplyView& reply) override { onReply(tag, toReply(reply)); }
};

}  // namespace shop
