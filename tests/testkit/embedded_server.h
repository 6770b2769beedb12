// A real shop server (bus::Server, real ZeroMQ sockets over TCP loopback)
// on its own thread, on ephemeral ports, with the engine's test seams.
#pragma once

#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "bus/server.h"

namespace shop::testkit {

// Owned by the test thread. The server inside runs on its own thread. It is
// quiet: its log lines go to TestLog (tests/testkit/test_log.h), which keeps
// them for the test to read and prints them only when asked.
class EmbeddedServer {
 public:
  // Endpoints default to tcp://127.0.0.1:* (ephemeral ports).
  explicit EmbeddedServer(bus::ServerConfig config = defaultConfig(),
                          EngineConfig engine = defaultEngineConfig(),
                          std::optional<bus::AccessConfig> access = std::nullopt);
  ~EmbeddedServer();  // stops the server if still running
  EmbeddedServer(const EmbeddedServer&) = delete;
  EmbeddedServer& operator=(const EmbeddedServer&) = delete;

  static bus::ServerConfig defaultConfig();
  static EngineConfig defaultEngineConfig();  // 2 shards, so buys cross shards

  const std::string& commands() const { return commands_; }
  const std::string& events() const { return events_; }
  // With ServerConfig::eventsJsonEndpoint set (e.g. "tcp://127.0.0.1:*").
  const std::string& eventsJson() const { return eventsJson_; }
  zmq::context_t& context() { return context_; }
  // The ZAP handler, when constructed with an AccessConfig.
  bus::AccessControl& access() { return *access_; }

  // Runs fn(engine) on the server's socket thread and returns its result.
  template <typename Fn>
  auto withEngine(Fn fn) -> decltype(fn(std::declval<Engine&>()));

  // Holds the shard that owns `customer` still (see Engine::holdShard);
  // returns the shard index for resumeShard.
  unsigned holdShardOfCustomer(const std::string& customer);
  void resumeShard(unsigned shard);

  // Stops the server as SIGTERM would and waits for it to finish.
  void stop();
  // Waits for the server to stop on its own (a fatal error); returns what
  // run() threw, or empty when it returned.
  std::string waitStopped();
  // The running server's counters, read on its socket thread.
  bus::ServerStats stats();
  // Counters of the stopped server (call after stop()).
  const bus::ServerStats& finalStats() const { return finalStats_; }

 private:
  zmq::context_t context_;
  std::unique_ptr<bus::AccessControl> access_;  // before the server, closed after it
  std::string commands_;
  std::string events_;
  std::string eventsJson_;
  bus::Server* server_ = nullptr;  // lives on thread_'s stack until release_
  std::promise<void> finished_;    // run() has returned
  std::promise<void> release_;     // the thread may destroy the server
  std::thread thread_;
  bus::ServerStats finalStats_;
  std::string runError_;
};

template <typename Fn>
auto EmbeddedServer::withEngine(Fn fn) -> decltype(fn(std::declval<Engine&>())) {
  using R = decltype(fn(std::declval<Engine&>()));
  auto done = std::make_shared<std::promise<R>>();
  auto future = done->get_future();
  server_->post([fn = std::move(fn), done](Engine& engine) mutable {
    try {
      if constexpr (std::is_void_v<R>) {
        fn(engine);
        done->set_value();
      } else {
        done->set_value(fn(engine));
      }
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  });
  return future.get();
}

}  // namespace shop::testkit
