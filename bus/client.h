// Client library: many commands in flight on one DEALER, correlated by
// commandId, each with a timeout and safe retries (same commandId).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>

#include <zmq.hpp>

#include "bus/access.h"
#include "bus/codec.h"
#include "core/domain.h"

namespace shop::bus {

// The outcome of one request: the server's reply, or an error (timeout, a
// reply that could not be decoded) in `error`.
struct CallResult {
  std::optional<ClientReply> reply;
  std::string error;

  bool ok() const { return reply && !reply->malformed; }
};

using ReplyHandler = std::function<void(const CallResult&)>;

struct ClientOptions {
  int timeoutMs = 2000;  // per attempt
  int retries = 2;       // resends after the first attempt, with the same commandId
  ClientCurve curve;     // off by default
  // Fail requests at once, rather than after their timeouts, when the
  // first connection attempt is refused (nothing listens at the endpoint).
  // For tools that a person waits on; a service would rather wait.
  bool failFast = false;
};

// Owned by one thread; not thread-safe.
class Client {
 public:
  Client(zmq::context_t& context, const std::string& endpoint, ClientOptions options = {});

  // Sends `command`; `handler` runs inside a later poll() with its result.
  void send(const Command& command, ReplyHandler handler);
  // Waits up to timeoutMs for replies, runs their handlers, resends or fails
  // requests whose attempt timed out. Returns how many handlers ran.
  size_t poll(int timeoutMs);
  // Sends and waits for this one result (other in-flight handlers may run).
  CallResult call(const Command& command);

  size_t inFlight() const { return pending_.size(); }
  uint64_t retriesSent() const { return retriesSent_; }
  zmq::socket_t& socket() { return socket_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    zmq::message_t frame;  // kept for retries
    Clock::time_point deadline;
    int retriesLeft = 0;
    ReplyHandler handler;
    bool sent = false;  // some attempt reached ZeroMQ's queue
  };

  void receive(zmq::message_t& frame);
  size_t expire();
  // failFast: reads the socket's connection events; returns the handlers run.
  size_t watchConnection();

  ClientOptions options_;
  std::string endpoint_;
  zmq::socket_t socket_;
  zmq::socket_t monitor_;  // failFast: the socket's events
  bool connected_ = false;
  std::unordered_map<CommandId, Pending, CommandIdHash> pending_;
  uint64_t retriesSent_ = 0;
};

}  // namespace shop::bus
