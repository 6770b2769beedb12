#include "core/validation.h"

#include <string>

namespace shop {
namespace {

// Length of the UTF-8 sequence starting at s[i], or 0 when it is not valid
// (overlong forms, surrogates and code points past U+10FFFF are invalid).
size_t utf8Length(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  // C1 control characters U+0080..U+009F.
  if (cp >= 0x80 && cp <= 0x9F) return 0;
  return n;
}

std::optional<Rejection> checkIdField(std::string_view field, std::string_view id) {
  if (auto why = checkId(id)) {
    return Rejection{RejectReason::invalidId, std::string(field) + " id " + *why};
  }
  return std::nullopt;
}

std::optional<Rejection> checkPositive(RejectReason reason, std::string_view field, int64_t v) {
  if (v > 0) return std::nullopt;
  return Rejection{reason, std::string(field) + " must be > 0, got " + std::to_string(v)};
}

std::optional<Rejection> checkNonNegative(RejectReason reason, std::string_view field, int64_t v) {
  if (v >= 0) return std::nullopt;
  return Rejection{reason, std::string(field) + " must be >= 0, got " + std::to_string(v)};
}

template <typename... Checks>
std::optional<Rejection> firstOf(Checks&&... checks) {
  std::optional<Rejection> out;
  ((out ? void() : void(out = std::forward<Checks>(checks))), ...);
  return out;
}

}  // namespace

std::optional<std::string> checkId(std::string_view id) {
  if (id.empty()) return "is empty";
  if (id.size() > kMaxIdBytes) {
    return "is " + std::to_string(id.size()) + " bytes (at most " + std::to_string(kMaxIdBytes) +
           ")";
  }
  for (size_t i = 0; i < id.size();) {
    auto c = static_cast<unsigned char>(id[i]);
    if (c < 0x20 || c == 0x7F) return "contains a control character at byte " + std::to_string(i);
    if (c == '/') return "contains '/' at byte " + std::to_string(i);
    size_t n = utf8Length(id, i);
    if (n == 0) return "is not valid UTF-8 at byte " + std::to_string(i);
    i += n;
  }
  return std::nullopt;
}

namespace {

// displayId and displayText: `replaceSlash` for ids, whose '/' would split a topic.
std::string display(std::string_view text, size_t maxBytes, bool replaceSlash) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  std::string_view head = text.substr(0, maxBytes);
  std::string out;
  out.reserve(head.size() * 3 + 24);
  for (size_t i = 0; i < head.size();) {
    auto c = static_cast<unsigned char>(head[i]);
    size_t n = utf8Length(head, i);
    if (n == 0 || c < 0x20 || c == 0x7F || (replaceSlash && c == '/')) {
      out.append(kReplacement);
      ++i;
    } else {
      out.append(head.substr(i, n));
      i += n;
    }
  }
  if (text.size() > head.size()) {
    out.append("\xE2\x80\xA6(").append(std::to_string(text.size())).append(" bytes)");  // "…"
  }
  return out;
}

}  // namespace

std::string displayId(std::string_view id) {
  if (!checkId(id)) return std::string(id);
  return display(id, kMaxIdBytes, true);
}

std::string displayText(std::string_view text, size_t maxBytes) {
  return display(text, maxBytes, false);
}

std::optional<Rejection> validate(const Command& command) {
  using R = RejectReason;
  return std::visit(
      [](const auto& c) -> std::optional<Rejection> {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, CreateCustomer>) {
          return firstOf(checkIdField("customer", c.customer),
                         checkNonNegative(R::invalidAmount, "initialBalance", c.initialBalance));
        } else if constexpr (std::is_same_v<T, Deposit>) {
          return firstOf(checkIdField("customer", c.customer),
                         checkPositive(R::invalidAmount, "amount", c.amount));
        } else if constexpr (std::is_same_v<T, BuyProduct> || std::is_same_v<T, ReturnProduct>) {
          return firstOf(checkIdField("customer", c.customer), checkIdField("product", c.product),
                         checkPositive(R::invalidQuantity, "quantity", c.quantity));
        } else if constexpr (std::is_same_v<T, AddProduct>) {
          return firstOf(checkIdField("product", c.product),
                         checkPositive(R::invalidAmount, "price", c.price),
                         checkNonNegative(R::invalidQuantity, "stock", c.stock));
        } else if constexpr (std::is_same_v<T, Restock>) {
          return firstOf(checkIdField("product", c.product),
                         checkPositive(R::invalidQuantity, "quantity", c.quantity));
        } else if constexpr (std::is_same_v<T, GetCustomer>) {
          return checkIdField("customer", c.customer);
        } else if constexpr (std::is_same_v<T, HoldProduct>) {
          // The upper bound of ttlMs is the server's: the engine checks it.
          return firstOf(checkIdField("customer", c.customer), checkIdField("product", c.product),
                         checkPositive(R::invalidQuantity, "quantity", c.quantity),
                         checkPositive(R::invalidTtl, "ttlMs", c.ttlMs));
        } else if constexpr (std::is_same_v<T, ConfirmHold> || std::is_same_v<T, ReleaseHold>) {
          if (c.holdId == 0) return Rejection{R::unknownHold, "holdId 0 is never issued"};
          return std::nullopt;
        } else {
          static_assert(std::is_same_v<T, ReadEvents> || std::is_same_v<T, GetStats> ||
                        std::is_same_v<T, ExpireHold>);
          return std::nullopt;
        }
      },
      command.body);
}

}  // namespace shop
