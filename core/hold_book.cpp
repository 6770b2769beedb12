#include "core/hold_book.h"

namespace shop {

void HoldBook::onEvent(Seq seq, const EventBody& body) {
  if (const auto* held = std::get_if<ProductHeld>(&body)) {
    addLive(held->holdId, held->customer, held->product, held->expiresAtNs);
    reserveBelow(held->holdId + 1);
  } else if (const auto* confirmed = std::get_if<HoldConfirmed>(&body)) {
    end(confirmed->holdId, End::confirmed, seq);
  } else if (const auto* released = std::get_if<HoldReleased>(&body)) {
    end(released->holdId, End::released, seq);
  } else if (const auto* expired = std::get_if<HoldExpired>(&body)) {
    end(expired->holdId, End::expired, seq);
  }
}

void HoldBook::addLive(HoldId id, std::string_view customer, std::string_view product,
                       int64_t expiresAtNs) {
  live_[id] = Live{std::string(customer), std::string(product), expiresAtNs, false, expiresAtNs};
  deadlines_.emplace(expiresAtNs, id);
  reserveBelow(id + 1);
}

void HoldBook::end(HoldId id, End how, Seq seq) {
  live_.erase(id);
  compact();
  if (endedCapacity_ == 0) return;
  if (ended_.size() >= endedCapacity_) {
    ended_.erase(endedOrder_.front());
    endedOrder_.pop_front();
  }
  if (ended_.emplace(id, Ended{how, seq}).second) endedOrder_.push_back(id);
}

HoldBook::Live* HoldBook::find(HoldId id) {
  auto it = live_.find(id);
  return it == live_.end() ? nullptr : &it->second;
}

const HoldBook::Ended* HoldBook::ended(HoldId id) const {
  auto it = ended_.find(id);
  return it == ended_.end() ? nullptr : &it->second;
}

void HoldBook::compact() {
  if (deadlines_.size() <= 2 * live_.size() + 1024) return;
  std::vector<std::pair<int64_t, HoldId>> kept;
  kept.reserve(live_.size());
  for (const auto& [id, live] : live_) {
    if (!live.expiring) kept.emplace_back(live.dueAtNs, id);
  }
  deadlines_ = decltype(deadlines_)(std::greater<>{}, std::move(kept));
}

std::optional<int64_t> HoldBook::nextDeadline() {
  while (!deadlines_.empty()) {
    auto [at, id] = deadlines_.top();
    Live* live = find(id);
    if (live && !live->expiring && live->dueAtNs == at) return at;
    deadlines_.pop();  // ended, already dispatched, or superseded
  }
  return std::nullopt;
}

void HoldBook::takeDue(int64_t nowNs, size_t max, const std::function<void(HoldId, Live&)>& fn) {
  for (size_t n = 0; n < max; ++n) {
    auto at = nextDeadline();
    if (!at || *at > nowNs) return;
    HoldId id = deadlines_.top().second;
    deadlines_.pop();
    Live& live = live_.at(id);
    live.expiring = true;
    fn(id, live);
  }
}

void HoldBook::retryExpiry(HoldId id, int64_t atNs) {
  if (Live* live = find(id)) {
    live->expiring = false;
    live->dueAtNs = atNs;
    deadlines_.emplace(atNs, id);
  }
}

}  // namespace shop
