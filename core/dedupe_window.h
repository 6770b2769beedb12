// The dedupe window: which commands are in flight, and the compact outcome
// of the last `capacity` completed ones, by commandId.
//
// Owned by the ingress thread; not thread-safe.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "core/domain.h"

namespace shop {

// What the window keeps of a completed command: enough to answer a retry.
// The reply itself is rebuilt from the event log while `seq` is retained.
struct DedupeOutcome {
  Seq seq = 0;  // the event the command produced: its effect, or its OperationRejected
  ReplyStatus status = ReplyStatus::accepted;         // accepted or rejected
  RejectReason reason = RejectReason::internalError;  // when rejected
};

// Bounded by count only: a count bounds memory exactly, and the client
// decides how long it retries. Completed entries live in a ring in
// completion order, so evicting the oldest is O(1); an open-addressing
// index (linear probing, backward-shift deletion) finds them by id. 32 bytes
// per completed entry plus 8 per index slot; no allocation per command.
class DedupeWindow {
 public:
  // `capacity` 0 turns deduplication off. The index is sized for `capacity`
  // completed plus `inFlightHint` in-flight entries and grows past that.
  explicit DedupeWindow(size_t capacity, size_t inFlightHint = 1 << 16);
  DedupeWindow(const DedupeWindow&) = delete;
  DedupeWindow& operator=(const DedupeWindow&) = delete;

  struct Hit {
    enum class Kind : uint8_t { absent, inFlight, completed } kind = Kind::absent;
    uint32_t op = 0;        // inFlight: the op it was begun with
    DedupeOutcome outcome;  // completed
  };
  Hit find(const CommandId& id) const;

  // `id` is in flight as `op` (op values are small: they index a table).
  void begin(const CommandId& id, uint32_t op);
  // The command begun as `op` completed: remember its outcome, evicting the
  // oldest completed entry when the window is full.
  void complete(const CommandId& id, const DedupeOutcome& outcome);
  // The command begun with `id` ended with a transient outcome (nothing was
  // applied): forget it, so that a retry is a new attempt.
  void forget(const CommandId& id);
  // Remembers a command that completed without being in flight.
  void remember(const CommandId& id, const DedupeOutcome& outcome);

  size_t size() const { return completedCount_; }
  size_t capacity() const { return capacity_; }
  size_t inFlight() const { return inFlightCount_; }

 private:
  struct Entry {
    CommandId id;
    DedupeOutcome outcome;
  };
  // An index slot: 0 is empty; else `ref` - 1 is a ring index, or an op index
  // with kInFlightBit. `tag` is the low half of the id's hash: it gives the
  // home slot and skips most id comparisons.
  struct Slot {
    uint32_t ref = 0;
    uint32_t tag = 0;
  };
  static constexpr uint32_t kInFlightBit = 0x8000'0000u;

  const CommandId& idOf(uint32_t ref) const;
  size_t slotOf(const CommandId& id, uint64_t hash) const;  // SIZE_MAX when absent
  void insert(uint64_t hash, uint32_t ref);
  void eraseSlot(size_t index);
  void evictOldest();
  uint32_t pushCompleted(const CommandId& id, const DedupeOutcome& outcome);  // ring ref
  void growIndex();

  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };

  size_t capacity_;
  // Completed entries, oldest at ringStart_. Default-initialised: pages the
  // window has not reached yet cost no memory.
  std::unique_ptr<Entry[]> ring_;
  size_t ringStart_ = 0;
  size_t completedCount_ = 0;
  std::vector<CommandId> inFlightIds_;  // by op
  size_t inFlightCount_ = 0;
  std::unique_ptr<Slot[], FreeDeleter> index_;  // calloc: zero pages until touched
  size_t indexSize_ = 0;                        // a power of two
  size_t indexUsed_ = 0;
};

}  // namespace shop
