#include "projections/rejections.h"

namespace shop::projections {

void Rejections::onEvent(const Event& event) {
  const auto* r = std::get_if<OperationRejected>(&event.body);
  if (!r) return;
  ++total_;
  ++byReason_[slot(r->reason)];
  ++byCommand_[slot(r->command)];
  if (recent_.size() == kRecent) recent_.pop_front();
  recent_.push_back(Recent{event.seq, event.timestampNs, *r});
}

void Rejections::onReset() {
  total_ = 0;
  byReason_ = {};
  byCommand_ = {};
  recent_.clear();
}

}  // namespace shop::projections
