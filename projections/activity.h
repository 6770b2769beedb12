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

#include "projections/read_model.h"

namespace shop::projections {

// Customers with an event (rejections included) inside the last `window`.
// Events are applied after the customers model's, so a creation is seen.
// Owned by one thread; not thread-safe.
//
// The active customers form a list in order of last activity, oldest first:
// an event moves its customer to the back, and expiry takes from the front
// until the front is recent. Events arrive in seq order, whose timestamps
// do not go back (a clock that steps back is clamped), so both are O(1).
class ActiveCustomers final : public ReadModel {
 public:
  struct Entry {
    std::string id;
    int64_t lastActivityNs;
  };

  // `isCustomer` says whether an id names a customer that exists: a
  // rejection about any other id (unknown, invalid, or refused before the
  // customer was looked at, as tooManyPending is) shows nobody active.
  ActiveCustomers(Clock clock, std::chrono::nanoseconds window,
                  std::function<bool(std::string_view)> isCustomer);
  ActiveCustomers(const ActiveCustomers&) = delete;
  ActiveCustomers& operator=(const ActiveCustomers&) = delete;

  // Drops the customers idle for longer than the window, as of now.
  void expire();
  size_t count() const { return byId_.size(); }
  // The `limit` most recently active, newest first (call expire() first).
  std::vector<Entry> recent(size_t limit) const;
  std::chrono::nanoseconds window() const { return window_; }

 protected:
  void onEvent(const Event& event) override;
  void onReset() override;

 private:
  struct Node {
    int64_t lastNs = 0;
    Node* older = nullptr;
    Node* newer = nullptr;
    const std::string* id = nullptr;  // the key in byId_
  };
  void unlink(Node& node);
  void expireBefore(int64_t cutoffNs);

  Clock clock_;
  std::chrono::nanoseconds window_;
  std::function<bool(std::string_view)> isCustomer_;
  StringMap<Node> byId_;  // nodes do not move: the list links them
  Node* oldest_ = nullptr;
  Node* newest_ = nullptr;
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
