#include "core/pending_gate.h"

#include <cstring>
#include <functional>

#include "core/check.h"

namespace shop {
namespace {
uint64_t hashOf(std::string_view id) {
  return std::hash<std::string_view>{}(id) | 1;
}
}  // namespace

PendingGate::PendingGate(uint32_t maxPending) : maxPending_(maxPending), slots_(1024) {}

size_t PendingGate::find(std::string_view customer, uint64_t hash) const {
  size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.count == 0) return SIZE_MAX;
    if (s.hash == hash && s.key() == customer) return i;
  }
}

bool PendingGate::tryAdmit(std::string_view customer) {
  SHOP_CHECK(customer.size() <= kMaxIdBytes, "customer id of %zu bytes", customer.size());
  uint64_t hash = hashOf(customer);
  if (size_t i = find(customer, hash); i != SIZE_MAX) {
    if (slots_[i].count >= maxPending_) return false;
    ++slots_[i].count;
    return true;
  }
  if (maxPending_ == 0) return false;
  if ((used_ + 1) * 2 > slots_.size()) grow();
  size_t mask = slots_.size() - 1;
  size_t i = hash & mask;
  while (slots_[i].count != 0) i = (i + 1) & mask;
  Slot& s = slots_[i];
  s.hash = hash;
  s.count = 1;
  s.length = static_cast<uint8_t>(customer.size());
  std::memcpy(s.id, customer.data(), customer.size());
  ++used_;
  return true;
}

void PendingGate::release(std::string_view customer) {
  size_t i = find(customer, hashOf(customer));
  SHOP_CHECK(i != SIZE_MAX, "release without a slot for a customer of %zu bytes", customer.size());
  if (--slots_[i].count == 0) erase(i);
}

uint32_t PendingGate::pending(std::string_view customer) const {
  size_t i = find(customer, hashOf(customer));
  return i == SIZE_MAX ? 0 : slots_[i].count;
}

// Backward-shift deletion: later members of the probe run move up, so that
// lookups never need tombstones.
void PendingGate::erase(size_t index) {
  size_t mask = slots_.size() - 1;
  size_t hole = index;
  for (size_t i = (index + 1) & mask; slots_[i].count != 0; i = (i + 1) & mask) {
    size_t home = slots_[i].hash & mask;
    // Move slot i into the hole when its home is not in (hole, i].
    if (((i - home) & mask) >= ((i - hole) & mask)) {
      slots_[hole] = slots_[i];
      hole = i;
    }
  }
  slots_[hole].count = 0;
  --used_;
}

void PendingGate::grow() {
  std::vector<Slot> old(slots_.size() * 2);
  old.swap(slots_);
  size_t mask = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.count == 0) continue;
    size_t i = s.hash & mask;
    while (slots_[i].count != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

}  // namespace shop
