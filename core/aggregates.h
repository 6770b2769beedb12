// Customer and Product aggregates: decide(state, command) -> event or
// rejection, and apply(state, event) -> state.
//
// decide never mutates; apply is the only way state changes, so an
// aggregate's state is always the fold of the events applied to it. The
// shard (core/shard.h) owns the live instances; replay() folds a log into a
// fresh ShopState with the same apply functions.
#pragma once

#include <map>
#include <string>
#include <variant>
#include <vector>

#include "core/domain.h"

namespace shop {

// Units bought together at one price. A customer's lots for a product are
// kept in purchase order; returns consume the most recent lot first.
struct Lot {
  Money unitPrice = 0;
  Quantity quantity = 0;
  bool operator==(const Lot&) const = default;
};

struct ProductLots {
  std::string product;
  std::vector<Lot> lots;  // purchase order, oldest first; never empty
  bool operator==(const ProductLots&) const = default;
};

// Units reserved for a customer until the hold is confirmed, released or
// expires (ProductHeld).
struct LiveHold {
  HoldId holdId = 0;
  std::string product;
  Quantity quantity = 0;
  Money unitPrice = 0;
  int64_t expiresAtNs = 0;
  bool operator==(const LiveHold&) const = default;
};

struct Customer {
  Money balance = 0;
  std::vector<ProductLots> holdings;  // few per customer: a flat vector beats a map
  std::vector<LiveHold> holds;        // oldest first; at most the server's --max-holds
  // The owning shard's bookkeeping, not state (never compared): the last
  // snapshot this aggregate was encoded into.
  uint32_t snapshotEpoch = 0;

  bool operator==(const Customer& o) const {
    return balance == o.balance && holdings == o.holdings && holds == o.holds;
  }
  Quantity unitsHeld(std::string_view product) const;
  const LiveHold* findHold(HoldId id) const;
  CustomerView view(std::string_view id) const;
};

// `stock` is what can still be sold. While a buy is pending its units are
// reserved (already subtracted); a failed buy releases them again.
//   stock + held + sold = units added + units restocked
struct Product {
  Money price = 0;
  Quantity stock = 0;
  // Units sold (or reserved) and not returned. stock + held + sold never
  // exceeds Int64: restocks check it, so no later return or holding can
  // overflow.
  Quantity sold = 0;
  Quantity held = 0;           // in live holds (and holds being placed)
  uint32_t snapshotEpoch = 0;  // as Customer's: bookkeeping, never compared
  bool operator==(const Product& o) const {
    return price == o.price && stock == o.stock && sold == o.sold && held == o.held;
  }
};

// Either the event to apply and publish, or why the command is refused.
using Decision = std::variant<EventBody, Rejection>;

// ---- Customer -------------------------------------------------------------
// `state` is null when the customer does not exist.
Decision decideCreate(const Customer* state, const CreateCustomer& cmd);
Decision decideDeposit(const Customer* state, const Deposit& cmd);
// The debit half of a buy, after the product reserved `cmd.quantity` units at
// `unitPrice`.
Decision decideDebit(const Customer* state, const BuyProduct& cmd, Money unitPrice);
Decision decideReturn(const Customer* state, const ReturnProduct& cmd);

// Applies a customer event to `state`. Events about other aggregates are
// ignored.
void applyToCustomer(Customer& state, const EventBody& event);

// ---- Product --------------------------------------------------------------
Decision decideAdd(const Product* state, const AddProduct& cmd);
Decision decideRestock(const Product* state, const Restock& cmd);
// The reserve half of a buy or a hold. Returns nullopt when `quantity` units
// can be reserved (the caller then subtracts them), else the rejection.
std::optional<Rejection> checkReserve(const Product* state, std::string_view product,
                                      Quantity quantity);

// ---- Holds, at the customer -------------------------------------------------
// The customer half of a hold, after the product reserved the units at
// `unitPrice`: at most `maxHolds` live holds per customer.
Decision decidePlaceHold(const Customer* state, const HoldProduct& cmd, Money unitPrice,
                         size_t maxHolds);
Decision decideConfirm(const Customer* state, const ConfirmHold& cmd);
Decision decideRelease(const Customer* state, const ReleaseHold& cmd);
// The timer's expiry: HoldExpired, or nullopt when the hold already ended
// (a confirmation or release that was in flight got there first).
std::optional<EventBody> decideExpire(const Customer* state, const ExpireHold& cmd);

// Applies a product event to `state` (including ProductBought and
// ProductReturned, which move stock).
void applyToProduct(Product& state, const EventBody& event);

// ---- Whole-shop state, for replay and for comparing with live state --------
struct ShopState {
  std::map<std::string, Customer, std::less<>> customers;
  std::map<std::string, Product, std::less<>> products;
  bool operator==(const ShopState&) const = default;
};

// Folds one event into `state`: creates aggregates on their creation events
// and applies the rest to the aggregates they name.
void apply(ShopState& state, const Event& event);
ShopState replay(const std::vector<Event>& events);

}  // namespace shop
