// The event log: the most recent `retention` events as their encoded Cap'n
// Proto messages, in seq order.
//
// Owned by the ingress thread; not thread-safe.
#pragma once

#include <capnp/common.h>
#include <kj/common.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/domain.h"

namespace shop {

// Seq starts at 1 and has no gaps; events older than the retention leave
// memory only. Each entry holds one standard-framed message (segment table
// and segments, not packed): the bytes the PUB socket sends, the accepted
// reply embeds and ReadEvents pages copy, so an event is encoded once.
//
// Storage is a list of fixed chunks, taken as the log first fills and
// recycled once every event in them has left retention: appending never
// moves stored events (no relocation pause) and allocates nothing once the
// log is full.
class EventLog {
 public:
  explicit EventLog(size_t retention);
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Assigns seq headSeq()+1 and returns `words` words of storage for its
  // message, evicting the oldest event when the log is full. The caller fills
  // all of it before the next call. Valid until that seq leaves retention.
  kj::ArrayPtr<capnp::word> append(size_t words);

  // Before the first append: the log's first seq is head + 1 (recovery
  // from a snapshot reads the journal from there).
  void startAfter(Seq head);

  Seq headSeq() const { return head_; }
  // The oldest seq still readable, or headSeq()+1 when nothing is retained.
  Seq oldestSeq() const { return head_ - size_ + 1; }
  bool retains(Seq seq) const { return seq >= oldestSeq() && seq <= head_ && seq != 0; }
  size_t size() const { return size_; }
  size_t retention() const { return capacity_; }
  // Bytes of storage held, retained events and spare chunks together.
  size_t storageBytes() const { return storageWords_ * sizeof(capnp::word); }

  // The message of a retained `seq`.
  kj::ArrayPtr<const capnp::word> at(Seq seq) const;

 private:
  static constexpr size_t kChunkWords = 32 * 1024;  // 256 KiB

  struct Slot {
    uint32_t chunk = 0;
    uint32_t offset = 0;  // in words
    uint32_t words = 0;
  };
  struct Chunk {
    std::unique_ptr<capnp::word[]> words;
    size_t capacity = 0;  // in words
    size_t used = 0;
    Seq lastSeq = 0;  // the newest seq stored here; final once the chunk is sealed
  };

  Slot& slot(Seq seq) { return slots_[(seq - 1) % capacity_]; }
  const Slot& slot(Seq seq) const { return slots_[(seq - 1) % capacity_]; }
  void evictOldest();
  void startChunk(size_t words);

  size_t capacity_;
  // One slot per retained seq, a ring. Default-initialised: untouched pages
  // cost no memory until the log grows into them.
  std::unique_ptr<Slot[]> slots_;
  std::vector<Chunk> chunks_;
  std::vector<uint32_t> spare_;  // chunks whose events have all left retention
  uint32_t current_ = 0;         // the chunk appends go to
  size_t storageWords_ = 0;
  Seq head_ = 0;
  size_t size_ = 0;
};

}  // namespace shop
