// The socket thread: ROUTER ingress and PUB egress in front of an Engine,
// all on one thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <concurrentqueue/concurrentqueue.h>
#include <zmq.hpp>

#include "bus/access.h"
#include "bus/codec.h"
#include "bus/json.h"
#include "core/egress.h"
#include "core/engine.h"
#include "core/journal.h"
#include "core/wakeup.h"

namespace shop::bus {

struct ServerConfig {
  std::string commandsEndpoint = "tcp://127.0.0.1:5555";
  std::string eventsEndpoint = "tcp://127.0.0.1:5556";
  // A second PUB socket that publishes every event as JSON (bus/json.h),
  // with the same topics; empty: none.
  std::string eventsJsonEndpoint;
  int eventsSendHwm = 100'000;  // events queued per subscriber before PUB drops
  int eventsSendBuffer = 0;     // SO_SNDBUF of the PUB socket; 0 = OS default
  // Replies ZeroMQ queues per client connection (ROUTER's ZMQ_SNDHWM) and
  // SO_SNDBUF of the ROUTER socket (0 = OS default). Replies past these wait
  // in the server's own per-connection backlog, below.
  int repliesSendHwm = 1000;
  int repliesSendBuffer = 0;
  // A connection whose unread replies hold more than this many bytes in the
  // server's backlog has its further requests dropped unanswered (and
  // counted, and logged) until it reads; so does every connection with a
  // backlog while all backlogs together hold more than backlogTotalBytes.
  size_t backlogBytesPerPeer = size_t{4} << 20;
  size_t backlogTotalBytes = size_t{256} << 20;
  // Commands one connection may have in the engine at once; past it, the
  // next is rejected 'overloaded' at once. The per-customer gate bounds a
  // customer's share of the shard queues; this bounds a connection's, so a
  // client that spreads a flood over many customers cannot queue thousands
  // of commands ahead of everyone else.
  uint32_t maxInFlightPerConnection = 1024;
  int lingerMs = 1000;  // how long close waits to flush replies
  // A peer that connects but does not finish ZeroMQ's handshake in this time
  // is disconnected, so idle TCP connections cannot pile up (libzmq: 30 s).
  int handshakeMs = 5000;
  // Also stop when this fd becomes readable (shopd passes a signalfd); -1 = none.
  int stopFd = -1;
  // Keys, roles and the connection cap; null: anyone may connect, and use
  // every command. Must outlive the server.
  AccessControl* access = nullptr;
  // With a journal, each turn's events are journaled, and its events and
  // replies wait until the journal says the batch is durable: no client or
  // subscriber sees what a crash could take back. Started, and outliving
  // the server.
  Journal* journal = nullptr;
};

// An endpoint that cannot be bound; the message names it.
struct BindError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// run() stopped because a part of the engine failed (a broken invariant).
struct ServerFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Counters for logs and tests. Written by the socket thread only.
struct ServerStats {
  uint64_t requests = 0;
  uint64_t malformed = 0;
  uint64_t replies = 0;
  uint64_t events = 0;
  uint64_t turns = 0;            // loop turns that did work; requests / turns is the batch size
  uint64_t repliesDeferred = 0;  // replies that waited in a backlog: their peer was not reading
  uint64_t repliesToClosed = 0;  // replies whose connection had closed: nobody to deliver to
  uint64_t requestsRefused = 0;  // dropped unanswered: their connection's backlog was full
  uint64_t connectionOverloaded =
      0;                    // rejected 'overloaded': their connection had too many in flight
  size_t backlogBytes = 0;  // bytes in the backlogs now
  size_t backlogPeers = 0;  // connections with a backlog now
};

// Owned by the socket thread: construct it, the Engine that uses it as its
// sinks, and run() on one thread. requestStop() and post() may be called
// from any thread.
//
//   bus::Server server(context, config);          // binds both sockets
//   Engine engine(engineConfig, server, server);  // events and replies
//   server.run(engine);
//
// Egress is batched: events and replies are built as the engine emits them
// and sent at the end of each turn (EventSink::commit), events first.
class Server : public EventSink, public ReplySink {
 public:
  // The tag for commands no client sent (the starter catalog): their replies
  // are logged when rejected.
  static constexpr uint64_t kLocalTag = 0;

  // Binds both sockets. Throws BindError, naming the endpoint, when one
  // cannot be bound.
  Server(zmq::context_t& context, const ServerConfig& config);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The endpoints actually bound (ephemeral ports resolved).
  const std::string& commandsEndpoint() const { return commandsEndpoint_; }
  const std::string& eventsEndpoint() const { return eventsEndpoint_; }
  // Empty without ServerConfig::eventsJsonEndpoint.
  const std::string& eventsJsonEndpoint() const { return eventsJsonEndpoint_; }

  // Serves `engine` until requestStop() or stopFd. Then answers the requests
  // already received, waits for every in-flight command's reply, and returns.
  // When a shard fails instead, it stops reading, sends what was decided,
  // and throws ServerFailure naming the failure.
  void run(Engine& engine);
  // Thread-safe and async-signal-safe.
  void requestStop();
  // Runs fn(engine) on the socket thread at its next turn. Thread-safe.
  void post(std::function<void(Engine&)> fn);

  const ServerStats& stats() const { return stats_; }

  // EventSink and ReplySink: called by the engine on the socket thread.
  void append(const PublishedEvent& event) override;
  void commit() override;
  void reply(uint64_t tag, const ReplyView& reply) override;

 private:
  struct Route {
    zmq::message_t identity;
    bool reqEnvelope = false;      // a REQ client: reply needs the empty delimiter
    bool json = false;             // the request was JSON: so is its reply
    uint32_t* inFlight = nullptr;  // the connection's count in inFlight_, while counted
  };
  struct OutgoingReply {
    Route route;
    zmq::message_t body;
  };
  struct Request {
    uint64_t tag;
    Command command;
    // Rejected without reaching the engine: a catalog command from a key
    // without the admin role (forbidden), or a connection past its bound
    // (overloaded).
    std::optional<RejectReason> refusal;
    std::string refusalDetail;
  };
  struct OutgoingEvent {
    zmq::message_t topic;
    zmq::message_t body;
  };
  // Replies the ROUTER would not take yet (the peer's pipe was full), in
  // order. While a peer has one, its replies join it, so order is kept.
  struct Backlog {
    std::deque<OutgoingReply> replies;
    size_t bytes = 0;
  };
  enum class SendResult { sent, full, closed };

  // Reads up to one batch of requests waiting on the ROUTER without
  // blocking; returns how many.
  size_t readRequests(Engine& engine);
  // Decodes the request in frames_ into batch_, or queues its malformed reply.
  void decodeRequest();
  void sendMalformed(Route& route, const CommandId& id, const std::string& why);
  // Sends a reply now, or appends it to its peer's backlog.
  void deliver(OutgoingReply& reply);
  SendResult trySend(OutgoingReply& reply);
  void park(Backlog& backlog, OutgoingReply& reply);
  // Sends a turn's output: events first, then older backlogged replies,
  // then these replies. Clears both.
  // `json`: the events' JSON bodies, one per event, with an events JSON
  // socket (else empty).
  void send(std::vector<OutgoingEvent>& events, std::vector<zmq::message_t>& json,
            std::vector<OutgoingReply>& replies);
  // With a journal: the output of the batches the journal has made durable.
  void releaseDurable();
  // Sends what the backlogs hold, oldest first, until each peer's pipe is full.
  void flushBacklogs();
  // True when a request from this peer must be dropped: its replies are not draining.
  bool refuse(const zmq::message_t& identity);
  void dropClosed(size_t replies);
  void runPosted(Engine& engine);
  uint64_t takeRoute(Route route);
  // The connection's in-flight count, created at zero.
  uint32_t& inFlightOf(const zmq::message_t& identity);

  ServerConfig config_;
  zmq::socket_t router_;
  zmq::socket_t pub_;
  std::optional<zmq::socket_t> jsonPub_;
  std::string commandsEndpoint_;
  std::string eventsEndpoint_;
  std::string eventsJsonEndpoint_;
  Wakeup control_;
  std::atomic<bool> stopRequested_{false};
  moodycamel::ConcurrentQueue<std::function<void(Engine&)>> posted_;

  // Socket thread only. Every buffer below is reused turn after turn.
  std::vector<Route> routes_;  // by tag - 1; a tag is live from submit to its reply
  std::vector<uint64_t> freeTags_;
  std::vector<zmq::message_t> frames_;     // one request's frames
  std::vector<capnp::word> alignScratch_;  // unaligned request bodies
  std::vector<Request> batch_;             // decoded, not yet submitted
  std::vector<OutgoingEvent> outEvents_;   // until commit()
  std::vector<zmq::message_t> outJson_;    // with jsonPub_: outEvents_' bodies as JSON
  std::vector<OutgoingReply> outReplies_;  // until commit(), after the events
  // With a journal: turns' output waiting for their batch to be durable,
  // oldest first. A turn that journaled nothing waits for the batch before
  // it, so output always leaves in order.
  struct Held {
    uint64_t batch = 0;
    std::vector<OutgoingEvent> events;
    std::vector<zmq::message_t> json;
    std::vector<OutgoingReply> replies;
  };
  std::deque<Held> held_;
  std::vector<Held> spareHeld_;                        // their vectors keep their capacity
  uint64_t lastBatch_ = 0;                             // the newest batch handed to the journal
  std::unordered_map<std::string, Backlog> backlogs_;  // by peer routing id
  // Commands in the engine, by peer routing id. Idle entries (0) stay, so a
  // client with one request at a time does not allocate per request; they
  // are swept when the table doubles.
  std::unordered_map<std::string, uint32_t> inFlight_;
  size_t sweepInFlightAt_ = 1024;
  std::string peerKey_;
  std::string topic_;
  ReplyEncoder encoder_;
  JsonWire json_;
  ServerStats stats_;
};

}  // namespace shop::bus
