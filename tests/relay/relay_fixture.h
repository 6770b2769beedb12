// What the relay tests share: a config for a server and a receiver, the
// relay on a thread of its own, and customers created to be delivered.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <zmq.hpp>

#include "bus/client.h"
#include "relay/relay.h"
#include "tests/relay/test_receiver.h"
#include "tests/testkit/embedded_server.h"
#include "tests/testkit/temp_dir.h"

namespace shop::testkit {

// Creates customers `prefix`0..n-1 and returns the seqs of their
// CustomerCreated events.
inline std::vector<Seq> createCustomers(EmbeddedServer& server, const std::string& prefix, int n) {
  zmq::context_t context(1);
  bus::Client client(context, server.commands());
  std::vector<Seq> seqs;
  for (int i = 0; i < n; ++i) {
    auto r = client.call({CommandId::random(), CreateCustomer{prefix + std::to_string(i), 1}});
    REQUIRE(r.ok());
    seqs.push_back(r.reply->reply.event->seq);
  }
  return seqs;
}

// One HTTP destination, "orders", taking CustomerCreated events.
inline relay::Config configFor(EmbeddedServer& server, const TempDir& state,
                               const TestReceiver& receiver) {
  relay::Config c;
  c.commands = server.commands();
  c.events = server.events();
  c.control = "tcp://127.0.0.1:*";
  c.stateDir = state.str();
  relay::Destination d;
  d.name = "orders";
  d.url = receiver.url();
  d.events = {"customerCreated"};
  d.timeoutMs = 2'000;
  d.retry = {.initialMs = 20, .multiplier = 2, .maxMs = 1'000, .jitter = 0.5, .maxAttempts = 6};
  c.destinations.push_back(d);
  return c;
}

// A relay on its own thread, stopped (as by SIGTERM) when the test ends.
class RelayThread {
  // Before the thread, which uses them.
  std::mutex mutex_;
  std::condition_variable ended_;
  bool finished_ = false;
  std::string error_;

 public:
  relay::Relay relay;
  std::atomic<bool> stop{false};
  std::thread thread;
  explicit RelayThread(relay::Config config)
      : relay(std::move(config)), thread([this] {
          std::string why;
          try {
            relay.run(stop);
          } catch (const std::exception& e) {
            why = e.what();
          }
          std::lock_guard lock(mutex_);
          error_ = why;
          finished_ = true;
          ended_.notify_all();
        }) {}
  ~RelayThread() {
    stop = true;
    thread.join();
  }
  relay::DestinationRunner& orders() { return relay.destination(0); }
  // Waits for run() to end on its own; what it threw ("" when it returned),
  // or nullopt after `timeout`.
  std::optional<std::string> waitEnded(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!ended_.wait_for(lock, timeout, [&] { return finished_; })) return std::nullopt;
    return error_;
  }
  // What run() threw so far ("" while it runs, or when it returned).
  std::string error() {
    std::lock_guard lock(mutex_);
    return error_;
  }
};

inline std::vector<Seq> seqsOf(const std::vector<TestReceiver::Delivery>& deliveries) {
  std::vector<Seq> out;
  for (const auto& d : deliveries) out.push_back(d.seq);
  return out;
}

inline std::string serverKeyPrefix(EmbeddedServer& server) {
  return serverIdHex(server.withEngine([](Engine& e) { return e.serverId(); })) + "-";
}

}  // namespace shop::testkit
