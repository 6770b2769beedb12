#include "core/aggregates.h"

#include <algorithm>
#include <limits>

namespace shop {
namespace {

Rejection reject(RejectReason reason, std::string detail) {
  return {reason, std::move(detail)};
}

std::string quoted(std::string_view s) {
  return "'" + std::string(s) + "'";
}

ProductLots* findLots(Customer& c, std::string_view product) {
  for (auto& h : c.holdings) {
    if (h.product == product) return &h;
  }
  return nullptr;
}

// The refund for returning `quantity` units, taken from the most recent lots
// first. Requires quantity <= units held. Returns false on overflow.
bool refundFor(const ProductLots& lots, Quantity quantity, Money& refund) {
  refund = 0;
  for (auto it = lots.lots.rbegin(); it != lots.lots.rend() && quantity > 0; ++it) {
    Quantity take = std::min(quantity, it->quantity);
    Money part;
    if (__builtin_mul_overflow(take, it->unitPrice, &part)) return false;
    if (__builtin_add_overflow(refund, part, &refund)) return false;
    quantity -= take;
  }
  return true;
}

}  // namespace

Quantity Customer::unitsHeld(std::string_view product) const {
  for (const auto& h : holdings) {
    if (h.product == product) {
      Quantity n = 0;
      for (const auto& lot : h.lots) n += lot.quantity;
      return n;
    }
  }
  return 0;
}

const LiveHold* Customer::findHold(HoldId id) const {
  for (const auto& h : holds) {
    if (h.holdId == id) return &h;
  }
  return nullptr;
}

CustomerView Customer::view(std::string_view id) const {
  CustomerView v{std::string(id), balance, {}, {}};
  v.holds.reserve(holds.size());
  for (const auto& h : holds) {
    v.holds.push_back(HoldView{h.holdId, h.product, h.quantity, h.unitPrice, h.expiresAtNs});
  }
  v.holdings.reserve(holdings.size());
  for (const auto& h : holdings) {
    Holding out{h.product, 0, 0};
    for (const auto& lot : h.lots) {
      out.quantity += lot.quantity;
      out.paid += lot.quantity * lot.unitPrice;
    }
    v.holdings.push_back(std::move(out));
  }
  return v;
}

Decision decideCreate(const Customer* state, const CreateCustomer& cmd) {
  if (state)
    return reject(RejectReason::customerExists, "customer " + quoted(cmd.customer) + " exists");
  return CustomerCreated{cmd.customer, cmd.initialBalance};
}

Decision decideDeposit(const Customer* state, const Deposit& cmd) {
  if (!state) return reject(RejectReason::unknownCustomer, "no customer " + quoted(cmd.customer));
  Money balance;
  if (__builtin_add_overflow(state->balance, cmd.amount, &balance)) {
    return reject(RejectReason::overflow, "balance would exceed the Int64 range");
  }
  return FundsDeposited{cmd.customer, cmd.amount, balance};
}

namespace {
// The price checks of a purchase: `quantity` units of `product` at
// `unitPrice`. Returns the balance after paying, or the rejection.
std::variant<Money, Rejection> pay(const Customer& state, std::string_view product,
                                   Quantity quantity, Money unitPrice) {
  Money cost, paid = 0, total;
  if (__builtin_mul_overflow(unitPrice, quantity, &cost)) {
    return reject(RejectReason::overflow, "price times quantity exceeds the Int64 range");
  }
  // What the holding was paid for, with this buy, must stay in range: views
  // and refunds sum it.
  for (const auto& h : state.holdings) {
    if (h.product != product) continue;
    for (const auto& lot : h.lots) {
      Money lotPaid;
      if (__builtin_mul_overflow(lot.quantity, lot.unitPrice, &lotPaid) ||
          __builtin_add_overflow(paid, lotPaid, &paid)) {
        paid = std::numeric_limits<Money>::max();
      }
    }
  }
  if (__builtin_add_overflow(paid, cost, &total)) {
    return reject(RejectReason::overflow, "the holding's total price would exceed the Int64 range");
  }
  if (cost > state.balance) {
    return reject(
        RejectReason::insufficientFunds,
        "costs " + std::to_string(cost) + ", balance is " + std::to_string(state.balance));
  }
  return state.balance - cost;
}

Rejection noHold(HoldId id, std::string_view customer) {
  return reject(RejectReason::unknownHold,
                "customer " + quoted(customer) + " has no live hold " + std::to_string(id));
}

// Adds `quantity` units at `unitPrice` to the customer's lots. Strong
// exception guarantee.
void addLot(Customer& state, const std::string& product, Quantity quantity, Money unitPrice) {
  ProductLots* lots = findLots(state, product);
  if (!lots) {
    ProductLots fresh{product, {Lot{unitPrice, quantity}}};  // may throw
    state.holdings.reserve(state.holdings.size() + 1);       // may throw
    state.holdings.push_back(std::move(fresh));              // no-throw now
  } else if (!lots->lots.empty() && lots->lots.back().unitPrice == unitPrice) {
    lots->lots.back().quantity += quantity;  // same price: one lot is enough
  } else {
    lots->lots.push_back(Lot{unitPrice, quantity});  // strong guarantee
  }
}

void eraseHold(Customer& state, HoldId id) {
  std::erase_if(state.holds, [id](const LiveHold& h) { return h.holdId == id; });
}
}  // namespace

Decision decideDebit(const Customer* state, const BuyProduct& cmd, Money unitPrice) {
  if (!state) return reject(RejectReason::unknownCustomer, "no customer " + quoted(cmd.customer));
  auto paid = pay(*state, cmd.product, cmd.quantity, unitPrice);
  if (auto* rejection = std::get_if<Rejection>(&paid)) return std::move(*rejection);
  return ProductBought{cmd.customer, cmd.product, cmd.quantity, unitPrice, std::get<Money>(paid)};
}

Decision decidePlaceHold(const Customer* state, const HoldProduct& cmd, Money unitPrice,
                         size_t maxHolds) {
  if (!state) return reject(RejectReason::unknownCustomer, "no customer " + quoted(cmd.customer));
  if (state->holds.size() >= maxHolds) {
    return reject(RejectReason::tooManyHolds, "customer " + quoted(cmd.customer) + " has " +
                                                  std::to_string(state->holds.size()) +
                                                  " live holds, the server's maximum");
  }
  Money cost;
  if (__builtin_mul_overflow(unitPrice, cmd.quantity, &cost)) {
    return reject(RejectReason::overflow, "price times quantity exceeds the Int64 range");
  }
  return ProductHeld{cmd.holdId,   cmd.customer, cmd.product,
                     cmd.quantity, unitPrice,    cmd.expiresAtNs};
}

Decision decideConfirm(const Customer* state, const ConfirmHold& cmd) {
  const LiveHold* hold = state ? state->findHold(cmd.holdId) : nullptr;
  if (!hold) return noHold(cmd.holdId, cmd.customer);
  auto paid = pay(*state, hold->product, hold->quantity, hold->unitPrice);
  if (auto* rejection = std::get_if<Rejection>(&paid)) return std::move(*rejection);
  return HoldConfirmed{cmd.holdId,     cmd.customer,    hold->product,
                       hold->quantity, hold->unitPrice, std::get<Money>(paid)};
}

Decision decideRelease(const Customer* state, const ReleaseHold& cmd) {
  const LiveHold* hold = state ? state->findHold(cmd.holdId) : nullptr;
  if (!hold) return noHold(cmd.holdId, cmd.customer);
  return HoldReleased{cmd.holdId, cmd.customer, hold->product, hold->quantity};
}

std::optional<EventBody> decideExpire(const Customer* state, const ExpireHold& cmd) {
  const LiveHold* hold = state ? state->findHold(cmd.holdId) : nullptr;
  if (!hold) return std::nullopt;
  return HoldExpired{cmd.holdId, cmd.customer, hold->product, hold->quantity};
}

Decision decideReturn(const Customer* state, const ReturnProduct& cmd) {
  if (!state) return reject(RejectReason::unknownCustomer, "no customer " + quoted(cmd.customer));
  Quantity held = state->unitsHeld(cmd.product);
  if (held < cmd.quantity) {
    return reject(RejectReason::notOwned, "customer " + quoted(cmd.customer) + " holds " +
                                              std::to_string(held) + " of " + quoted(cmd.product) +
                                              ", returns " + std::to_string(cmd.quantity));
  }
  Money refund, balance;
  const ProductLots* lots = nullptr;
  for (const auto& h : state->holdings) {
    if (h.product == cmd.product) lots = &h;
  }
  if (!refundFor(*lots, cmd.quantity, refund) ||
      __builtin_add_overflow(state->balance, refund, &balance)) {
    return reject(RejectReason::overflow, "refund would exceed the Int64 range");
  }
  return ProductReturned{cmd.customer, cmd.product, cmd.quantity, refund, balance};
}

// Strong exception guarantee: everything that can throw (allocation) happens
// before the first change, and the changes themselves cannot throw. So a
// fault leaves `state` exactly as it was, without copying it first.
void applyToCustomer(Customer& state, const EventBody& event) {
  if (auto* e = std::get_if<CustomerCreated>(&event)) {
    state = Customer{e->initialBalance, {}};
  } else if (auto* e = std::get_if<FundsDeposited>(&event)) {
    state.balance = e->balance;
  } else if (auto* e = std::get_if<ProductBought>(&event)) {
    addLot(state, e->product, e->quantity, e->unitPrice);
    state.balance = e->balance;
  } else if (auto* e = std::get_if<ProductHeld>(&event)) {
    LiveHold hold{e->holdId, e->product, e->quantity, e->unitPrice, e->expiresAtNs};  // may throw
    state.holds.push_back(std::move(hold));  // strong guarantee
  } else if (auto* e = std::get_if<HoldConfirmed>(&event)) {
    addLot(state, e->product, e->quantity, e->unitPrice);  // the only step that may throw
    state.balance = e->balance;
    eraseHold(state, e->holdId);
  } else if (auto* e = std::get_if<HoldReleased>(&event)) {
    eraseHold(state, e->holdId);
  } else if (auto* e = std::get_if<HoldExpired>(&event)) {
    eraseHold(state, e->holdId);
  } else if (auto* e = std::get_if<ProductReturned>(&event)) {
    // Only pops and erases below: none of them throws.
    state.balance = e->balance;
    ProductLots* lots = findLots(state, e->product);
    Quantity left = e->quantity;
    while (lots && left > 0 && !lots->lots.empty()) {
      Lot& last = lots->lots.back();
      Quantity take = std::min(left, last.quantity);
      last.quantity -= take;
      left -= take;
      if (last.quantity == 0) lots->lots.pop_back();
    }
    if (lots && lots->lots.empty()) {
      std::erase_if(state.holdings, [&](const ProductLots& h) { return h.product == e->product; });
    }
  }
}

Decision decideAdd(const Product* state, const AddProduct& cmd) {
  if (state)
    return reject(RejectReason::productExists, "product " + quoted(cmd.product) + " exists");
  return ProductAdded{cmd.product, cmd.price, cmd.stock};
}

Decision decideRestock(const Product* state, const Restock& cmd) {
  if (!state) return reject(RejectReason::unknownProduct, "no product " + quoted(cmd.product));
  Quantity stock, everything, all;
  // Units sold and held come back on returns and releases, so they count
  // against the range too.
  if (__builtin_add_overflow(state->stock, cmd.quantity, &stock) ||
      __builtin_add_overflow(stock, state->sold, &everything) ||
      __builtin_add_overflow(everything, state->held, &all)) {
    return reject(RejectReason::overflow,
                  "stock plus units sold and held would exceed the Int64 range");
  }
  return ProductRestocked{cmd.product, cmd.quantity, stock};
}

std::optional<Rejection> checkReserve(const Product* state, std::string_view product,
                                      Quantity quantity) {
  if (!state) return reject(RejectReason::unknownProduct, "no product " + quoted(product));
  if (state->stock < quantity) {
    return reject(RejectReason::outOfStock, quoted(product) + " has " +
                                                std::to_string(state->stock) +
                                                " in stock, wanted " + std::to_string(quantity));
  }
  return std::nullopt;
}

void applyToProduct(Product& state, const EventBody& event) {
  if (auto* e = std::get_if<ProductAdded>(&event)) {
    state = Product{e->price, e->stock};
  } else if (auto* e = std::get_if<ProductRestocked>(&event)) {
    // Not `= e->stock`: that figure is net of buys still reserved when the
    // restock was decided, whose ProductBought may be published after it.
    state.stock += e->quantity;
  } else if (auto* e = std::get_if<ProductBought>(&event)) {
    state.stock -= e->quantity;
    state.sold += e->quantity;
  } else if (auto* e = std::get_if<ProductReturned>(&event)) {
    state.stock += e->quantity;
    state.sold -= e->quantity;
  } else if (auto* e = std::get_if<ProductHeld>(&event)) {
    state.stock -= e->quantity;
    state.held += e->quantity;
  } else if (auto* e = std::get_if<HoldConfirmed>(&event)) {
    state.held -= e->quantity;
    state.sold += e->quantity;
  } else if (auto* e = std::get_if<HoldReleased>(&event)) {
    state.held -= e->quantity;
    state.stock += e->quantity;
  } else if (auto* e = std::get_if<HoldExpired>(&event)) {
    state.held -= e->quantity;
    state.stock += e->quantity;
  }
}

void apply(ShopState& state, const Event& event) {
  const auto& body = event.body;
  if (std::holds_alternative<OperationRejected>(body)) return;
  if (auto c = event.customer(); !c.empty()) {
    applyToCustomer(state.customers[std::string(c)], body);
  }
  if (auto p = event.product(); !p.empty()) {
    applyToProduct(state.products[std::string(p)], body);
  }
}

ShopState replay(const std::vector<Event>& events) {
  ShopState state;
  for (const auto& e : events) apply(state, e);
  return state;
}

}  // namespace shop
