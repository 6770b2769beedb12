#include "core/domain.h"

#include <cstring>
#include <random>

namespace shop {

std::string CommandId::toHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xF];
  }
  return out;
}

std::string serverIdHex(uint64_t id) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (size_t i = 0; i < 16; ++i) out[15 - i] = kDigits[(id >> (4 * i)) & 0xF];
  return out;
}

CommandId CommandId::random() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fromNumber(rng(), rng());
}

CommandId CommandId::fromNumber(uint64_t hi, uint64_t lo) {
  CommandId id;
  std::memcpy(id.bytes.data(), &hi, 8);
  std::memcpy(id.bytes.data() + 8, &lo, 8);
  return id;
}

size_t CommandIdHash::operator()(const CommandId& id) const noexcept {
  uint64_t a, b;
  std::memcpy(&a, id.bytes.data(), 8);
  std::memcpy(&b, id.bytes.data() + 8, 8);
  // Clients may count instead of drawing random ids: a full avalanche (the
  // MurmurHash3 finaliser) keeps sequential ids from forming the long probe
  // runs that open addressing suffers from.
  uint64_t h = a ^ (b * 0x9E3779B97F4A7C15ull);
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return static_cast<size_t>(h);
}

std::string_view name(CommandKind kind) {
  switch (kind) {
    case CommandKind::createCustomer:
      return "createCustomer";
    case CommandKind::deposit:
      return "deposit";
    case CommandKind::buyProduct:
      return "buyProduct";
    case CommandKind::returnProduct:
      return "returnProduct";
    case CommandKind::addProduct:
      return "addProduct";
    case CommandKind::restock:
      return "restock";
    case CommandKind::getCustomer:
      return "getCustomer";
    case CommandKind::readEvents:
      return "readEvents";
    case CommandKind::getStats:
      return "getStats";
    case CommandKind::holdProduct:
      return "holdProduct";
    case CommandKind::confirmHold:
      return "confirmHold";
    case CommandKind::releaseHold:
      return "releaseHold";
    case CommandKind::expireHold:
      return "expireHold";
  }
  return "unknown";
}

std::string_view name(RejectReason reason) {
  switch (reason) {
    case RejectReason::invalidId:
      return "invalidId";
    case RejectReason::invalidAmount:
      return "invalidAmount";
    case RejectReason::invalidQuantity:
      return "invalidQuantity";
    case RejectReason::customerExists:
      return "customerExists";
    case RejectReason::unknownCustomer:
      return "unknownCustomer";
    case RejectReason::productExists:
      return "productExists";
    case RejectReason::unknownProduct:
      return "unknownProduct";
    case RejectReason::outOfStock:
      return "outOfStock";
    case RejectReason::insufficientFunds:
      return "insufficientFunds";
    case RejectReason::notOwned:
      return "notOwned";
    case RejectReason::overflow:
      return "overflow";
    case RejectReason::tooManyPending:
      return "tooManyPending";
    case RejectReason::internalError:
      return "internalError";
    case RejectReason::retentionExceeded:
      return "retentionExceeded";
    case RejectReason::overloaded:
      return "overloaded";
    case RejectReason::forbidden:
      return "forbidden";
    case RejectReason::unknownHold:
      return "unknownHold";
    case RejectReason::holdExpired:
      return "holdExpired";
    case RejectReason::tooManyHolds:
      return "tooManyHolds";
    case RejectReason::invalidTtl:
      return "invalidTtl";
  }
  return "unknown";
}

namespace {
template <typename T>
concept HasCustomer = requires(const T& t) {
  t.customer;
};
template <typename T>
concept HasProduct = requires(const T& t) {
  t.product;
};

template <typename Variant>
std::string_view customerOf(const Variant& v) {
  return std::visit(
      [](const auto& b) -> std::string_view {
        if constexpr (HasCustomer<std::decay_t<decltype(b)>>) return b.customer;
        return {};
      },
      v);
}

template <typename Variant>
std::string_view productOf(const Variant& v) {
  return std::visit(
      [](const auto& b) -> std::string_view {
        if constexpr (HasProduct<std::decay_t<decltype(b)>>) return b.product;
        return {};
      },
      v);
}
}  // namespace

std::string_view Command::customer() const {
  return customerOf(body);
}
std::string_view Command::product() const {
  return productOf(body);
}
std::string_view Event::customer() const {
  return customerOf(body);
}
std::string_view Event::product() const {
  return productOf(body);
}

std::string_view eventName(const EventBody& body) {
  static constexpr std::string_view kNames[] = {
      "customerCreated", "fundsDeposited",   "productBought",     "productReturned",
      "productAdded",    "productRestocked", "operationRejected", "productHeld",
      "holdConfirmed",   "holdReleased",     "holdExpired"};
  return kNames[body.index()];
}

const OperationRejected* Reply::rejection() const {
  return event ? std::get_if<OperationRejected>(&event->body) : nullptr;
}

}  // namespace shop

namespace shop {
std::string describe(const Event& event) {
  std::string out = "#" + std::to_string(event.seq) + " " + std::string(eventName(event.body));
  auto field = [&](std::string_view key, const auto& value) {
    out += ' ';
    out += key;
    out += '=';
    if constexpr (std::is_convertible_v<decltype(value), std::string_view>) {
      out += value;
    } else {
      out += std::to_string(value);
    }
  };
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, OperationRejected>) {
          field("reason", name(b.reason));
          field("command", name(b.command));
          if (!b.customer.empty()) field("customer", b.customer);
          if (!b.product.empty()) field("product", b.product);
          out += " detail=\"" + b.detail + "\"";
        } else {
          if constexpr (requires { b.holdId; }) field("holdId", b.holdId);
          if constexpr (requires { b.customer; }) field("customer", b.customer);
          if constexpr (requires { b.product; }) field("product", b.product);
          if constexpr (requires { b.initialBalance; }) field("initialBalance", b.initialBalance);
          if constexpr (requires { b.amount; }) field("amount", b.amount);
          if constexpr (requires { b.price; }) field("price", b.price);
          if constexpr (requires { b.quantity; }) field("quantity", b.quantity);
          if constexpr (requires { b.unitPrice; }) field("unitPrice", b.unitPrice);
          if constexpr (requires { b.refund; }) field("refund", b.refund);
          if constexpr (requires { b.stock; }) field("stock", b.stock);
          if constexpr (requires { b.balance; }) field("balance", b.balance);
          if constexpr (requires { b.expiresAtNs; }) field("expiresAtNs", b.expiresAtNs);
        }
      },
      event.body);
  return out;
}
}  // namespace shop
