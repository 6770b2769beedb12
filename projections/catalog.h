// The catalog and sales read model: per product, price, stock, units held,
// units sold and returned, and revenue. A confirmed hold is a sale.
#pragma once

#include <string>
#include <vector>

#include "projections/read_model.h"

namespace shop::projections {

struct ProductRow {
  std::string id;
  Money price = 0;        // minor units, per unit
  Quantity stock = 0;     // on the shelf
  Quantity held = 0;      // in live holds: off the shelf, not yet sold
  Quantity sold = 0;      // units bought, over all time
  Quantity returned = 0;  // units returned, over all time
  Money revenue = 0;      // paid for units bought, over all time
  Money refunded = 0;     // paid back for units returned
  Money netRevenue() const { return revenue - refunded; }
  Quantity netSold() const { return sold - returned; }
};

// Owned by one thread; not thread-safe. Products are found by hash on
// every event; the id order that pages want is made when asked (a catalog
// is thousands of products, not millions).
class Catalog final : public ReadModel {
 public:
  const ProductRow* find(std::string_view id) const;
  size_t size() const { return products_.size(); }
  // Every product, in id order.
  std::vector<const ProductRow*> sorted() const;
  // The `n` products with the most units sold net of returns, most first;
  // ties by id.
  std::vector<const ProductRow*> topSellers(size_t n) const;

 protected:
  void onEvent(const Event& event) override;
  void onReset() override { products_.clear(); }

 private:
  StringMap<ProductRow> products_;
};

}  // namespace shop::projections
