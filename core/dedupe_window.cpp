#include "core/dedupe_window.h"

#include <bit>

#include "core/check.h"

namespace shop {
namespace {

uint64_t hashOf(const CommandId& id) {
  return CommandIdHash{}(id);
}
uint32_t tagOf(uint64_t hash) {
  return static_cast<uint32_t>(hash);
}

// Backward-shift deletion from a linear-probing table: later members of the
// probe run move up into the hole unless their home lies after it, so that
// lookups never meet tombstones. `empty(i)` and `home(i)` read slot i.
template <typename Table, typename Empty, typename Home>
void backwardShiftErase(Table& table, size_t size, size_t index, Empty empty, Home home) {
  size_t mask = size - 1;
  size_t hole = index;
  for (size_t i = (index + 1) & mask; !empty(i); i = (i + 1) & mask) {
    if (((i - home(i)) & mask) >= ((i - hole) & mask)) {
      table[hole] = table[i];
      hole = i;
    }
  }
  table[hole] = {};
}

}  // namespace

DedupeWindow::DedupeWindow(size_t capacity)
    : capacity_(capacity),
      ring_(capacity),
      // At most ~70% full, so that probe runs stay short.
      index_(capacity ? std::bit_ceil(capacity * 10 / 7 + 1) : 0),
      inFlight_(capacity ? 1024 : 0) {
  SHOP_CHECK(index_.size() <= (size_t{1} << 32), "dedupe window of %zu entries", capacity_);
}

size_t DedupeWindow::slotOf(const CommandId& id, uint64_t hash) const {
  size_t mask = index_.size() - 1;
  uint32_t tag = tagOf(hash);
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = index_[i];
    if (s.ref == 0) return SIZE_MAX;
    if (s.tag == tag && ring_[s.ref - 1].id == id) return i;
  }
}

size_t DedupeWindow::inFlightSlotOf(const CommandId& id, uint64_t hash) const {
  size_t mask = inFlight_.size() - 1;
  uint32_t tag = tagOf(hash);
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const InFlightSlot& s = inFlight_[i];
    if (!s.used) return SIZE_MAX;
    if (s.tag == tag && s.id == id) return i;
  }
}

void DedupeWindow::prefetch(const CommandId& id) const {
  if (capacity_ == 0) return;
  __builtin_prefetch(&index_[hashOf(id) & (index_.size() - 1)]);
}

DedupeWindow::Hit DedupeWindow::find(const CommandId& id) const {
  if (capacity_ == 0) return {};
  uint64_t hash = hashOf(id);
  if (size_t i = inFlightSlotOf(id, hash); i != SIZE_MAX) {
    return {Hit::Kind::inFlight, inFlight_[i].op, {}};
  }
  size_t i = slotOf(id, hash);
  if (i == SIZE_MAX) return {};
  return {Hit::Kind::completed, 0, ring_[index_[i].ref - 1].outcome};
}

void DedupeWindow::begin(const CommandId& id, uint32_t op) {
  if (capacity_ == 0) return;
  if ((inFlightUsed_ + 1) * 2 > inFlight_.size()) growInFlight();
  uint64_t hash = hashOf(id);
  size_t mask = inFlight_.size() - 1;
  size_t i = hash & mask;
  while (inFlight_[i].used) i = (i + 1) & mask;
  inFlight_[i] = InFlightSlot{id, op, tagOf(hash), true};
  ++inFlightUsed_;
}

void DedupeWindow::growInFlight() {
  std::vector<InFlightSlot> old(inFlight_.size() * 2);
  old.swap(inFlight_);
  size_t mask = inFlight_.size() - 1;
  for (const InFlightSlot& s : old) {
    if (!s.used) continue;
    size_t i = s.tag & mask;
    while (inFlight_[i].used) i = (i + 1) & mask;
    inFlight_[i] = s;
  }
}

void DedupeWindow::forget(const CommandId& id) {
  if (capacity_ == 0) return;
  size_t i = inFlightSlotOf(id, hashOf(id));
  SHOP_CHECK(i != SIZE_MAX, "forget without begin");
  size_t mask = inFlight_.size() - 1;
  backwardShiftErase(
      inFlight_, inFlight_.size(), i, [this](size_t k) { return !inFlight_[k].used; },
      [this, mask](size_t k) { return inFlight_[k].tag & mask; });
  --inFlightUsed_;
}

void DedupeWindow::insertCompleted(uint64_t hash, uint32_t ref) {
  size_t mask = index_.size() - 1;
  size_t i = hash & mask;
  while (index_[i].ref != 0) i = (i + 1) & mask;
  index_[i] = Slot{ref, tagOf(hash)};
}

void DedupeWindow::evictOldest() {
  const CommandId& oldest = ring_[ringStart_].id;
  size_t i = slotOf(oldest, hashOf(oldest));
  SHOP_CHECK(i != SIZE_MAX, "evicted entry missing from the index");
  size_t mask = index_.size() - 1;
  backwardShiftErase(
      index_, index_.size(), i, [this](size_t k) { return index_[k].ref == 0; },
      [this, mask](size_t k) { return index_[k].tag & mask; });
  ringStart_ = (ringStart_ + 1) % capacity_;
  --completedCount_;
}

uint32_t DedupeWindow::pushCompleted(const CommandId& id, const DedupeOutcome& outcome) {
  if (completedCount_ == capacity_) {
    // The slot this eviction's successor-but-many will probe: by then it is
    // in cache, and evictions stop costing a cache miss each.
    constexpr size_t kEvictAhead = 16;
    if (capacity_ > kEvictAhead) prefetch(ring_[(ringStart_ + kEvictAhead) % capacity_].id);
    evictOldest();
  }
  size_t r = (ringStart_ + completedCount_) % capacity_;
  ring_[r] = Entry{id, outcome};
  ++completedCount_;
  return static_cast<uint32_t>(r) + 1;
}

void DedupeWindow::complete(const CommandId& id, const DedupeOutcome& outcome) {
  if (capacity_ == 0) return;
  forget(id);
  remember(id, outcome);
}

void DedupeWindow::remember(const CommandId& id, const DedupeOutcome& outcome) {
  if (capacity_ == 0) return;
  insertCompleted(hashOf(id), pushCompleted(id, outcome));
}

}  // namespace shop
