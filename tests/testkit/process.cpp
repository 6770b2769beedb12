#include "tests/testkit/process.h"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace shop::testkit {

Process::Process(const std::vector<std::string>& argv) {
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  posix_spawn_file_actions_addclose(&actions, err[0]);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int rc = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  close(err[1]);
  outFd_ = out[0];
  errFd_ = err[0];
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
}

Process::~Process() {
  if (status_ < 0 && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait();
  }
  if (outFd_ >= 0) close(outFd_);
  if (errFd_ >= 0) close(errFd_);
}

bool Process::readSome(int fd, std::string& into) {
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) < 0 && errno == EINTR) {
  }
  if (n <= 0) return false;
  into.append(buf, static_cast<size_t>(n));
  return true;
}

bool Process::readSomeBy(int fd, std::string& into,
                         std::optional<std::chrono::steady_clock::time_point> deadline) {
  if (deadline) {
    auto left =
        std::chrono::ceil<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    int ready;
    while ((ready = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)))) < 0 &&
           errno == EINTR) {
    }
    if (ready <= 0) return false;  // the deadline passed
  }
  return readSome(fd, into);
}

namespace {
std::optional<std::chrono::steady_clock::time_point> deadlineAfter(int timeoutMs) {
  if (timeoutMs < 0) return std::nullopt;
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
}
}  // namespace

std::string Process::waitForStderrLine(const std::string& fragment, int timeoutMs) {
  auto deadline = deadlineAfter(timeoutMs);
  for (;;) {
    size_t end;
    while ((end = err_.find('\n', errScanned_)) != std::string::npos) {
      std::string line = err_.substr(errScanned_, end - errScanned_);
      errScanned_ = end + 1;
      if (line.find(fragment) != std::string::npos) return line;
    }
    if (!readSomeBy(errFd_, err_, deadline)) return {};
  }
}

std::vector<std::string> Process::waitForStdoutLines(size_t lines, int timeoutMs) {
  auto deadline = deadlineAfter(timeoutMs);
  for (;;) {
    std::vector<std::string> complete;
    size_t start = 0, end;
    while ((end = out_.find('\n', start)) != std::string::npos) {
      complete.push_back(out_.substr(start, end - start));
      start = end + 1;
    }
    if (complete.size() >= lines || !readSomeBy(outFd_, out_, deadline)) return complete;
  }
}

void Process::signal(int signo) {
  ::kill(pid_, signo);
}

int Process::wait() {
  if (status_ >= 0) return status_;
  // Drain both pipes so the child never blocks on a full one.
  pollfd fds[2] = {{outFd_, POLLIN, 0}, {errFd_, POLLIN, 0}};
  int open = 2;
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
    for (auto& p : fds) {
      if (p.fd >= 0 && (p.revents & (POLLIN | POLLHUP))) {
        if (!readSome(p.fd, p.fd == outFd_ ? out_ : err_)) {
          p.fd = -1;
          --open;
        }
      }
    }
  }
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return status_;
}

int Process::run(const std::vector<std::string>& argv, std::string* out, std::string* err) {
  Process p(argv);
  int code = p.wait();
  if (out) *out = p.out();
  if (err) *err = p.err();
  return code;
}

}  // namespace shop::testkit
