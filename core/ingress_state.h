// State owned by the ingress thread (the socket thread in shopd): the
// per-customer pending-slot gate, the dedupe window and the event log.
// Owned by the ingress thread; not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/domain.h"

namespace shop {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// At most `maxPending` operations per customer from admission to final
// outcome. A customer with no pending operation costs nothing here.
class PendingGate {
 public:
  explicit PendingGate(uint32_t maxPending) : maxPending_(maxPending) {}

  // Takes a slot and returns true, or returns false and takes nothing.
  bool tryAdmit(std::string_view customer);
  // Frees a slot that tryAdmit took.
  void release(std::string_view customer);

  uint32_t pending(std::string_view customer) const;
  uint32_t maxPending() const { return maxPending_; }
  size_t customersWithPending() const { return slots_.size(); }

 private:
  uint32_t maxPending_;
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> slots_;
};

// Remembers the outcome of the last `capacity` completed commands by
// commandId, and which commands are in flight. Bounded by count only: a
// count bounds memory exactly, and the client decides how long it retries.
class DedupeWindow {
 public:
  static constexpr uint32_t kNoOp = UINT32_MAX;

  // Reserves the buckets up front (8 bytes per entry): a rehash of a full
  // window would stall the ingress for milliseconds.
  explicit DedupeWindow(size_t capacity) : capacity_(capacity) { entries_.reserve(capacity); }

  struct Entry {
    uint32_t op = kNoOp;  // in flight: the op's slot; kNoOp once done
    Reply reply;          // valid once done
  };

  // The entry for `id`, or null when the id is not in the window.
  const Entry* find(const CommandId& id) const;
  void begin(const CommandId& id, uint32_t op);
  // Records the final reply. With `remember` false the id is forgotten
  // instead (transient outcomes that a retry should try again).
  void complete(const CommandId& id, const Reply& reply, bool remember);

  size_t size() const { return entries_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  size_t capacity_;
  std::unordered_map<CommandId, Entry, CommandIdHash> entries_;
  std::deque<CommandId> completed_;  // completion order, oldest first
};

// The most recent `retention` events in seq order. Seq starts at 1 and has
// no gaps; events older than the retention are dropped from memory only.
class EventLog {
 public:
  explicit EventLog(size_t retention);

  // Assigns the next seq and keeps the event. Returns the stored event.
  const Event& append(Event event);

  Seq headSeq() const { return head_; }
  // The oldest seq still readable, or headSeq()+1 when nothing is retained.
  Seq oldestSeq() const { return head_ - size_ + 1; }
  size_t size() const { return size_; }
  size_t retention() const { return capacity_; }

  // Copies events with seq in [from, from + maxCount) that are retained.
  std::vector<Event> read(Seq from, size_t maxCount) const;
  const Event& at(Seq seq) const;

 private:
  static constexpr size_t kChunk = 1024;  // events per allocation
  Event& slot(Seq seq);

  size_t capacity_;
  // The ring, allocated chunk by chunk as it first fills; then it wraps.
  std::vector<std::unique_ptr<Event[]>> chunks_;
  Seq head_ = 0;
  size_t size_ = 0;
};

}  // namespace shop
