#include "projections/activity.h"

#include <algorithm>

namespace shop::projections {
namespace {

int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

}  // namespace

int64_t systemNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- ActiveCustomers --------------------------------------------------------

ActiveCustomers::ActiveCustomers(Clock clock, std::chrono::nanoseconds window,
                                 const Customers& customers)
    : clock_(std::move(clock)),
      window_(window),
      slackNs_(window.count() / 1024),
      customers_(customers) {}

void ActiveCustomers::unlink(uint32_t row) {
  Link& link = links_[row];
  (link.older != kNone ? links_[link.older].newer : oldest_) = link.newer;
  (link.newer != kNone ? links_[link.newer].older : newest_) = link.older;
  link.older = link.newer = kNone;
}

void ActiveCustomers::pushBack(uint32_t row, int64_t nowNs) {
  Link& link = links_[row];
  link.placedNs = nowNs;
  link.older = newest_;
  link.newer = kNone;
  (newest_ != kNone ? links_[newest_].newer : oldest_) = row;
  newest_ = row;
}

void ActiveCustomers::onEvent(const Event& event) {
  std::string_view customer = event.customer();
  if (customer.empty()) return;
  uint32_t row = customers_.indexOfApplied(event);
  if (row == Customers::kNoRow) return;
  if (row >= links_.size()) links_.resize(std::max<size_t>(row + 1, links_.size() * 2));
  latestNs_ = std::max(latestNs_, event.timestampNs);  // the list stays in time order
  Link& link = links_[row];
  link.lastNs = latestNs_;
  if (!link.active) {
    link.active = true;
    ++count_;
    pushBack(row, latestNs_);
  } else if (latestNs_ - link.placedNs > slackNs_) {
    unlink(row);
    pushBack(row, latestNs_);
  }
}

void ActiveCustomers::expire() {
  int64_t cutoff = clock_() - window_.count();
  while (oldest_ != kNone && links_[oldest_].placedNs < cutoff) {
    uint32_t row = oldest_;
    Link& link = links_[row];
    unlink(row);
    if (link.lastNs >= cutoff) {
      pushBack(row, link.lastNs);  // active since it was placed: it goes back in line
    } else {
      link.active = false;
      --count_;
    }
  }
}

std::vector<ActiveCustomers::Entry> ActiveCustomers::recent(size_t limit) const {
  std::vector<Entry> out;
  for (uint32_t row = newest_; row != kNone && out.size() < limit; row = links_[row].older) {
    out.push_back(Entry{customers_.row(row).id, links_[row].lastNs});
  }
  return out;
}

void ActiveCustomers::onReset() {
  links_.clear();
  oldest_ = newest_ = kNone;
  count_ = 0;
  latestNs_ = 0;
}

// ---- GatePressure -----------------------------------------------------------

GatePressure::GatePressure(Clock clock, std::chrono::nanoseconds window)
    : clock_(std::move(clock)),
      window_(window),
      sliceNs_(std::max<int64_t>(1, window.count() / static_cast<int64_t>(kSlices))) {}

void GatePressure::dropSlicesBefore(int64_t firstLive) {
  for (auto& slice : slices_) {
    if (slice.index < 0 || slice.index >= firstLive) continue;
    for (const auto& [id, n] : slice.counts) {
      auto it = totals_.find(id);
      if (it->second == n) {
        totals_.erase(it);
      } else {
        it->second -= n;
      }
      total_ -= n;
    }
    slice.counts.clear();
    slice.index = -1;
  }
}

void GatePressure::onEvent(const Event& event) {
  const auto* r = std::get_if<OperationRejected>(&event.body);
  if (!r || r->reason != RejectReason::tooManyPending || r->customer.empty()) return;
  int64_t index = floorDiv(event.timestampNs, sliceNs_);
  Slice& slice = slices_[static_cast<size_t>(index) % kSlices];
  if (slice.index > index) return;  // older than anything still counted there
  if (slice.index != index) {
    dropSlicesBefore(index - static_cast<int64_t>(kSlices) + 1);
    slice.index = index;
  }
  ++slice.counts.try_emplace(r->customer, 0).first->second;
  ++totals_.try_emplace(r->customer, 0).first->second;
  ++total_;
}

void GatePressure::expire() {
  dropSlicesBefore(floorDiv(clock_(), sliceNs_) - static_cast<int64_t>(kSlices) + 1);
}

std::vector<GatePressure::Entry> GatePressure::hottest(size_t n) const {
  std::vector<Entry> all;
  all.reserve(totals_.size());
  for (const auto& [id, count] : totals_) all.push_back(Entry{id, count});
  auto more = [](const Entry& a, const Entry& b) {
    return a.rejections != b.rejections ? a.rejections > b.rejections : a.id < b.id;
  };
  n = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<ptrdiff_t>(n), all.end(), more);
  all.resize(n);
  return all;
}

void GatePressure::onReset() {
  for (auto& slice : slices_) {
    slice.counts.clear();
    slice.index = -1;
  }
  totals_.clear();
  total_ = 0;
}

// ---- Throughput -------------------------------------------------------------

Throughput::Throughput(Clock clock) : clock_(std::move(clock)) {}

void Throughput::onEvent(const Event& event) {
  bool rejection = std::holds_alternative<OperationRejected>(event.body);
  ++events_;
  rejections_ += rejection;
  int64_t second = floorDiv(event.timestampNs, 1'000'000'000);
  Second& slot = ring_[static_cast<size_t>(second) % kSeconds];
  if (slot.unixSecond > second) return;  // that slot holds a newer second now
  if (slot.unixSecond != second) slot = Second{second, 0, 0};
  ++slot.events;
  slot.rejections += rejection;
}

std::vector<Throughput::Second> Throughput::lastSeconds() const {
  int64_t now = floorDiv(clock_(), 1'000'000'000);
  std::vector<Second> out;
  out.reserve(kSeconds);
  for (int64_t s = now - static_cast<int64_t>(kSeconds) + 1; s <= now; ++s) {
    const Second& slot = ring_[static_cast<size_t>(s) % kSeconds];
    out.push_back(slot.unixSecond == s ? slot : Second{s, 0, 0});
  }
  return out;
}

void Throughput::onReset() {
  ring_ = {};
  events_ = rejections_ = 0;
}

}  // namespace shop::projections
