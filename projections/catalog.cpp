#include "projections/catalog.h"

#include <algorithm>

namespace shop::projections {
namespace {
// Units leave a hold. A model rebuilt from the oldest retained event may not
// have seen them held: never below zero.
Quantity unheld(Quantity held, Quantity quantity) {
  return held > quantity ? held - quantity : 0;
}
}  // namespace

const ProductRow* Catalog::find(std::string_view id) const {
  auto it = products_.find(id);
  return it == products_.end() ? nullptr : &it->second;
}

void Catalog::onEvent(const Event& event) {
  if (const auto* e = std::get_if<ProductAdded>(&event.body)) {
    products_.try_emplace(e->product,
                          ProductRow{.id = e->product, .price = e->price, .stock = e->stock});
    return;
  }
  auto it = products_.find(event.product());
  if (it == products_.end()) return;  // a rejection about an unknown product
  ProductRow& p = it->second;
  if (const auto* e = std::get_if<ProductRestocked>(&event.body)) {
    p.stock = e->stock;  // what a replay in seq order has at this point
  } else if (const auto* e = std::get_if<ProductBought>(&event.body)) {
    p.stock -= e->quantity;
    p.sold = addSaturating(p.sold, e->quantity);
    p.revenue = addSaturating(p.revenue, productSaturating(e->quantity, e->unitPrice));
  } else if (const auto* e = std::get_if<ProductReturned>(&event.body)) {
    p.stock += e->quantity;
    p.returned = addSaturating(p.returned, e->quantity);
    p.refunded = addSaturating(p.refunded, e->refund);
  } else if (const auto* e = std::get_if<ProductHeld>(&event.body)) {
    p.stock -= e->quantity;
    p.held += e->quantity;
  } else if (const auto* e = std::get_if<HoldConfirmed>(&event.body)) {
    p.held = unheld(p.held, e->quantity);
    p.sold = addSaturating(p.sold, e->quantity);
    p.revenue = addSaturating(p.revenue, productSaturating(e->quantity, e->unitPrice));
  } else if (const auto* e = std::get_if<HoldReleased>(&event.body)) {
    p.held = unheld(p.held, e->quantity);
    p.stock += e->quantity;
  } else if (const auto* e = std::get_if<HoldExpired>(&event.body)) {
    p.held = unheld(p.held, e->quantity);
    p.stock += e->quantity;
  }
}

std::vector<const ProductRow*> Catalog::sorted() const {
  std::vector<const ProductRow*> all;
  all.reserve(products_.size());
  for (const auto& [id, row] : products_) all.push_back(&row);
  std::sort(all.begin(), all.end(),
            [](const ProductRow* a, const ProductRow* b) { return a->id < b->id; });
  return all;
}

std::vector<const ProductRow*> Catalog::topSellers(size_t n) const {
  std::vector<const ProductRow*> all;
  all.reserve(products_.size());
  for (const auto& [id, row] : products_) all.push_back(&row);
  auto more = [](const ProductRow* a, const ProductRow* b) {
    if (a->netSold() != b->netSold()) return a->netSold() > b->netSold();
    return a->id < b->id;
  };
  n = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<ptrdiff_t>(n), all.end(), more);
  all.resize(n);
  return all;
}

}  // namespace shop::projections
