#include "tests/testkit/event_probe.h"

#include <limits>

namespace shop::testkit {
namespace {

Seq serverHead(zmq::context_t& context, const std::string& commands) {
  bus::Client client(context, commands);
  auto result =
      client.call(Command{CommandId::random(), ReadEvents{std::numeric_limits<Seq>::max(), 1}});
  if (!result.ok()) throw ProbeFailure("EventProbe cannot read the server's head: " + result.error);
  return result.reply->reply.page.headSeq;
}

}  // namespace

namespace match {
EventMatcher rejected(RejectReason reason, std::string customer) {
  return {"operationRejected(" + std::string(name(reason)) + ")" +
              (customer.empty() ? "" : " for " + customer),
          [reason, customer](const Event& e) {
            auto* r = std::get_if<OperationRejected>(&e.body);
            return r && r->reason == reason && (customer.empty() || r->customer == customer);
          }};
}

EventMatcher commandId(const CommandId& id) {
  return {"an event of command " + id.toHex(), [id](const Event& e) { return e.commandId == id; }};
}
}  // namespace match

EventProbe::EventProbe(zmq::context_t& context, const std::string& eventsEndpoint,
                       const std::string& commandsEndpoint, std::string topicPrefix, Seq from)
    : subscriber_(context, eventsEndpoint, commandsEndpoint,
                  bus::SubscriberOptions{
                      .from = from != 0 ? from : serverHead(context, commandsEndpoint) + 1,
                      .topicPrefix = std::move(topicPrefix)}),
      client_(context, commandsEndpoint) {}

void EventProbe::pump(int timeoutMs) {
  subscriber_.poll(timeoutMs, [this](const Event& e) {
    mailbox_.push_back(e);
    received_.push_back(e);
  });
}

void EventProbe::fail(const std::string& expectation) const {
  std::string message =
      "EventProbe: " + expectation + "; received " + std::to_string(received_.size()) + " event(s)";
  for (const auto& e : received_) message += "\n  " + describe(e);
  throw ProbeFailure(message);
}

Event EventProbe::expect(const EventMatcher& m, Duration timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    for (auto it = mailbox_.begin(); it != mailbox_.end(); ++it) {
      if (m.matches(*it)) {
        Event found = std::move(*it);
        mailbox_.erase(it);
        return found;
      }
    }
    auto left = std::chrono::duration_cast<Duration>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      fail("expected " + m.description + " within " + std::to_string(timeout.count()) + " ms");
    }
    pump(static_cast<int>(left.count()));
  }
}

std::vector<Event> EventProbe::expectInOrder(const std::vector<EventMatcher>& ms,
                                             Duration timeout) {
  std::vector<Event> found;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t scanned = 0;  // mailbox entries already looked at for ms[found.size()]
  while (found.size() < ms.size()) {
    const EventMatcher& m = ms[found.size()];
    bool hit = false;
    for (; scanned < mailbox_.size(); ++scanned) {
      if (m.matches(mailbox_[scanned])) {
        found.push_back(mailbox_[scanned]);
        mailbox_.erase(mailbox_.begin() + static_cast<long>(scanned));
        hit = true;
        break;
      }
    }
    if (hit) continue;
    auto left = std::chrono::duration_cast<Duration>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      fail("expected in order; matched " + std::to_string(found.size()) + " of " +
           std::to_string(ms.size()) + ", missing " + m.description);
    }
    pump(static_cast<int>(left.count()));
  }
  return found;
}

void EventProbe::expectNone(const EventMatcher& m) {
  auto head =
      client_.call(Command{CommandId::random(), ReadEvents{std::numeric_limits<Seq>::max(), 1}});
  if (!head.ok()) fail("expectNone could not read the head: " + head.error);
  Seq target = head.reply->reply.page.headSeq;
  while (subscriber_.checkpoint() < target) pump(1000);
  for (const auto& e : received_) {
    if (m.matches(e)) fail("expected no " + m.description + " up to seq " + std::to_string(target));
  }
}

}  // namespace shop::testkit
