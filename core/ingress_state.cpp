#include "core/ingress_state.h"

#include <algorithm>
#include <stdexcept>

namespace shop {

bool PendingGate::tryAdmit(std::string_view customer) {
  auto it = slots_.find(customer);
  if (it == slots_.end()) {
    if (maxPending_ == 0) return false;
    slots_.emplace(std::string(customer), 1);
    return true;
  }
  if (it->second >= maxPending_) return false;
  ++it->second;
  return true;
}

void PendingGate::release(std::string_view customer) {
  auto it = slots_.find(customer);
  if (it == slots_.end()) throw std::logic_error("PendingGate::release without a slot");
  if (--it->second == 0) slots_.erase(it);
}

uint32_t PendingGate::pending(std::string_view customer) const {
  auto it = slots_.find(customer);
  return it == slots_.end() ? 0 : it->second;
}

const DedupeWindow::Entry* DedupeWindow::find(const CommandId& id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

void DedupeWindow::begin(const CommandId& id, uint32_t op) {
  if (capacity_ == 0) return;
  entries_[id] = Entry{op, {}};
}

void DedupeWindow::complete(const CommandId& id, const Reply& reply, bool remember) {
  if (capacity_ == 0) return;
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  if (!remember) {
    entries_.erase(it);
    return;
  }
  it->second.op = kNoOp;
  it->second.reply = reply;
  completed_.push_back(id);
  while (completed_.size() > capacity_) {
    entries_.erase(completed_.front());
    completed_.pop_front();
  }
}

EventLog::EventLog(size_t retention) : capacity_(std::max<size_t>(retention, 1)) {
  chunks_.reserve((capacity_ + kChunk - 1) / kChunk);
}

Event& EventLog::slot(Seq seq) {
  size_t index = (seq - 1) % capacity_;
  size_t chunk = index / kChunk;
  if (chunk == chunks_.size()) {
    // Still filling: one more fixed chunk. Nothing already stored moves, so
    // the ingress never pauses to relocate the log.
    chunks_.push_back(std::make_unique<Event[]>(std::min(kChunk, capacity_ - chunk * kChunk)));
  }
  return chunks_[chunk][index % kChunk];
}

const Event& EventLog::at(Seq seq) const {
  size_t index = (seq - 1) % capacity_;
  return chunks_[index / kChunk][index % kChunk];
}

const Event& EventLog::append(Event event) {
  event.seq = ++head_;
  Event& stored = slot(event.seq);
  stored = std::move(event);
  size_ = std::min(size_ + 1, capacity_);
  return stored;
}

std::vector<Event> EventLog::read(Seq from, size_t maxCount) const {
  std::vector<Event> out;
  Seq first = std::max(from, oldestSeq());
  if (first > head_) return out;
  Seq last = std::min<Seq>(head_, first + std::min<Seq>(maxCount, head_ - first + 1) - 1);
  out.reserve(last - first + 1);
  for (Seq s = first; s <= last; ++s) out.push_back(at(s));
  return out;
}

}  // namespace shop
