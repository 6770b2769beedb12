// The in-process engine: ingress (dedupe, validation, gate), shards, egress
// (sequence, log, publish, reply, release slot). No sockets: bus/ puts it on
// the wire, shop-bench and the tests drive it directly.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "core/aggregates.h"
#include "core/domain.h"
#include "core/ingress_state.h"
#include "core/shard.h"
#include "core/wakeup.h"

namespace shop {

// Hardware threads minus one for the ingress thread, at least 1.
unsigned defaultShardCount();

struct EngineConfig {
  unsigned shards = defaultShardCount();
  uint32_t maxPending = 5;           // per customer, from admission to final outcome
  size_t retention = 1'000'000;      // events kept in memory for ReadEvents
  size_t dedupeWindow = 1'000'000;   // completed commandIds remembered
  uint32_t readPageLimit = 10'000;   // most events one ReadEvents returns
};

// Receives the engine's output. Called on the ingress thread only.
class EngineListener {
 public:
  virtual ~EngineListener() = default;
  // Each event once, in seq order, after it is in the log.
  virtual void onEvent(const Event& event) = 0;
  // The one reply to the request submitted with `tag`. A command's event is
  // always delivered before its reply.
  virtual void onReply(uint64_t tag, const Reply& reply) = 0;
};

// Owned by the ingress thread (the thread that constructs it); not
// thread-safe. It owns the shard threads.
class Engine {
 public:
  Engine(const EngineConfig& config, EngineListener& listener);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Admits one request; its reply arrives through the listener with `tag`,
  // possibly before submit returns (rejections, reads, dedupe hits).
  void submit(Command command, uint64_t tag);

  // Processes every shard outcome that is ready; returns how many. No syscall.
  size_t poll();
  // Blocks up to timeoutMs (-1: forever) for outcomes, then polls.
  size_t wait(int timeoutMs);
  // Waits until no operation is in flight.
  void drain();

  // For an event loop that sleeps on wakeFd() among other fds:
  //   bool sleep = engine.prepareToSleep();   // false: outcomes already wait
  //   poll(..., sleep ? timeout : 0);
  //   engine.wokeUp(wakeFd was readable);
  //   engine.poll();
  // Shards write wakeFd() only while the engine is prepared to sleep.
  bool prepareToSleep();
  void wokeUp(bool wakeFdReadable);
  int wakeFd() const { return wakeup_.fd(); }

  size_t inFlight() const { return inFlight_; }
  const EventLog& log() const { return log_; }
  const PendingGate& gate() const { return gate_; }
  const EngineConfig& config() const { return config_; }
  unsigned shardOfCustomer(std::string_view id) const;
  unsigned shardOfProduct(std::string_view id) const;

  // ---- test seams ----
  // Tasks sent to shard k after hold() wait until resume(); outcomes decided
  // before it are delivered. Holding is deterministic: no timing involved.
  void holdShard(unsigned k);
  void resumeShard(unsigned k);
  // The next step that touches this aggregate throws inside its handler.
  void injectCustomerFault(std::string_view customer);
  void injectProductFault(std::string_view product);
  // Live state of every aggregate. Blocks; no shard may be held. Reserved
  // stock of buys in flight is not in it, so take it when inFlight() == 0.
  ShopState snapshot();

 private:
  struct Op;

  void dispatch(uint32_t index, Step step);
  void onOutcome(ShardOutcome& outcome);
  void finish(Op& op, Reply reply);
  const Event& publish(const CommandId& id, EventBody body);
  Reply rejectNow(const Command& command, Rejection rejection);
  void serveRead(const Command& command, uint64_t tag);
  void assertOwner() const;

  EngineConfig config_;
  EngineListener& listener_;
  std::thread::id owner_;
  PendingGate gate_;
  DedupeWindow dedupe_;
  EventLog log_;
  Wakeup wakeup_;
  OutcomeQueue outbox_;
  moodycamel::ConsumerToken outboxToken_;
  std::vector<std::unique_ptr<Op>> ops_;  // stable addresses: shards borrow op->command
  std::vector<uint32_t> freeOps_;
  size_t inFlight_ = 0;
  std::vector<ShardOutcome> drained_;
  std::vector<std::unique_ptr<Shard>> shards_;  // last: stops before the rest goes
};

}  // namespace shop
