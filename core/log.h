// Log lines on stderr: "<UTC time> <component>: <message>". Thread-safe (one
// write(2) per line).
#pragma once

namespace shop {

[[gnu::format(printf, 2, 3)]] void logLine(const char* component, const char* format, ...);

}  // namespace shop
