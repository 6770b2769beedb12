// The in-process engine: it composes the stages of a command. No sockets:
// bus/ puts it on the wire, shop-bench and the tests drive it directly.
//
//   admission:   dedupe (DedupeWindow) → validation → gate (PendingGate)
//   routing:     ShardRouter, the saga's first step, staged per shard
//   shards:      decide and apply (Shard), outcomes back through one queue
//   saga:        saga::next() for cross-shard buys and returns
//   sequencing:  seq and time, encoded once into the EventLog → EventSink
//   replies:     one per request → ReplySink; the gate slot is released
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/aggregates.h"
#include "core/dedupe_window.h"
#include "core/domain.h"
#include "core/egress.h"
#include "core/event_codec.h"
#include "core/event_log.h"
#include "core/hold_book.h"
#include "core/journal_history.h"
#include "core/pending_gate.h"
#include "core/shard.h"
#include "core/shard_router.h"
#include "core/snapshot.h"
#include "core/wakeup.h"

namespace shop {

// Hardware threads minus one for the ingress thread, at least 1.
unsigned defaultShardCount();

struct EngineConfig {
  unsigned shards = defaultShardCount();
  uint32_t maxPending = 5;          // per customer, from admission to final outcome
  size_t retention = 1'000'000;     // events kept in memory for ReadEvents
  size_t dedupeWindow = 1'000'000;  // completed commandIds remembered
  uint32_t readPageLimit = 10'000;  // most events one ReadEvents returns
  size_t maxInFlight = 65'536;      // operations admitted and not yet final, all customers
  size_t readPageBytes = 1 << 20;   // most event bytes one ReadEvents returns (at least one event)
  // This run's identity, carried by every ReadEvents page: seqs start again
  // at 1 when the server restarts, and a subscriber tells the new stream
  // from the old one by this id. 0: a random one (never 0) at construction.
  uint64_t serverId = 0;
  // The journal's directory, if there is one: ReadEvents before the
  // retention are then read from it, on a thread of their own.
  std::string historyDir;
  // With a journal: the thread that writes snapshots, and how often (its
  // config().every). Null: no snapshots.
  SnapshotWriter* snapshots = nullptr;
  // Aggregates a shard encodes for a snapshot between two batches of tasks:
  // 512 take about half a millisecond, the most a command waits for one.
  size_t checkpointSlice = 512;
  // What GetStats reports as the server's version.
  std::string version = "unknown";
  // Holds: live holds one customer may have, and the longest ttlMs.
  uint32_t maxHolds = 20;
  int64_t maxHoldTtlMs = 3'600'000;
  // The clock, in ns since the Unix epoch: event timestamps and hold
  // deadlines. Null: the system clock. Tests inject one and move it.
  std::function<int64_t()> clock;
};

// A random 64-bit server id, never 0.
uint64_t randomServerId();

// Owned by the ingress thread (the thread that constructs it); not
// thread-safe. It owns the shard threads.
//
// Work is batched: submit() and poll() stage shard tasks and sink output;
// commit() ends the batch, handing each shard its tasks in bulk and telling
// the EventSink to commit. wait(), drain() and prepareToSleep() commit first.
class Engine {
 public:
  Engine(const EngineConfig& config, EventSink& events, ReplySink& replies);
  Engine(const EngineConfig& config, EngineListener& listener)
      : Engine(config, listener, listener) {}
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Admits one request; its reply goes to the ReplySink with `tag`, possibly
  // before submit returns (rejections, reads, dedupe hits).
  void submit(Command command, uint64_t tag);
  // Rejects a command at once for a reason found outside the engine (the
  // sender's key may not use it: forbidden). Nothing is applied or
  // remembered, so the same id from a sender that may is a new command.
  void refuse(const Command& command, uint64_t tag, RejectReason reason, std::string detail);
  // Optional: a caller holding a batch of commands calls this for each before
  // submitting them, so that their lookups overlap their cache misses.
  void prefetch(const Command& command) const;

  // Processes every shard outcome that is ready; returns how many. No syscall.
  size_t poll();
  // Ends a batch: staged tasks go to the shards, then the sinks commit.
  void commit();
  // Commits, blocks up to timeoutMs (-1: forever) for outcomes, then polls
  // and commits again.
  size_t wait(int timeoutMs);
  // Holds whose time ran out are expired at each commit(). An event loop
  // that sleeps should wake by then: milliseconds until the next deadline
  // (rounded up), or -1 when no hold is live.
  int msUntilNextExpiry();
  // Waits until no operation is in flight, or until a shard has failed.
  void drain();
  // The failure of a shard that stopped on a broken invariant, or empty.
  // Operations on a failed shard never finish; the owner should stop.
  std::string failure() const;

  // For an event loop that sleeps on wakeFd() among other fds:
  //   bool sleep = engine.prepareToSleep();   // commits; false: outcomes already wait
  //   poll(..., sleep ? timeout : 0);
  //   engine.wokeUp(wakeFd was readable);
  //   engine.poll(); ...; engine.commit();
  // Shards write wakeFd() only while the engine is prepared to sleep.
  bool prepareToSleep();
  void wokeUp(bool wakeFdReadable);
  int wakeFd() const { return wakeup_.fd(); }

  size_t inFlight() const { return inFlight_; }
  // ReadEvents being served from the journal, on the history thread.
  size_t historyPending() const { return history_ ? history_->pending() : 0; }
  const EventLog& log() const { return log_; }
  const PendingGate& gate() const { return gate_; }
  const DedupeWindow& dedupe() const { return dedupe_; }
  const HoldBook& holds() const { return holds_; }
  const EngineConfig& config() const { return config_; }
  // The id this engine's ReadEvents pages carry (config().serverId, or the
  // random one chosen for it); never 0.
  uint64_t serverId() const { return serverId_; }
  unsigned shardOfCustomer(std::string_view id) const {
    return router_.shardOf(AggregateKind::customer, id);
  }
  unsigned shardOfProduct(std::string_view id) const {
    return router_.shardOf(AggregateKind::product, id);
  }

  // ---- recovery: before the first submit ----
  // Takes back one journaled event, the next seq (headSeq() + 1), from its
  // message as the journal holds it: into the log, the dedupe window (its
  // commandId, with the outcome a retry gets), the stock the sequencer
  // tracks, and the aggregates, which finishRecovery() hands to the shards.
  // Never reads the clock. Throws std::runtime_error when the message is
  // not that event.
  void recover(kj::ArrayPtr<const capnp::word> message);
  // Recovery from a snapshot, before any recover(): takes its aggregates
  // (all or nothing; throws SnapshotCorrupt) and returns its info. The log
  // then starts at info.replayFrom, and recover() of the events up to
  // info.seq rebuilds only the log and the dedupe window.
  SnapshotInfo restoreSnapshot(const std::string& path);
  // Ends recovery: the shards take the recovered aggregates, and the
  // engine takes the journal's server id (0: keep its own).
  void finishRecovery(uint64_t serverId);

  // ---- test seams ----
  // Tasks sent to shard k after hold() wait until resume(); outcomes decided
  // before it are delivered. Holding is deterministic: no timing involved.
  void holdShard(unsigned k);
  void resumeShard(unsigned k);
  // The next step that touches this aggregate throws inside its handler.
  void injectCustomerFault(std::string_view customer);
  void injectProductFault(std::string_view product);
  // Shard k fails as on a broken invariant outside any command.
  void injectShardFailure(unsigned k);
  // Live state of every aggregate. Blocks; no shard may be held. Reserved
  // stock of buys in flight is not in it, so take it when inFlight() == 0.
  ShopState snapshot();

 private:
  // One admitted operation, from admission to final outcome.
  struct Op {
    Command command;
    std::vector<uint64_t> tags;  // the request and any retries attached to it
    Step step = Step::execute;   // the saga step in progress
    bool gated = false;          // holds a slot of command.customer()
    bool internal = false;       // the engine's own (an expiry): no reply, not remembered
  };

  // Admits an operation that passed every check: takes an op slot, marks
  // it in flight and dispatches its first step.
  void start(Command&& command, uint64_t tag, bool gated, bool internal);
  // Holds: fills in what the engine decides for a hold command (a new
  // hold's id and deadline; whose hold a confirm or release names), or
  // returns why it is refused before any shard sees it.
  std::optional<Rejection> admitHold(Command& command);
  // Why a hold that is not live is refused: how it ended, or never issued.
  Rejection endedHold(HoldId id) const;
  // Dispatches an ExpireHold for every live hold past its deadline.
  void expireDue();
  int64_t now() const;
  void stage(unsigned shard, ShardTask task);
  // Stages a new operation's first task, or holds it back while a snapshot
  // waits for the operations before it to finish.
  void dispatch(unsigned shard, ShardTask task);
  // The snapshot cut: every shard encodes its aggregates, then the held-back
  // operations go.
  void checkpoint();
  void onOutcome(ShardOutcome& outcome);
  void finish(uint32_t index, const ReplyView& reply, const DedupeOutcome& outcome);
  // Sequences, encodes and logs one event, and hands it to the EventSink.
  kj::ArrayPtr<const capnp::word> publish(const CommandId& id, EventBody&& body);
  // The same for an event its shard already encoded (encoded.size > 0):
  // copied, seq and time written.
  kj::ArrayPtr<const capnp::word> publish(const CommandId& id, EventBody&& body,
                                          const PreEncodedEvent& encoded);
  // Keeps stockBySeq_ and writes it into the stock a ProductRestocked
  // states; true when that changed the event.
  bool foldStock(EventBody& body);
  // A mutation's rejection is published (rejectNow); a query's is not.
  ReplyView reject(const Command& command, RejectReason reason, std::string detail);
  ReplyView rejectNow(const Command& command, RejectReason reason, std::string detail);
  void replyFromWindow(const CommandId& id, const DedupeOutcome& outcome, uint64_t tag);
  void serveRead(const Command& command, uint64_t tag);
  void serveStats(const Command& command, uint64_t tag);
  // Counts what GetStats reports about a published or recovered event.
  void count(const EventBody& body, bool recovered);
  // Replies with the pages the history reader has finished; returns how many.
  size_t serveHistory();
  void assertOwner() const;

  EngineConfig config_;
  uint64_t serverId_;
  EventSink& events_;
  ReplySink& replies_;
  std::thread::id owner_;
  ShardRouter router_;
  PendingGate gate_;
  DedupeWindow dedupe_;
  EventLog log_;
  EventEncoder encoder_;
  // Each product's stock as a replay of the log up to the head gives it.
  std::unordered_map<std::string, Quantity, StringHash, std::equal_to<>> stockBySeq_;
  std::vector<ShardState> recovering_;  // by shard, until finishRecovery()
  Seq restoredSeq_ = 0;                 // the snapshot recovery started from
  // Snapshots: due at nextSnapshotAt_; while barrier_ is up, new operations
  // wait in deferred_ (by shard) for the ones in flight to finish.
  Seq nextSnapshotAt_ = 0;
  bool barrier_ = false;
  std::vector<std::vector<ShardTask>> deferred_;
  size_t deferredOps_ = 0;
  // GetStats: counted as events are published or recovered.
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  uint64_t customers_ = 0;
  uint64_t commandsReceived_ = 0;
  std::array<uint64_t, 32> rejectedBy_{};  // by RejectReason, since this process started
  // (second, commandsReceived_) once a second, the last 10 s: the rate.
  std::deque<std::pair<int64_t, uint64_t>> receivedBySecond_;
  HoldBook holds_;
  ShopStats scratchStats_;
  Event scratchEvent_;         // reused by publish(): its strings keep their capacity
  std::string scratchDetail_;  // reused for details rebuilt from the window
  Wakeup wakeup_;
  OutcomeQueue outbox_;
  moodycamel::ConsumerToken outboxToken_;
  std::vector<std::unique_ptr<Op>> ops_;  // stable addresses: shards borrow op->command
  std::vector<uint32_t> freeOps_;
  size_t inFlight_ = 0;
  std::vector<ShardOutcome> drained_;
  std::vector<std::vector<ShardTask>> staged_;  // by shard, until commit()
  bool anyStaged_ = false;
  std::unique_ptr<HistoryReader> history_;      // with a journal
  std::vector<std::unique_ptr<Shard>> shards_;  // last: stops before the rest goes
};

}  // namespace shop
