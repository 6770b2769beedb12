#include "tools/bench/child.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <stdexcept>

namespace shop::bench {

ChildProcess::ChildProcess(std::vector<std::string> argv) {
  if (argv.empty()) throw std::logic_error("ChildProcess needs a program");
  name_ = argv[0].substr(argv[0].rfind('/') + 1);
  int err[2];
  if (::pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe: " + std::string(strerror(errno)));
  int devNull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    // Child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (devNull >= 0) ::dup2(devNull, STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    ::execv(args[0], args.data());
    const char msg[] = "exec failed\n";
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(127);
  }
  int forkErrno = errno;
  if (devNull >= 0) ::close(devNull);
  ::close(err[1]);
  if (pid_ < 0) {
    ::close(err[0]);
    throw std::runtime_error("cannot start " + argv[0] + ": " + strerror(forkErrno));
  }
  errFd_ = err[0];
  reader_ = std::thread([this] { readStderr(); });
}

ChildProcess::~ChildProcess() {
  if (status_ < 0 && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    reap();
  }
  if (reader_.joinable()) reader_.join();
  if (errFd_ >= 0) ::close(errFd_);
}

void ChildProcess::readStderr() {
  pthread_setname_np(pthread_self(), "bench-child-err");
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(errFd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    std::lock_guard lock(mutex_);
    if (n <= 0) {
      eof_ = true;
      changed_.notify_all();
      return;
    }
    err_.append(buf, static_cast<size_t>(n));
    changed_.notify_all();
  }
}

std::string ChildProcess::waitForStderrLine(const std::string& fragment) {
  std::unique_lock lock(mutex_);
  for (;;) {
    size_t end;
    while ((end = err_.find('\n', scanned_)) != std::string::npos) {
      std::string line = err_.substr(scanned_, end - scanned_);
      scanned_ = end + 1;
      if (line.find(fragment) != std::string::npos) return line;
    }
    if (eof_) {
      throw std::runtime_error(name_ + " closed stderr before \"" + fragment + "\"; it wrote:\n" +
                               err_);
    }
    changed_.wait(lock);
  }
}

int ChildProcess::reap() {
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return status_;
}

int ChildProcess::stop() {
  if (status_ >= 0) return status_;
  ::kill(pid_, SIGTERM);
  reap();
  if (reader_.joinable()) reader_.join();  // stderr is complete once the child has gone
  return status_;
}

std::string ChildProcess::stderrText() {
  std::lock_guard lock(mutex_);
  return err_;
}

std::string executableDir() {
  char path[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) throw std::runtime_error("cannot read /proc/self/exe");
  std::string exe(path, static_cast<size_t>(n));
  return exe.substr(0, exe.rfind('/'));
}

}  // namespace shop::bench
