// A stand-in for shopd on real loopback sockets (a ROUTER and an XPUB) that
// serves hand-made event messages: what a newer or a broken server sends,
// which the real one cannot be made to. It also knows when a subscription
// has reached it, which the real one does not tell.
#pragma once

#include <capnp/common.h>
#include <kj/array.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "core/domain.h"

namespace shop::testkit {

struct FakeServerConfig {
  // Whole Event messages, seq i + 1 at index i.
  std::vector<kj::Array<capnp::word>> events;
  // Frames published as [topic "s/fake", frame] after each ReadEvents answered.
  std::vector<std::string> live;
  // Pages hold no event (their head is still events.size()).
  bool emptyPages = false;
  // Publish `live` again about every millisecond, reads or not: a stream
  // that never pauses.
  bool streamLive = false;
  uint64_t serverId = 0xFA4E5E4FE4000001;
  std::string commandsEndpoint = "tcp://127.0.0.1:*";
  std::string eventsEndpoint = "tcp://127.0.0.1:*";
};

// Owned by the test thread; serves on its own thread until destroyed.
//
// Every request must be a ReadEvents. It is answered with a page of
// `events` from its fromSeq, with head events.size() and `serverId`.
class FakeServer {
 public:
  explicit FakeServer(FakeServerConfig config);
  ~FakeServer();
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  // The endpoints bound (ephemeral ports resolved).
  const std::string& commands() const { return commands_; }
  const std::string& events() const { return events_; }
  uint64_t serverId() const;

  // Waits until a subscription has reached the events socket: from then on
  // every frame published reaches that subscriber. False after `timeout`.
  bool waitForSubscriber(std::chrono::milliseconds timeout);
  // Publishes each frame as [topic "s/fake", frame], on the server thread.
  void publish(const std::vector<std::string>& frames);
  // From now on, pages are of these events and carry this id: as another
  // server behind the same sockets (a restart behind a forwarder) reads to
  // a subscriber, whose connections do not change.
  void replace(std::vector<kj::Array<capnp::word>> events, uint64_t serverId);

  // `message` as a frame's bytes.
  static std::string bytesOf(const kj::Array<capnp::word>& message);

 private:
  void run();
  void answer();
  zmq::message_t page(const CommandId& id, Seq from) const;
  void send(const std::vector<std::string>& frames);

  FakeServerConfig config_;
  zmq::context_t context_;
  zmq::socket_t router_;
  zmq::socket_t xpub_;
  zmq::socket_t controlIn_;   // the server thread's end
  zmq::socket_t controlOut_;  // the test thread's end
  std::string commands_;
  std::string events_;
  mutable std::mutex mutex_;  // guards config_.events, config_.serverId and subscriptions_
  std::condition_variable subscribed_;
  int subscriptions_ = 0;
  std::thread thread_;
};

}  // namespace shop::testkit
