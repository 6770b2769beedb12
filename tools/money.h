// Decimal amounts for people ("12.50") <-> minor units (1250). Two decimal
// places: a minor unit is a hundredth.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shop::cli {

// "12", "12.5", "12.50", "-3.00" -> minor units; nullopt when it is not such
// a number or does not fit in Int64. Negative amounts parse: the server
// rejects them with a reason.
std::optional<int64_t> parseMoney(std::string_view text);
std::string formatMoney(int64_t minor);

}  // namespace shop::cli
