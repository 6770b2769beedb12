#include "core/egress.h"

#include "core/event_codec.h"

namespace shop {

Reply toReply(const ReplyView& view) {
  Reply out{view.commandId, view.status};
  switch (view.status) {
    case ReplyStatus::accepted:
      out.event = decodeEvent(view.event);
      break;
    case ReplyStatus::rejected: {
      // As a client sees it: reason, detail and seq (the event's other fields
      // are not on the wire).
      Event e;
      e.seq = view.seq;
      e.commandId = view.commandId;
      e.body = OperationRejected{
          view.reason, CommandKind::createCustomer, {}, {}, std::string(view.detail)};
      if (view.event.size() != 0) e = decodeEvent(view.event);
      out.event = std::move(e);
      out.oldestSeq = view.oldestSeq;
      break;
    }
    case ReplyStatus::customer:
      out.customer = *view.customer;
      break;
    case ReplyStatus::stats:
      out.stats = *view.stats;
      break;
    case ReplyStatus::events:
      out.page.headSeq = view.headSeq;
      out.page.capped = view.capped;
      out.page.serverId = view.serverId;
      for (size_t i = 0; i < view.count; ++i) {
        out.page.events.push_back(decodeEvent(pageEvent(view, i)));
      }
      break;
    case ReplyStatus::retired:
      out.seq = view.seq;
      out.oldestSeq = view.oldestSeq;
      break;
  }
  return out;
}

}  // namespace shop
