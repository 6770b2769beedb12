// The per-customer pending-slot gate.
//
// Owned by the ingress thread; not thread-safe.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/validation.h"

namespace shop {

// At most `maxPending` operations per customer, from admission until the
// final outcome is published. A customer with nothing pending costs nothing.
//
// An open-addressing table (linear probing, backward-shift deletion) of
// inline ids: admitting and releasing allocate nothing once the table has
// grown to the number of customers pending at once.
class PendingGate {
 public:
  explicit PendingGate(uint32_t maxPending);

  // Takes a slot and returns true, or returns false and takes nothing.
  // `customer` is a valid id (at most kMaxIdBytes).
  bool tryAdmit(std::string_view customer);
  // Frees a slot that tryAdmit took.
  void release(std::string_view customer);

  uint32_t pending(std::string_view customer) const;
  uint32_t maxPending() const { return maxPending_; }
  size_t customersWithPending() const { return used_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t count = 0;  // 0: empty
    uint8_t length = 0;
    char id[kMaxIdBytes];
    std::string_view key() const { return {id, length}; }
  };

  size_t find(std::string_view customer, uint64_t hash) const;  // index, or SIZE_MAX
  void erase(size_t index);
  void grow();

  uint32_t maxPending_;
  std::vector<Slot> slots_;  // size is a power of two, at most half full
  size_t used_ = 0;
};

}  // namespace shop
