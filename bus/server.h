// The socket thread: ROUTER ingress, PUB egress and the engine's ingress
// side, all on one thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include <concurrentqueue/concurrentqueue.h>
#include <zmq.hpp>

#include "core/engine.h"
#include "core/wakeup.h"

namespace shop::bus {

struct ServerConfig {
  std::string commandsEndpoint = "tcp://127.0.0.1:5555";
  std::string eventsEndpoint = "tcp://127.0.0.1:5556";
  EngineConfig engine;
  int eventsSendHwm = 100'000;  // events queued per subscriber before PUB drops
  int eventsSendBuffer = 0;     // SO_SNDBUF of the PUB socket; 0 = OS default
  int lingerMs = 1000;          // how long close waits to flush replies
  // Also stop when this fd becomes readable (shopd passes a signalfd); -1 = none.
  int stopFd = -1;
};

// Counters for logs and tests. Written by the socket thread only.
struct ServerStats {
  uint64_t requests = 0;
  uint64_t malformed = 0;
  uint64_t replies = 0;
  uint64_t events = 0;
};

// Owned by the socket thread: construct it, run() it and destroy it on one
// thread. requestStop() and post() may be called from any thread.
class Server : private EngineListener {
 public:
  // Binds both sockets. Throws zmq::error_t when an endpoint cannot be bound.
  Server(zmq::context_t& context, const ServerConfig& config);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The endpoints actually bound (ephemeral ports resolved).
  const std::string& commandsEndpoint() const { return commandsEndpoint_; }
  const std::string& eventsEndpoint() const { return eventsEndpoint_; }

  // Serves until requestStop() or stopFd. Then answers the requests already
  // received, waits for every in-flight command's reply, and returns.
  void run();
  // Thread-safe and async-signal-safe.
  void requestStop();
  // Runs fn(engine) on the socket thread at its next turn. Thread-safe.
  void post(std::function<void(Engine&)> fn);

  // Socket thread only: submit a command that no client sent (the starter
  // catalog). Its reply is logged when rejected.
  void submitLocal(Command command);
  Engine& engine() { return engine_; }
  const ServerStats& stats() const { return stats_; }

 private:
  struct Route {
    zmq::message_t identity;
    bool reqEnvelope = false;  // a REQ client: reply needs the empty delimiter
  };

  void onEvent(const Event& event) override;
  void onReply(uint64_t tag, const Reply& reply) override;
  // Reads every request waiting on the ROUTER without blocking.
  void readRequests();
  void handleRequest(std::vector<zmq::message_t>& frames);
  void sendMalformed(Route& route, const CommandId& id, const std::string& why);
  void send(Route& route, zmq::message_t body);
  void runPosted();

  ServerConfig config_;
  zmq::socket_t router_;
  zmq::socket_t pub_;
  std::string commandsEndpoint_;
  std::string eventsEndpoint_;
  Engine engine_;  // after the sockets: its listener callbacks use them
  Wakeup control_;
  std::atomic<bool> stopRequested_{false};
  moodycamel::ConcurrentQueue<std::function<void(Engine&)>> posted_;
  std::unordered_map<uint64_t, Route> routes_;  // by engine tag
  uint64_t nextTag_ = 1;
  std::string topic_;  // scratch for onEvent
  ServerStats stats_;
};

}  // namespace shop::bus
