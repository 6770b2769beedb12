// Log lines: "<UTC time> <component>: <message>", on stderr unless a sink
// takes them. Thread-safe (on stderr, one write(2) per line).
#pragma once

#include <functional>
#include <string_view>

namespace shop {

[[gnu::format(printf, 2, 3)]] void logLine(const char* component, const char* format, ...);

// Receives each line, its newline included, on the thread that logged it;
// it must be thread-safe. Libraries that embed the engine (the test kit's
// server) route its lines through one.
using LogSink = std::function<void(std::string_view line)>;
// Installs `sink` (an empty one: back to stderr) and returns the one it
// replaces. Thread-safe; a line being logged meanwhile goes to either.
LogSink setLogSink(LogSink sink);

}  // namespace shop
