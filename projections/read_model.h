// The contract every read model keeps: pure state built from events in seq
// order, no sockets, no threads, and a clock passed in where time matters.
#pragma once

#include <chrono>
#include <climits>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/domain.h"

namespace shop::projections {

// Wall-clock time in ns since the Unix epoch, the unit of Event::timestampNs.
// Models that age their state take one, so that tests drive time by hand.
using Clock = std::function<int64_t()>;
int64_t systemNowNs();

// Lets string-keyed hash maps be searched with a string_view, without
// building a std::string per event.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// Totals over all time can pass the Int64 range where no single event does
// (a hostile catalog); they stop at the bound instead of wrapping.
inline int64_t addSaturating(int64_t a, int64_t b) {
  int64_t sum;
  if (!__builtin_add_overflow(a, b, &sum)) return sum;
  return b > 0 ? INT64_MAX : INT64_MIN;
}
inline int64_t productSaturating(int64_t a, int64_t b) {
  int64_t p;
  if (!__builtin_mul_overflow(a, b, &p)) return p;
  return (a > 0) == (b > 0) ? INT64_MAX : INT64_MIN;
}

// A model's apply() is idempotent by seq: an event at or below lastSeq() is
// ignored, so a subscriber that hands an event over twice changes nothing.
// Owned by one thread (the runner's, or a test's); not thread-safe.
class ReadModel {
 public:
  virtual ~ReadModel() = default;

  void apply(const Event& event) {
    if (event.seq <= lastSeq_) return;
    onEvent(event);
    lastSeq_ = event.seq;
  }
  Seq lastSeq() const { return lastSeq_; }
  // Empties the model: a new stream (another server) starts from nothing.
  void reset() {
    onReset();
    lastSeq_ = 0;
  }

 protected:
  virtual void onEvent(const Event& event) = 0;
  virtual void onReset() = 0;

 private:
  Seq lastSeq_ = 0;
};

}  // namespace shop::projections
