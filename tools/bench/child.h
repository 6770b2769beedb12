// A server process that shop-bench starts, reads the startup line of, and
// stops: shopd or shop-echo, each in its own process as in production.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace shop::bench {

// Owned by the thread that constructed it, which must outlive the child: the
// child gets SIGKILL when that thread ends (PR_SET_PDEATHSIG), so a crashed
// bench leaves no server behind. The child's stdout goes to /dev/null; its
// stderr is collected by a reader thread, so the child never blocks on a full
// pipe.
class ChildProcess {
 public:
  // Starts argv[0] (a path) with argv. Throws std::runtime_error when it cannot.
  explicit ChildProcess(std::vector<std::string> argv);
  // Kills (SIGKILL) and reaps the child if stop() was not called.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Blocks until a stderr line contains `fragment` and returns that line.
  // Throws std::runtime_error, with what the child wrote, if stderr closes first.
  std::string waitForStderrLine(const std::string& fragment);
  // SIGTERM, then waits for exit. Returns the exit code, or 128 + signal when
  // the child was killed. Idempotent.
  int stop();
  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  // Everything the child wrote on stderr so far (all of it after stop()).
  std::string stderrText();

 private:
  void readStderr();
  int reap();

  std::string name_;  // basename of argv[0]
  pid_t pid_ = -1;
  int errFd_ = -1;  // read end of the child's stderr; read by reader_ only
  std::thread reader_;
  std::mutex mutex_;  // guards err_ and eof_
  std::condition_variable changed_;
  std::string err_;
  bool eof_ = false;
  size_t scanned_ = 0;  // bytes of err_ already searched by waitForStderrLine
  int status_ = -1;     // exit code once reaped
};

// The directory holding the running executable (its siblings are shopd and
// shop-echo).
std::string executableDir();

}  // namespace shop::bench
