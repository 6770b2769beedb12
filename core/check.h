// SHOP_CHECK: invariant checks that stay on in release builds. A failed check
// is a bug: it throws std::logic_error with the condition, place and message.
#pragma once

namespace shop {

[[noreturn, gnu::format(printf, 4, 5)]] void checkFailed(const char* file, int line,
                                                         const char* condition, const char* format,
                                                         ...);

}  // namespace shop

#define SHOP_CHECK(condition, ...)                                      \
  do {                                                                  \
    if (!(condition)) [[unlikely]]                                      \
      ::shop::checkFailed(__FILE__, __LINE__, #condition, __VA_ARGS__); \
  } while (false)
