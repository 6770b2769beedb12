// EventProbe: the assert_receive of shop. Subscribes with catch-up and lets a
// test wait for events by what they are, failing with what did arrive.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bus/subscriber.h"

namespace shop::testkit {

// A predicate on events with a description for failure messages.
struct EventMatcher {
  std::string description;
  std::function<bool(const Event&)> matches;
};

// Common matchers.
namespace match {
// An event of type T (e.g. ProductBought); `customer` narrows it when set.
template <typename T>
EventMatcher event(std::string customer = {}) {
  return {std::string(eventName(EventBody{T{}})) + (customer.empty() ? "" : " for " + customer),
          [customer](const Event& e) {
            return std::holds_alternative<T>(e.body) &&
                   (customer.empty() || e.customer() == customer);
          }};
}
EventMatcher rejected(RejectReason reason, std::string customer = {});
EventMatcher commandId(const CommandId& id);
}  // namespace match

// Thrown when an expectation fails; the message lists what did arrive.
struct ProbeFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Owned by one thread (the test's).
class EventProbe {
 public:
  using Duration = std::chrono::milliseconds;

  // Sees events published after it was created, or from `from` when given.
  EventProbe(zmq::context_t& context, const std::string& eventsEndpoint,
             const std::string& commandsEndpoint, std::string topicPrefix = {}, Seq from = 0);

  // Waits up to `timeout` for an event matching `m` and takes it out of the
  // probe's mailbox (other events stay, as with assert_receive).
  Event expect(const EventMatcher& m, Duration timeout = Duration(3000));
  // Events matching each matcher, in this order (others may come between).
  std::vector<Event> expectInOrder(const std::vector<EventMatcher>& ms,
                                   Duration timeout = Duration(3000));
  // Fails if an event matching `m` was published up to the server's current
  // head. Deterministic: it reads to the head rather than waiting a while.
  void expectNone(const EventMatcher& m);

  // Everything received so far, in seq order.
  const std::vector<Event>& received() const { return received_; }
  const bus::SubscriberStats& stats() const { return subscriber_.stats(); }

 private:
  void pump(int timeoutMs);
  [[noreturn]] void fail(const std::string& expectation) const;

  bus::CatchUpSubscriber subscriber_;
  bus::Client client_;
  std::deque<Event> mailbox_;
  std::vector<Event> received_;
};

}  // namespace shop::testkit
