#include "core/check.h"

#include <cstdarg>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace shop {

void checkFailed(const char* file, int line, const char* condition, const char* format, ...) {
  char detail[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(detail, sizeof detail, format, args);
  va_end(args);
  throw std::logic_error(std::string(file) + ":" + std::to_string(line) +
                         ": check failed: " + condition + ": " + detail);
}

}  // namespace shop
