#include "tools/money.h"

namespace shop::cli {

std::optional<int64_t> parseMoney(std::string_view text) {
  bool negative = !text.empty() && text[0] == '-';
  if (negative) text.remove_prefix(1);
  size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view{} : text.substr(dot + 1);
  if (whole.empty() || frac.size() > 2 || (dot != std::string_view::npos && frac.empty())) {
    return std::nullopt;
  }
  int64_t value = 0;
  auto addDigits = [&value](std::string_view digits) {
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      if (__builtin_mul_overflow(value, 10, &value) ||
          __builtin_add_overflow(value, c - '0', &value)) {
        return false;
      }
    }
    return true;
  };
  if (!addDigits(whole) || !addDigits(frac)) return std::nullopt;
  if (frac.size() < 2 && __builtin_mul_overflow(value, frac.size() == 0 ? 100 : 10, &value)) {
    return std::nullopt;
  }
  return negative ? -value : value;
}

std::string formatMoney(int64_t minor) {
  bool negative = minor < 0;
  uint64_t abs = negative ? 0 - static_cast<uint64_t>(minor) : static_cast<uint64_t>(minor);
  std::string cents = std::to_string(abs % 100);
  if (cents.size() < 2) cents.insert(0, "0");
  return (negative ? "-" : "") + std::to_string(abs / 100) + "." + cents;
}

}  // namespace shop::cli
