// The customers read model: balance, holdings, counts and last activity per
// customer, with an id index that pages in id order without sorting.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "projections/read_model.h"

namespace shop::projections {

struct CustomerRow {
  std::string id;
  Money balance = 0;              // minor units
  int64_t lastActivityNs = 0;     // the newest event about this customer, rejections included
  uint32_t accepted = 0;          // events about the customer that changed it
  uint32_t rejected = 0;          // OperationRejected events naming it
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
// Rows live in a vector, found by id through a hash set of row indices (a
// row's id is stored once). The id order is a sorted vector of indices plus
// a short unsorted tail of new customers, merged in when a query needs it or
// when the tail grows past an eighth of the sorted part: a creation costs
// O(1) amortized, and a page in id order is a binary search for the prefix
// and a slice.
class Customers final : public ReadModel {
 public:
  Customers();
  // The index's hash and equality point at rows_: the model stays put.
  Customers(const Customers&) = delete;
  Customers& operator=(const Customers&) = delete;

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
  struct IdHash {
    using is_transparent = void;
    const std::vector<CustomerRow>* rows;
    size_t operator()(std::string_view id) const { return std::hash<std::string_view>{}(id); }
    size_t operator()(uint32_t row) const { return (*this)((*rows)[row].id); }
  };
  struct IdEqual {
    using is_transparent = void;
    const std::vector<CustomerRow>* rows;
    std::string_view idOf(std::string_view id) const { return id; }
    std::string_view idOf(uint32_t row) const { return (*rows)[row].id; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return idOf(a) == idOf(b);
    }
  };

  CustomerRow* rowOf(std::string_view id);
  void sortIndex();

  std::vector<CustomerRow> rows_;
  std::unordered_set<uint32_t, IdHash, IdEqual> byId_;
  std::vector<uint32_t> sorted_;    // row indices in id order
  std::vector<uint32_t> unsorted_;  // created since the last merge
};

}  // namespace shop::projections
