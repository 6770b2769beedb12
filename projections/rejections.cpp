#include "projections/rejections.h"

#include <algorithm>

namespace shop::projections {

void Rejections::onEvent(const Event& event) {
  const auto* r = std::get_if<OperationRejected>(&event.body);
  if (!r) return;
  ++total_;
  ++byReason_[slot(r->reason)];
  ++byCommand_[slot(r->command)];
  Recent& slot = ring_[next_];
  slot.seq = event.seq;
  slot.timestampNs = event.timestampNs;
  slot.rejection.reason = r->reason;
  slot.rejection.command = r->command;
  slot.rejection.customer.assign(r->customer);
  slot.rejection.product.assign(r->product);
  slot.rejection.detail.assign(r->detail);
  next_ = (next_ + 1) % kRecent;
  kept_ = std::min(kept_ + 1, kRecent);
}

void Rejections::onReset() {
  total_ = 0;
  byReason_ = {};
  byCommand_ = {};
  kept_ = next_ = 0;
}

std::vector<const Rejections::Recent*> Rejections::recent() const {
  std::vector<const Recent*> out;
  out.reserve(kept_);
  for (size_t k = 0; k < kept_; ++k) out.push_back(&ring_[(next_ + kRecent - kept_ + k) % kRecent]);
  return out;
}

}  // namespace shop::projections
