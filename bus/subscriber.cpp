#include "bus/subscriber.h"

#include <stdexcept>

#include "bus/topic.h"

namespace shop::bus {

CatchUpSubscriber::CatchUpSubscriber(zmq::context_t& context, const std::string& eventsEndpoint,
                                     const std::string& commandsEndpoint, SubscriberOptions options)
    : options_(std::move(options)),
      sub_(context, zmq::socket_type::sub),
      client_(context, commandsEndpoint, options_.client),
      next_(options_.from == 0 ? 1 : options_.from) {
  sub_.set(zmq::sockopt::linger, 0);
  sub_.set(zmq::sockopt::rcvhwm, options_.rcvHwm);
  sub_.set(zmq::sockopt::subscribe, "");      // every seq, to see gaps (see class comment)
  secureClient(sub_, options_.client.curve);  // the same keys as the commands socket
  sub_.connect(eventsEndpoint);
}

size_t CatchUpSubscriber::deliverInOrder(Event event, const Deliver& deliver) {
  if (event.seq < next_) {
    ++stats_.duplicatesDropped;
    return 0;
  }
  if (event.seq > next_) {
    ahead_.emplace(event.seq, std::move(event));
    return 0;
  }
  ++next_;
  if (!options_.topicPrefix.empty()) {
    topicInto(event, topic_);
    if (!topic_.starts_with(options_.topicPrefix)) return 0;
  }
  ++stats_.delivered;
  deliver(event);
  return 1;
}

size_t CatchUpSubscriber::flushBuffer(const Deliver& deliver) {
  size_t n = 0;
  while (!ahead_.empty() && ahead_.begin()->first <= next_) {
    auto node = ahead_.extract(ahead_.begin());
    n += deliverInOrder(std::move(node.mapped()), deliver);
  }
  return n;
}

size_t CatchUpSubscriber::catchUp(Seq upTo, const Deliver& deliver) {
  size_t n = 0;
  for (;;) {
    CallResult result = client_.call(Command{CommandId::random(), ReadEvents{next_, 0}});
    if (!result.ok()) {
      throw std::runtime_error("ReadEvents failed: " +
                               (result.reply ? *result.reply->malformed : result.error));
    }
    const Reply& reply = result.reply->reply;
    if (reply.status == ReplyStatus::rejected &&
        reply.rejection()->reason == RejectReason::retentionExceeded) {
      throw TruncatedError(next_, reply.oldestSeq);
    }
    if (reply.status == ReplyStatus::rejected) {
      throw std::runtime_error("cannot read from seq " + std::to_string(next_) + ": " +
                               reply.rejection()->detail);
    }
    if (reply.page.events.empty()) break;
    for (auto& event : reply.page.events) {
      if (upTo != 0 && event.seq > upTo) break;
      stats_.eventsReread += caughtUp_ ? 1 : 0;
      n += deliverInOrder(std::move(event), deliver);
    }
    if ((upTo != 0 && next_ > upTo) || next_ > reply.page.headSeq) break;
  }
  return n + flushBuffer(deliver);
}

size_t CatchUpSubscriber::poll(int timeoutMs, const Deliver& deliver) {
  using Clock = std::chrono::steady_clock;
  size_t n = 0;
  if (!caughtUp_) {
    n += catchUp(0, deliver);
    caughtUp_ = true;
  }
  auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs < 0 ? 0 : timeoutMs);
  while (n == 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (timeoutMs >= 0 && left.count() <= 0) break;
    auto wait = std::chrono::milliseconds(options_.idleCheckMs);
    if (timeoutMs >= 0 && left < wait) wait = left;
    zmq::pollitem_t item{sub_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, wait) == 0) {
      n += catchUp(0, deliver);  // idle: anything published that we missed?
      continue;
    }
    zmq::message_t topic, body;
    while (sub_.recv(topic, zmq::recv_flags::dontwait)) {
      if (!topic.more()) continue;  // not our two-frame format
      (void)sub_.recv(body, zmq::recv_flags::none);
      Event event = readFrame<wire::Event>(body, [](wire::Event::Reader r) { return fromWire(r); });
      if (event.seq > next_) {
        ++stats_.gapsDetected;
        Seq gapEnd = event.seq - 1;
        ahead_.emplace(event.seq, std::move(event));
        n += catchUp(gapEnd, deliver);
      } else {
        n += deliverInOrder(std::move(event), deliver);
        n += flushBuffer(deliver);
      }
    }
  }
  return n;
}

}  // namespace shop::bus
