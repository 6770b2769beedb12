// A child process with its stdout and stderr captured, for testing the
// tools as a user runs them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace shop::testkit {

// Owned by the thread that spawned it.
class Process {
 public:
  // Starts argv[0] with argv. Throws std::runtime_error when it cannot.
  explicit Process(const std::vector<std::string>& argv);
  ~Process();  // kills the child if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Reads stderr until a line contains `fragment` (or EOF); returns it.
  // With timeoutMs >= 0, gives up after that long and returns "": a bound
  // on a wait for an event, so that a missing line fails a test instead of
  // hanging it.
  std::string waitForStderrLine(const std::string& fragment, int timeoutMs = -1);
  // Reads stdout until it holds `lines` complete lines (or EOF, or
  // timeoutMs >= 0 has passed); returns the complete lines it holds.
  std::vector<std::string> waitForStdoutLines(size_t lines, int timeoutMs = -1);
  void signal(int signo);
  // Waits for exit; returns the exit code, or 128+signal when killed.
  int wait();
  // Everything the child wrote (complete after wait()).
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

  // Runs to completion and returns the exit code.
  static int run(const std::vector<std::string>& argv, std::string* out = nullptr,
                 std::string* err = nullptr);

 private:
  bool readSome(int fd, std::string& into);
  // readSome, once `fd` is readable before `deadline` (none: nullopt).
  bool readSomeBy(int fd, std::string& into,
                  std::optional<std::chrono::steady_clock::time_point> deadline);
  pid_t pid_ = -1;
  int outFd_ = -1;
  int errFd_ = -1;
  std::string out_;
  std::string err_;
  size_t errScanned_ = 0;
  int status_ = -1;
};

}  // namespace shop::testkit
