#include "tests/testkit/test_log.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "core/log.h"

namespace shop::testkit {

TestLog& TestLog::instance() {
  // Never destroyed: a thread may still log while the process exits.
  static TestLog& log = *new TestLog;
  return log;
}

void TestLog::install() {
  TestLog& log = instance();
  {
    std::lock_guard lock(log.mutex_);
    if (log.installed_) return;
    log.installed_ = true;
    const char* env = std::getenv("SHOP_TEST_LOG");
    log.echo_ = env != nullptr && std::strcmp(env, "0") != 0 && *env != '\0';
  }
  LogSink previous = setLogSink([&log](std::string_view line) { log.take(line); });
  if (previous) setLogSink(std::move(previous));  // the program's own sink stays
}

void TestLog::echo(bool on) {
  TestLog& log = instance();
  std::lock_guard lock(log.mutex_);
  log.echo_ = on;
}

std::vector<std::string> TestLog::lines() {
  TestLog& log = instance();
  std::lock_guard lock(log.mutex_);
  return {log.lines_.begin(), log.lines_.end()};
}

bool TestLog::contains(std::string_view text) {
  TestLog& log = instance();
  std::lock_guard lock(log.mutex_);
  for (const auto& line : log.lines_) {
    if (line.find(text) != std::string::npos) return true;
  }
  return false;
}

void TestLog::clear() {
  TestLog& log = instance();
  std::lock_guard lock(log.mutex_);
  log.lines_.clear();
}

void TestLog::take(std::string_view line) {
  std::lock_guard lock(mutex_);
  // A fatal error is printed all the same: a failing test must show it.
  if (echo_ || line.find(" fatal") != std::string_view::npos) {
    [[maybe_unused]] auto written = ::write(STDERR_FILENO, line.data(), line.size());
  }
  if (lines_.size() == kKept) lines_.pop_front();
  lines_.emplace_back(line);
}

}  // namespace shop::testkit
