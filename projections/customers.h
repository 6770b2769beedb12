// The customers read model: balance, holdings, counts and last activity per
// customer, with an id index that pages in id order without sorting.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "projections/read_model.h"

namespace shop::projections {

struct CustomerRow {
  std::string id;
  Money balance = 0;              // minor units
  int64_t lastActivityNs = 0;     // the newest event about this customer, rejections included
  uint32_t accepted = 0;          // events about the customer that changed it
  uint32_t rejected = 0;          // OperationRejected events naming it
  uint32_t liveHolds = 0;         // holds placed and not yet ended
  std::vector<Holding> holdings;  // units held and what they cost, by product
};

enum class CustomerOrder : uint8_t { id, balance, activity };

struct CustomerQuery {
  std::string_view prefix;  // ids that start with it; empty: all
  CustomerOrder order = CustomerOrder::id;
  bool descending = false;
  size_t offset = 0;
  size_t limit = 50;
};

// Borrowed rows: valid until the model next changes.
struct CustomerPage {
  size_t total = 0;  // rows matching the prefix
  std::vector<const CustomerRow*> rows;
};

// Owned by one thread; not thread-safe.
//
// Rows live in a vector, found by id through a hash table of row indices
// (a row's id is stored once). The id order is a sorted vector of indices plus
// a short unsorted tail of new customers, merged in when a query needs it or
// when the tail grows past an eighth of the sorted part: a creation costs
// O(1) amortized, and a page in id order is a binary search for the prefix
// and a slice.
class Customers final : public ReadModel {
 public:
  Customers() = default;
  Customers(const Customers&) = delete;
  Customers& operator=(const Customers&) = delete;

  static constexpr uint32_t kNoRow = UINT32_MAX;
  // The row of `id` (rows are numbered in creation order and never move
  // between resets), or kNoRow. Other models keep per-customer state by row.
  uint32_t indexOf(std::string_view id) const;
  const CustomerRow& row(uint32_t index) const { return rows_[index]; }
  // The row of the customer of the event this model applied last, if that
  // event is `seq`: models applied after this one need no lookup of their own.
  uint32_t indexOfApplied(const Event& event) const {
    return event.seq == appliedSeq_ ? appliedRow_ : indexOf(event.customer());
  }

  // Look-ahead for a batch (ReadModels::apply of a span): starts loading the
  // index slot of `id`; later, once that slot is loaded, loadRow starts
  // loading the row and returns its index. Both only read; the row is the
  // first whose hash matches, so a hash collision wastes the prefetch and
  // nothing else.
  void prefetchSlot(std::string_view id) const;
  uint32_t prefetchRow(std::string_view id) const;

  const CustomerRow* find(std::string_view id) const;
  size_t size() const { return rows_.size(); }
  // Sorts the id index first when it has to; so not const.
  CustomerPage page(const CustomerQuery& query);
  // Heap bytes the model holds, for the bytes-per-customer figure.
  size_t memoryBytes() const;

 protected:
  void onEvent(const Event& event) override;
  void onReset() override;

 private:
  // The first row in `hash`'s probe sequence for which match(row) holds.
  template <typename Match>
  uint32_t probe(uint64_t hash, Match match) const;
  void insertIndex(uint32_t row, uint64_t hash);
  void sortIndex();

  std::vector<CustomerRow> rows_;
  // Open addressing, linear probing, at most half full: a slot is the
  // id's hash (high 32 bits) and its row + 1 (low 32 bits; 0 = empty). A
  // lookup is one slot and one row, where a node-based set costs a bucket,
  // a node and the row.
  std::vector<uint64_t> slots_;
  Seq appliedSeq_ = 0;  // the event onEvent saw last, and its customer's row
  uint32_t appliedRow_ = kNoRow;
  std::vector<uint32_t> sorted_;    // row indices in id order
  std::vector<uint32_t> unsorted_;  // created since the last merge
};

}  // namespace shop::projections
