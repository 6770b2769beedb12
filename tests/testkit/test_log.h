// The test kit keeps the log lines of the servers it runs instead of
// printing them, so that a test's output is its own. A test can read them,
// or turn printing on: TestLog::echo(true), or SHOP_TEST_LOG=1 in the
// environment. Lines that say "fatal" are printed all the same.
#pragma once

#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace shop::testkit {

class TestLog {
 public:
  // Routes the process's log lines here (shop::setLogSink), once; a sink
  // the program set itself is left in place. EmbeddedServer calls it.
  static void install();
  // Also print each line on stderr (off unless SHOP_TEST_LOG=1).
  static void echo(bool on);
  // The newest lines kept (at most kKept), oldest first.
  static std::vector<std::string> lines();
  // Whether a kept line contains `text`.
  static bool contains(std::string_view text);
  static void clear();

  static constexpr size_t kKept = 10'000;

 private:
  static TestLog& instance();
  void take(std::string_view line);

  std::mutex mutex_;
  std::deque<std::string> lines_;
  bool echo_ = false;
  bool installed_ = false;
};

}  // namespace shop::testkit
