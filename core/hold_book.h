// The ingress's register of holds: which hold ids are live, whose they are,
// and when each expires. Kept from the events as they are sequenced (and as
// recovery replays them), so it always says what the log says.
//
// The customer aggregate decides whether a hold can be confirmed, released
// or expired; the book only routes those commands to the customer's shard,
// answers at once for ids that were never issued or already ended, and runs
// the expiry timer. Owned by the ingress thread; not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/domain.h"

namespace shop {

class HoldBook {
 public:
  struct Live {
    std::string customer;
    std::string product;
    int64_t expiresAtNs = 0;
    bool expiring = false;  // its ExpireHold was dispatched
    int64_t dueAtNs = 0;    // when the timer takes it: the deadline, or a retry's time
  };
  // How a hold ended, for a late confirmation's answer.
  enum class End : uint8_t { confirmed, released, expired };
  struct Ended {
    End how = End::confirmed;
    Seq seq = 0;
  };

  // `endedCapacity`: ended holds remembered for precise answers.
  explicit HoldBook(size_t endedCapacity = 65'536) : endedCapacity_(endedCapacity) {}

  // A fresh id, never 0 and never one issued before (in this history).
  HoldId allocate() { return nextId_++; }
  HoldId nextId() const { return nextId_; }
  // Recovery: ids below `next` are taken.
  void reserveBelow(HoldId next) {
    if (next > nextId_) nextId_ = next;
  }

  // Keeps the book from a sequenced (or recovered) event.
  void onEvent(Seq seq, const EventBody& body);
  // Recovery from a snapshot: a hold live at its cut.
  void addLive(HoldId id, std::string_view customer, std::string_view product, int64_t expiresAtNs);

  Live* find(HoldId id);
  const Ended* ended(HoldId id) const;
  size_t liveCount() const { return live_.size(); }

  // Up to `max` holds whose deadline is <= nowNs and whose expiry was not
  // yet dispatched, earliest first, marked as dispatched; `fn(id, live)`
  // for each.
  void takeDue(int64_t nowNs, size_t max, const std::function<void(HoldId, Live&)>& fn);
  // An expiry that failed (a fault): it is due again at `atNs`.
  void retryExpiry(HoldId id, int64_t atNs);
  // The earliest deadline not yet dispatched, if any.
  std::optional<int64_t> nextDeadline();

 private:
  void end(HoldId id, End how, Seq seq);
  // Drops the heap's entries of holds that ended, once they outnumber the
  // live ones: the heap stays proportional to the live holds.
  void compact();

  std::unordered_map<HoldId, Live> live_;
  // (deadline, id), earliest first; entries of ended or dispatched holds are
  // dropped when they reach the top.
  std::priority_queue<std::pair<int64_t, HoldId>, std::vector<std::pair<int64_t, HoldId>>,
                      std::greater<>>
      deadlines_;
  std::unordered_map<HoldId, Ended> ended_;
  std::deque<HoldId> endedOrder_;
  size_t endedCapacity_;
  HoldId nextId_ = 1;
};

}  // namespace shop
