#include "core/log.h"

#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <utility>

namespace shop {
namespace {

// Held by shared_ptr so that a line is written through the sink it found
// even while another thread replaces it.
std::mutex sinkMutex;
std::shared_ptr<const LogSink> currentSink;

}  // namespace

LogSink setLogSink(LogSink sink) {
  auto next = sink ? std::make_shared<const LogSink>(std::move(sink)) : nullptr;
  std::lock_guard lock(sinkMutex);
  std::shared_ptr<const LogSink> previous = std::exchange(currentSink, std::move(next));
  return previous ? *previous : LogSink();
}

void logLine(const char* component, const char* format, ...) {
  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char line[1024];
  int n = std::snprintf(
      line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s: ", tm.tm_year + 1900,
      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms), component);
  va_list args;
  va_start(args, format);
  int m = std::vsnprintf(line + n, sizeof line - static_cast<size_t>(n) - 1, format, args);
  va_end(args);
  size_t len = static_cast<size_t>(n) + static_cast<size_t>(m < 0 ? 0 : m);
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  std::shared_ptr<const LogSink> sink;
  {
    std::lock_guard lock(sinkMutex);
    sink = currentSink;
  }
  if (sink) {
    (*sink)(std::string_view(line, len));
    return;
  }
  [[maybe_unused]] auto written = ::write(STDERR_FILENO, line, len);
}

}  // namespace shop
