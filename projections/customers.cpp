#include "projections/customers.h"

#include <algorithm>

namespace shop::projections {
namespace {

Holding* holdingOf(CustomerRow& row, std::string_view product) {
  for (auto& h : row.holdings) {
    if (h.product == product) return &h;
  }
  return nullptr;
}

// Units bought, directly or by confirming a hold.
void bought(CustomerRow& row, const std::string& product, Quantity quantity, Money unitPrice) {
  Holding* h = holdingOf(row, product);
  if (!h) h = &row.holdings.emplace_back(Holding{product, 0, 0});
  h->quantity += quantity;
  h->paid += quantity * unitPrice;  // the server checked it stays in range
}

// A hold ended. A model rebuilt from the oldest retained event may not have
// seen it placed: never below zero.
void endHold(CustomerRow& row) {
  if (row.liveHolds > 0) --row.liveHolds;
}

uint64_t hashOf(std::string_view id) {
  return std::hash<std::string_view>{}(id);
}

}  // namespace

template <typename Match>
uint32_t Customers::probe(uint64_t hash, Match match) const {
  size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    uint64_t slot = slots_[i];
    if (slot == 0) return kNoRow;
    if ((slot >> 32) == (hash >> 32)) {
      auto row = static_cast<uint32_t>(slot) - 1;
      if (match(row)) return row;
    }
  }
}

uint32_t Customers::indexOf(std::string_view id) const {
  if (slots_.empty()) return kNoRow;
  return probe(hashOf(id), [&](uint32_t row) { return rows_[row].id == id; });
}

void Customers::prefetchSlot(std::string_view id) const {
  if (slots_.empty() || id.empty()) return;
  __builtin_prefetch(&slots_[hashOf(id) & (slots_.size() - 1)]);
}

uint32_t Customers::prefetchRow(std::string_view id) const {
  if (slots_.empty() || id.empty()) return kNoRow;
  // The first row whose hash matches: reading its id would wait for the row.
  uint32_t row = probe(hashOf(id), [](uint32_t) { return true; });
  if (row != kNoRow) __builtin_prefetch(&rows_[row]);
  return row;
}

const CustomerRow* Customers::find(std::string_view id) const {
  uint32_t row = indexOf(id);
  return row == kNoRow ? nullptr : &rows_[row];
}

void Customers::insertIndex(uint32_t row, uint64_t hash) {
  size_t mask = slots_.size() - 1;
  size_t i = hash & mask;
  while (slots_[i] != 0) i = (i + 1) & mask;
  slots_[i] = (hash & 0xFFFF'FFFF'0000'0000) | (uint64_t{row} + 1);
}

void Customers::onEvent(const Event& event) {
  appliedSeq_ = event.seq;
  appliedRow_ = kNoRow;
  if (const auto* e = std::get_if<CustomerCreated>(&event.body)) {
    if (uint32_t existing = indexOf(e->customer); existing != kNoRow) {
      appliedRow_ = existing;
      return;  // one creation per id; a second cannot be published
    }
    auto index = static_cast<uint32_t>(rows_.size());
    appliedRow_ = index;
    rows_.push_back(CustomerRow{.id = e->customer,
                                .balance = e->initialBalance,
                                .lastActivityNs = event.timestampNs,
                                .accepted = 1});
    if (2 * (rows_.size()) > slots_.size()) {
      // At most half full: double, and place every row again.
      slots_.assign(std::max<size_t>(1024, 2 * slots_.size()), 0);
      for (uint32_t k = 0; k < rows_.size(); ++k) insertIndex(k, hashOf(rows_[k].id));
    } else {
      insertIndex(index, hashOf(e->customer));
    }
    unsorted_.push_back(index);
    if (unsorted_.size() > 4096 && unsorted_.size() > sorted_.size() / 8) sortIndex();
    return;
  }
  if (event.customer().empty()) return;
  appliedRow_ = indexOf(event.customer());
  if (appliedRow_ == kNoRow) return;  // a rejection about an unknown or invalid customer
  CustomerRow* row = &rows_[appliedRow_];
  row->lastActivityNs = std::max(row->lastActivityNs, event.timestampNs);
  if (const auto* e = std::get_if<FundsDeposited>(&event.body)) {
    row->balance = e->balance;
    ++row->accepted;
  } else if (const auto* e = std::get_if<ProductBought>(&event.body)) {
    row->balance = e->balance;
    ++row->accepted;
    bought(*row, e->product, e->quantity, e->unitPrice);
  } else if (const auto* e = std::get_if<HoldConfirmed>(&event.body)) {
    row->balance = e->balance;
    ++row->accepted;
    endHold(*row);
    bought(*row, e->product, e->quantity, e->unitPrice);
  } else if (std::holds_alternative<ProductHeld>(event.body)) {
    ++row->accepted;
    ++row->liveHolds;
  } else if (std::holds_alternative<HoldReleased>(event.body) ||
             std::holds_alternative<HoldExpired>(event.body)) {
    ++row->accepted;
    endHold(*row);
  } else if (const auto* e = std::get_if<ProductReturned>(&event.body)) {
    row->balance = e->balance;
    ++row->accepted;
    // The refund is what the returned units were paid (newest first), so
    // what is left was paid the rest.
    if (Holding* h = holdingOf(*row, e->product)) {
      h->quantity -= e->quantity;
      h->paid -= e->refund;
      if (h->quantity <= 0) {
        std::erase_if(row->holdings, [e](const Holding& x) { return x.product == e->product; });
      }
    }
  } else if (std::holds_alternative<OperationRejected>(event.body)) {
    ++row->rejected;
  }
}

void Customers::onReset() {
  slots_.clear();
  appliedSeq_ = 0;
  appliedRow_ = kNoRow;
  rows_.clear();
  sorted_.clear();
  unsorted_.clear();
}

void Customers::sortIndex() {
  if (unsorted_.empty()) return;
  auto byId = [this](uint32_t a, uint32_t b) { return rows_[a].id < rows_[b].id; };
  std::sort(unsorted_.begin(), unsorted_.end(), byId);
  size_t middle = sorted_.size();
  sorted_.insert(sorted_.end(), unsorted_.begin(), unsorted_.end());
  std::inplace_merge(sorted_.begin(), sorted_.begin() + static_cast<ptrdiff_t>(middle),
                     sorted_.end(), byId);
  unsorted_.clear();
}

CustomerPage Customers::page(const CustomerQuery& query) {
  sortIndex();
  // The ids that start with the prefix are one run of the id order.
  auto first = std::lower_bound(
      sorted_.begin(), sorted_.end(), query.prefix,
      [this](uint32_t row, std::string_view prefix) { return rows_[row].id < prefix; });
  auto last = sorted_.end();
  if (!query.prefix.empty()) {
    // Every id from `first` on is >= the prefix, so those that start with it
    // come first: a binary search finds the end of the run too.
    last = std::partition_point(first, sorted_.end(), [this, &query](uint32_t row) {
      return std::string_view(rows_[row].id).starts_with(query.prefix);
    });
  }
  CustomerPage out;
  out.total = static_cast<size_t>(last - first);
  if (query.offset >= out.total || query.limit == 0) return out;
  size_t count = std::min(query.limit, out.total - query.offset);
  out.rows.reserve(count);
  if (query.order == CustomerOrder::id) {
    for (size_t k = 0; k < count; ++k) {
      size_t at = query.descending ? out.total - 1 - query.offset - k : query.offset + k;
      out.rows.push_back(&rows_[first[static_cast<ptrdiff_t>(at)]]);
    }
    return out;
  }
  // By a value: select the page's rows without sorting the whole run. Ties
  // go by id, so that pages do not overlap.
  std::vector<uint32_t> run(first, last);
  auto before = [this, &query](uint32_t a, uint32_t b) {
    const CustomerRow& x = rows_[a];
    const CustomerRow& y = rows_[b];
    int64_t kx = query.order == CustomerOrder::balance ? x.balance : x.lastActivityNs;
    int64_t ky = query.order == CustomerOrder::balance ? y.balance : y.lastActivityNs;
    if (kx != ky) return query.descending ? kx > ky : kx < ky;
    return x.id < y.id;
  };
  auto pageBegin = run.begin() + static_cast<ptrdiff_t>(query.offset);
  auto pageEnd = pageBegin + static_cast<ptrdiff_t>(count);
  std::nth_element(run.begin(), pageBegin, run.end(), before);
  std::partial_sort(pageBegin, pageEnd, run.end(), before);
  for (auto it = pageBegin; it != pageEnd; ++it) out.rows.push_back(&rows_[*it]);
  return out;
}

size_t Customers::memoryBytes() const {
  size_t bytes = rows_.capacity() * sizeof(CustomerRow) +
                 (sorted_.capacity() + unsorted_.capacity()) * sizeof(uint32_t) +
                 slots_.capacity() * sizeof(uint64_t);
  for (const auto& row : rows_) {
    if (row.id.capacity() > 15) bytes += row.id.capacity() + 1;
    bytes += row.holdings.capacity() * sizeof(Holding);
    for (const auto& h : row.holdings) {
      if (h.product.capacity() > 15) bytes += h.product.capacity() + 1;
    }
  }
  return bytes;
}

}  // namespace shop::projections
