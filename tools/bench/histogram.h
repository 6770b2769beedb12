// Latency samples and their percentiles. Owned by one thread; merge() joins
// per-thread recorders after the run.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace shop::bench {

class LatencyRecorder {
 public:
  void record(int64_t ns) { samples_.push_back(ns < 0 ? 0 : ns); }
  void merge(const LatencyRecorder& other) {
    samples_.insert(samples_.end(), other.samples_.begin(), other.samples_.end());
  }
  size_t count() const { return samples_.size(); }
  // The q-quantile (0..1) in microseconds; 0 with no samples.
  double percentileUs(double q) {
    if (samples_.empty()) return 0;
    size_t k = std::min(samples_.size() - 1,
                        static_cast<size_t>(q * static_cast<double>(samples_.size())));
    std::nth_element(samples_.begin(), samples_.begin() + static_cast<long>(k), samples_.end());
    return static_cast<double>(samples_[k]) / 1000.0;
  }

 private:
  std::vector<int64_t> samples_;
};

struct LatencySummary {
  double p50Us = 0, p99Us = 0, p999Us = 0;
  static LatencySummary of(LatencyRecorder& r) {
    return {r.percentileUs(0.50), r.percentileUs(0.99), r.percentileUs(0.999)};
  }
};

}  // namespace shop::bench
