// The dedupe window: which commands are in flight, and the compact outcome
// of the last `capacity` completed ones, by commandId.
//
// Owned by the ingress thread; not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "core/domain.h"
#include "core/large_array.h"

namespace shop {

// What the window keeps of a completed command: enough to answer a retry.
// The reply itself is rebuilt from the event log while `seq` is retained.
struct DedupeOutcome {
  Seq seq = 0;  // the event the command produced: its effect, or its OperationRejected
  ReplyStatus status = ReplyStatus::accepted;         // accepted or rejected
  RejectReason reason = RejectReason::internalError;  // when rejected
};

// Bounded by count only: a count bounds memory exactly, and the client
// decides how long it retries.
//
// Completed entries live in a ring in completion order, so evicting the
// oldest is O(1); an open-addressing index (linear probing, backward-shift
// deletion) finds them by id: 32 bytes per entry plus 8 per index slot, no
// allocation per command. In-flight commands sit in a separate small table
// that stays in cache, so a command costs the big index one probe to learn
// it is new, one insert and one eviction.
class DedupeWindow {
 public:
  // `capacity` 0 turns deduplication off.
  explicit DedupeWindow(size_t capacity);
  DedupeWindow(const DedupeWindow&) = delete;
  DedupeWindow& operator=(const DedupeWindow&) = delete;

  struct Hit {
    enum class Kind : uint8_t { absent, inFlight, completed } kind = Kind::absent;
    uint32_t op = 0;        // inFlight: the op it was begun with
    DedupeOutcome outcome;  // completed
  };
  Hit find(const CommandId& id) const;
  // Starts loading the index slot that find(id) will probe, so that a batch
  // of lookups overlaps its cache misses instead of paying them in turn.
  void prefetch(const CommandId& id) const;

  // `id` is in flight as `op`.
  void begin(const CommandId& id, uint32_t op);
  // The command begun with `id` completed: remember its outcome, evicting
  // the oldest completed entry when the window is full.
  void complete(const CommandId& id, const DedupeOutcome& outcome);
  // The command begun with `id` ended with a transient outcome (nothing was
  // applied): forget it, so that a retry is a new attempt.
  void forget(const CommandId& id);
  // Remembers a command that completed without being in flight.
  void remember(const CommandId& id, const DedupeOutcome& outcome);

  size_t size() const { return completedCount_; }
  // The seq of the oldest outcome remembered (0: none). Outcomes are
  // remembered in seq order, so a replay of the log from this seq on
  // rebuilds the window.
  Seq oldestSeq() const { return completedCount_ ? ring_[ringStart_].outcome.seq : 0; }
  size_t capacity() const { return capacity_; }
  size_t inFlight() const { return inFlightUsed_; }

 private:
  struct Entry {
    CommandId id;
    DedupeOutcome outcome;
  };
  // A completed-index slot: `ref` 0 is empty, else ring index + 1. `tag` is
  // the low half of the id's hash: it holds the home slot and rules out most
  // id comparisons, so probing and deletion rarely read the ring.
  struct Slot {
    uint32_t ref = 0;
    uint32_t tag = 0;
  };
  struct InFlightSlot {
    CommandId id;
    uint32_t op = 0;
    uint32_t tag = 0;
    bool used = false;
  };

  size_t slotOf(const CommandId& id, uint64_t hash) const;  // SIZE_MAX when absent
  void insertCompleted(uint64_t hash, uint32_t ref);
  void evictOldest();
  uint32_t pushCompleted(const CommandId& id, const DedupeOutcome& outcome);  // its ref
  size_t inFlightSlotOf(const CommandId& id, uint64_t hash) const;  // SIZE_MAX when absent
  void growInFlight();

  size_t capacity_;
  LargeArray<Entry> ring_;  // completed entries, oldest at ringStart_
  size_t ringStart_ = 0;
  size_t completedCount_ = 0;
  LargeArray<Slot> index_;              // power-of-two size, at most ~70% full
  std::vector<InFlightSlot> inFlight_;  // power-of-two size, at most half full
  size_t inFlightUsed_ = 0;
};

}  // namespace shop
