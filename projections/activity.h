// Read models that look at a window of recent time: active customers, the
// customers pressing hardest on the pending-slot gate, and throughput per
// second. Each takes a Clock, so that tests move time by hand.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "projections/customers.h"
#include "projections/read_model.h"

namespace shop::projections {

// Customers with an event (rejections included) inside the last `window`.
// Owned by one thread; not thread-safe.
//
// State is kept by the customers model's row (applied first, so a creation
// is seen), so an event costs no lookup of its own, and a rejection about an
// id that is no customer (unknown, invalid, or refused before the customer
// was looked at, as tooManyPending is) shows nobody active.
//
// The active customers form a list, oldest first: expiry takes from the
// front. An event moves its customer to the back, unless it was placed
// there less than window/1024 ago, when only its time changes: hot customers
// then cost no relinking. So the list is only nearly in order, and an idle
// customer can leave a little after its window ends (by window/1024 in the
// usual case); expiry never drops one whose last event is inside the
// window, and count() is exact up to that. Timestamps that step back are
// clamped.
class ActiveCustomers final : public ReadModel {
 public:
  struct Entry {
    std::string id;
    int64_t lastActivityNs;
  };

  ActiveCustomers(Clock clock, std::chrono::nanoseconds window, const Customers& customers);
  ActiveCustomers(const ActiveCustomers&) = delete;
  ActiveCustomers& operator=(const ActiveCustomers&) = delete;

  // Drops the customers idle for longer than the window, as of now.
  void expire();
  // Starts loading the state of `event`'s customer, so that other models'
  // work hides the cache miss before apply(event) needs it.
  void prefetch(const Event& event) const { prefetchRow(customers_.indexOfApplied(event)); }
  // The same for the customer in row `row` of the customers model.
  void prefetchRow(uint32_t row) const {
    if (row < links_.size()) __builtin_prefetch(&links_[row]);
  }
  size_t count() const { return count_; }
  // The `limit` most recently placed, newest first (call expire() first).
  std::vector<Entry> recent(size_t limit) const;
  std::chrono::nanoseconds window() const { return window_; }

 protected:
  void onEvent(const Event& event) override;
  void onReset() override;

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Link {
    int64_t lastNs = 0;    // the customer's newest event
    int64_t placedNs = 0;  // when it was put at the back
    uint32_t older = kNone;
    uint32_t newer = kNone;
    bool active = false;
  };
  void unlink(uint32_t row);
  void pushBack(uint32_t row, int64_t nowNs);

  Clock clock_;
  std::chrono::nanoseconds window_;
  int64_t slackNs_;
  const Customers& customers_;
  std::vector<Link> links_;  // by customers' row
  uint32_t oldest_ = kNone;
  uint32_t newest_ = kNone;
  size_t count_ = 0;
  int64_t latestNs_ = 0;  // the newest timestamp applied
};

// How often each customer was rejected `tooManyPending` in the last window:
// the customers the gate holds back most. Counted in time slices (the window
// over kSlices), so old counts leave a slice at a time.
// Owned by one thread; not thread-safe.
class GatePressure final : public ReadModel {
 public:
  static constexpr size_t kSlices = 60;
  struct Entry {
    std::string id;
    uint64_t rejections;
  };

  GatePressure(Clock clock, std::chrono::nanoseconds window);

  void expire();
  // The `n` customers with the most rejections in the window, most first; ties by id.
  std::vector<Entry> hottest(size_t n) const;
  uint64_t total() const { return total_; }  // in the window
  std::chrono::nanoseconds window() const { return window_; }

 protected:
  void onEvent(const Event& event) override;
  void onReset() override;

 private:
  struct Slice {
    int64_t index = -1;  // time / sliceNs; -1: empty
    StringMap<uint64_t> counts;
  };
  void dropSlicesBefore(int64_t firstLive);

  Clock clock_;
  std::chrono::nanoseconds window_;
  int64_t sliceNs_;
  std::array<Slice, kSlices> slices_;
  StringMap<uint64_t> totals_;  // the sum of the live slices
  uint64_t total_ = 0;
};

// Events and rejections per second, for the last kSeconds seconds.
// Owned by one thread; not thread-safe.
class Throughput final : public ReadModel {
 public:
  static constexpr size_t kSeconds = 300;
  struct Second {
    int64_t unixSecond = 0;
    uint64_t events = 0;
    uint64_t rejections = 0;
  };

  explicit Throughput(Clock clock);
  // Oldest first, kSeconds of them, ending with the current second; seconds
  // without events are zeros.
  std::vector<Second> lastSeconds() const;
  uint64_t events() const { return events_; }  // over all time
  uint64_t rejections() const { return rejections_; }

 protected:
  void onEvent(const Event& event) override;
  void onReset() override;

 private:
  Clock clock_;
  std::array<Second, kSeconds> ring_{};  // by unixSecond % kSeconds
  uint64_t events_ = 0;
  uint64_t rejections_ = 0;
};

}  // namespace shop::projections
