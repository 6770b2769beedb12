#include "core/dedupe_window.h"

#include <algorithm>
#include <bit>
#include <new>

#include "core/check.h"

namespace shop {
namespace {
uint64_t hashOf(const CommandId& id) {
  return CommandIdHash{}(id);
}
// The low 32 bits of the hash: they hold the home slot (the index never
// exceeds 2^32 slots) and tell most neighbours apart, so neither probing nor
// deletion has to read an id out of the ring.
uint32_t tagOf(uint64_t hash) {
  return static_cast<uint32_t>(hash);
}
}  // namespace

DedupeWindow::DedupeWindow(size_t capacity, size_t inFlightHint)
    : capacity_(capacity), ring_(capacity ? new Entry[capacity] : nullptr) {
  if (capacity_ == 0) return;
  SHOP_CHECK(capacity_ < kInFlightBit, "dedupe window of %zu entries", capacity_);
  // At most ~70% full at the expected peak, so probe runs stay short.
  indexSize_ = std::bit_ceil((capacity_ + inFlightHint) * 10 / 7 + 1);
  index_.reset(static_cast<Slot*>(std::calloc(indexSize_, sizeof(Slot))));
  if (!index_) throw std::bad_alloc();
}

const CommandId& DedupeWindow::idOf(uint32_t ref) const {
  uint32_t r = ref - 1;
  return (r & kInFlightBit) ? inFlightIds_[r & ~kInFlightBit] : ring_[r].id;
}

size_t DedupeWindow::slotOf(const CommandId& id, uint64_t hash) const {
  size_t mask = indexSize_ - 1;
  uint32_t tag = tagOf(hash);
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = index_[i];
    if (s.ref == 0) return SIZE_MAX;
    if (s.tag == tag && idOf(s.ref) == id) return i;
  }
}

DedupeWindow::Hit DedupeWindow::find(const CommandId& id) const {
  if (capacity_ == 0) return {};
  size_t i = slotOf(id, hashOf(id));
  if (i == SIZE_MAX) return {};
  uint32_t r = index_[i].ref - 1;
  if (r & kInFlightBit) return {Hit::Kind::inFlight, r & ~kInFlightBit, {}};
  return {Hit::Kind::completed, 0, ring_[r].outcome};
}

void DedupeWindow::insert(uint64_t hash, uint32_t ref) {
  if ((indexUsed_ + 1) * 10 > indexSize_ * 8) growIndex();
  size_t mask = indexSize_ - 1;
  size_t i = hash & mask;
  while (index_[i].ref != 0) i = (i + 1) & mask;
  index_[i] = Slot{ref, tagOf(hash)};
  ++indexUsed_;
}

// Backward-shift deletion: later members of the probe run move up, so that
// lookups never meet tombstones.
void DedupeWindow::eraseSlot(size_t index) {
  size_t mask = indexSize_ - 1;
  size_t hole = index;
  for (size_t i = (index + 1) & mask; index_[i].ref != 0; i = (i + 1) & mask) {
    size_t home = index_[i].tag & mask;
    if (((i - home) & mask) >= ((i - hole) & mask)) {
      index_[hole] = index_[i];
      hole = i;
    }
  }
  index_[hole] = Slot{};
  --indexUsed_;
}

void DedupeWindow::growIndex() {
  size_t oldSize = indexSize_;
  std::unique_ptr<Slot[], FreeDeleter> old(index_.release());
  indexSize_ = oldSize * 2;
  index_.reset(static_cast<Slot*>(std::calloc(indexSize_, sizeof(Slot))));
  if (!index_) throw std::bad_alloc();
  indexUsed_ = 0;
  for (size_t i = 0; i < oldSize; ++i) {
    if (old[i].ref != 0) insert(old[i].tag, old[i].ref);
  }
}

void DedupeWindow::begin(const CommandId& id, uint32_t op) {
  if (capacity_ == 0) return;
  SHOP_CHECK(op < kInFlightBit, "op %u", op);
  if (op >= inFlightIds_.size())
    inFlightIds_.resize(std::max<size_t>(op + 1, inFlightIds_.size() * 2));
  inFlightIds_[op] = id;
  insert(hashOf(id), (op | kInFlightBit) + 1);
  ++inFlightCount_;
}

void DedupeWindow::evictOldest() {
  const CommandId& oldest = ring_[ringStart_].id;
  size_t i = slotOf(oldest, hashOf(oldest));
  SHOP_CHECK(i != SIZE_MAX, "evicted entry missing from the index");
  eraseSlot(i);
  ringStart_ = (ringStart_ + 1) % capacity_;
  --completedCount_;
}

uint32_t DedupeWindow::pushCompleted(const CommandId& id, const DedupeOutcome& outcome) {
  if (completedCount_ == capacity_) evictOldest();
  size_t r = (ringStart_ + completedCount_) % capacity_;
  ring_[r] = Entry{id, outcome};
  ++completedCount_;
  return static_cast<uint32_t>(r) + 1;
}

void DedupeWindow::complete(const CommandId& id, const DedupeOutcome& outcome) {
  if (capacity_ == 0) return;
  // Evicting first may shift this id's slot, so find it afterwards.
  uint32_t ref = pushCompleted(id, outcome);
  uint64_t hash = hashOf(id);
  size_t i = slotOf(id, hash);
  SHOP_CHECK(i != SIZE_MAX && (index_[i].ref - 1) & kInFlightBit, "complete without begin");
  index_[i].ref = ref;
  --inFlightCount_;
}

void DedupeWindow::forget(const CommandId& id) {
  if (capacity_ == 0) return;
  size_t i = slotOf(id, hashOf(id));
  SHOP_CHECK(i != SIZE_MAX && (index_[i].ref - 1) & kInFlightBit, "forget without begin");
  eraseSlot(i);
  --inFlightCount_;
}

void DedupeWindow::remember(const CommandId& id, const DedupeOutcome& outcome) {
  if (capacity_ == 0) return;
  insert(hashOf(id), pushCompleted(id, outcome));
}

}  // namespace shop
