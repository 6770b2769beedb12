// Reliable event stream over PUB/SUB, after the ZeroMQ Guide's Clone
// pattern: subscribe first and buffer, ReadEvents from the checkpoint to the
// head, drop what was already delivered, and re-read any seq gap.
#pragma once

#include <functional>
#include <map>
#include <stdexcept>
#include <string>

#include <zmq.hpp>

#include "bus/client.h"
#include "core/domain.h"

namespace shop::bus {

struct SubscriberOptions {
  Seq from = 1;             // first seq to deliver (inclusive)
  std::string topicPrefix;  // deliver only events whose topic starts with this
  int rcvHwm = 100'000;     // SUB queue; PUB drops beyond it and we repair
  // With no live event for this long, ask the server for its head: closes
  // the window where the subscription was not yet active, and notices a
  // dropped tail. Client-side only; the server never polls.
  int idleCheckMs = 200;
  ClientOptions client;
};

struct SubscriberStats {
  uint64_t delivered = 0;
  uint64_t duplicatesDropped = 0;
  uint64_t gapsDetected = 0;
  uint64_t eventsReread = 0;
};

// Owned by one thread; not thread-safe.
//
// Gap detection needs every seq, so the SUB socket takes the whole stream
// and the topic prefix is applied here. TODO(perf): a topic-filtered
// ReadEvents would let a one-customer tail subscribe to its prefix only.
// The events after a subscriber's checkpoint have left the server's
// retention: they cannot be delivered. Nothing is skipped silently; the
// owner decides (start again from `oldest`, or give up).
struct TruncatedError : std::runtime_error {
  TruncatedError(Seq wanted, Seq oldest)
      : std::runtime_error("truncated: seq " + std::to_string(wanted) +
                           " is no longer retained; the oldest is " + std::to_string(oldest)),
        wanted(wanted),
        oldest(oldest) {}
  Seq wanted;
  Seq oldest;
};

class CatchUpSubscriber {
 public:
  using Deliver = std::function<void(const Event&)>;

  CatchUpSubscriber(zmq::context_t& context, const std::string& eventsEndpoint,
                    const std::string& commandsEndpoint, SubscriberOptions options = {});

  // Delivers, in seq order, each event after the checkpoint exactly once
  // (those matching the topic prefix). Waits up to timeoutMs (-1: forever)
  // for at least one. Returns how many were delivered. Throws
  // TruncatedError when the next seq is older than the server's retention,
  // and std::runtime_error when the server cannot be reached.
  size_t poll(int timeoutMs, const Deliver& deliver);

  // Every seq up to this one has been handled.
  Seq checkpoint() const { return next_ - 1; }
  const SubscriberStats& stats() const { return stats_; }

 private:
  // Reads [next_, upTo] (upTo 0: to the head) from the server and delivers.
  size_t catchUp(Seq upTo, const Deliver& deliver);
  size_t deliverInOrder(Event event, const Deliver& deliver);
  size_t flushBuffer(const Deliver& deliver);

  SubscriberOptions options_;
  zmq::socket_t sub_;
  Client client_;
  Seq next_;                    // the next seq to hand out
  std::map<Seq, Event> ahead_;  // live events that arrived past a gap
  bool caughtUp_ = false;
  std::string topic_;  // scratch for matching the prefix
  SubscriberStats stats_;
};

}  // namespace shop::bus
