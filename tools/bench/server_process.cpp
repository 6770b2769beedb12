#include "tools/bench/server_process.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>

namespace shop::bench {
namespace {

// The text after `key` up to the next ',', ' ' or the end of `line`.
std::string fieldAfter(const std::string& line, const std::string& key) {
  size_t at = line.find(key);
  if (at == std::string::npos) return {};
  at += key.size();
  return line.substr(at, line.find_first_of(", ", at) - at);
}

double mb(long bytes) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0);
}

FdWait waitForFds(pid_t pid, const std::function<bool(int)>& done, double timeout) {
  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  FdWait w;
  for (;;) {
    w.fds = openFdsOf(pid);
    w.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (done(w.fds)) {
      w.ok = true;
      return w;
    }
    if (w.seconds >= timeout) {
      progress("warning: pid %d has %d fds open after %.1f s", static_cast<int>(pid), w.fds,
               w.seconds);
      return w;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::vector<std::string> withProgram(const std::string& program, std::vector<std::string> args) {
  std::string path = executableDir() + "/" + program;
  if (::access(path.c_str(), X_OK) != 0) {
    throw std::runtime_error(path + " not found: build the " + program + " target");
  }
  args.insert(args.begin(), path);
  return args;
}

}  // namespace

ServerProcess::ServerProcess(const std::string& program, std::vector<std::string> args)
    : child_(withProgram(program, std::move(args))) {
  // The startup line, e.g. "serving commands on tcp://127.0.0.1:40123, events on ...".
  std::string line = child_.waitForStderrLine("serving commands on ");
  commands = fieldAfter(line, "serving commands on ");
  events = fieldAfter(line, "events on ");
  if (commands.empty()) throw std::runtime_error("no endpoint in " + program + "'s line: " + line);
}

void ServerProcess::stop(Report& report) {
  int code = child_.stop();
  // The server's own summary (shopd: requests, events, requests per turn).
  std::string text = child_.stderrText();
  if (size_t at = text.rfind("stopped after"); at != std::string::npos) {
    progress("%s: %s", child_.name().c_str(), text.substr(at, text.find('\n', at) - at).c_str());
  }
  if (code != 0) {
    std::string why = child_.name() + " (pid " + std::to_string(child_.pid()) + ") exited " +
                      std::to_string(code) + " on SIGTERM; its stderr:\n" + child_.stderrText();
    progress("%s", why.c_str());
    report.failures.push_back(why);
  }
}

std::unique_ptr<ServerProcess> startShopd(uint64_t history) {
  std::vector<std::string> args = {"--no-catalog", "--commands", "tcp://127.0.0.1:*", "--events",
                                   "tcp://127.0.0.1:*"};
  if (history > 0) {
    for (const char* flag : {"--retention", "--dedupe-window"}) {
      args.push_back(flag);
      args.push_back(std::to_string(history));
    }
  }
  return std::make_unique<ServerProcess>("shopd", std::move(args));
}

uint64_t shopdDefault(const std::string& flag) {
  std::string path = executableDir() + "/shopd";
  std::string command = "'";
  for (char c : path) command += c == '\'' ? std::string("'\\''") : std::string(1, c);
  command += "' --help";
  FILE* help = ::popen(command.c_str(), "r");
  if (!help) throw std::runtime_error("cannot run " + path + " --help");
  std::string text;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, help)) text.append(buf, n);
  ::pclose(help);
  // CLI11's help: "  --retention N:UINT in [1 - 1000000000]=1000000".
  size_t at = text.find("  " + flag + " ");
  size_t eol = at == std::string::npos ? at : text.find('\n', at);
  size_t def = at == std::string::npos ? at : text.rfind('=', eol);
  if (def == std::string::npos || def < at || !std::isdigit(text[def + 1])) {
    throw std::runtime_error("no default for " + flag + " in shopd --help");
  }
  return std::stoull(text.substr(def + 1));
}

std::unique_ptr<ServerProcess> startEcho(bool hop) {
  std::vector<std::string> args{"--commands", "tcp://127.0.0.1:*"};
  if (hop) args.push_back("--hop");
  return std::make_unique<ServerProcess>("shop-echo", std::move(args));
}

long rssBytesOf(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) * 1024;
  }
  return 0;
}

int openFdsOf(pid_t pid) {
  DIR* dir = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!dir) return -1;
  int n = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;  // not "." or ".."
  }
  ::closedir(dir);
  return n;
}

Footprint footprintOf(pid_t pid) {
  return {openFdsOf(pid), mb(rssBytesOf(pid))};
}

FdWait settleTo(pid_t pid, int fds, double timeout) {
  return waitForFds(
      pid, [fds](int n) { return n <= fds; }, timeout);
}

FdWait waitForAccepted(pid_t pid, int fds, double timeout) {
  return waitForFds(
      pid, [fds](int n) { return n >= fds; }, timeout);
}

RssPeak::RssPeak(pid_t pid)
    : thread_([this, pid] {
        while (!stop_.load(std::memory_order_acquire)) {
          peak_ = std::max(peak_, rssBytesOf(pid));
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        peak_ = std::max(peak_, rssBytesOf(pid));
      }) {}

double RssPeak::stopMb() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
  return mb(peak_);
}

uint64_t listenOverflows() {
  std::ifstream netstat("/proc/net/netstat");
  std::string names, values;  // a line of names, then a line of their values
  while (std::getline(netstat, names) && std::getline(netstat, values)) {
    if (names.rfind("TcpExt:", 0) != 0) continue;
    std::istringstream n(names), v(values);
    for (std::string name, value; n >> name && v >> value;) {
      if (name == "ListenOverflows") return std::stoull(value);
    }
  }
  return 0;
}

uint64_t unreadRequestBytes(int port) {
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line);                        // the header
  auto portOf = [](const std::string& address) {  // "0100007F:15B3"
    return std::stoi(address.substr(address.find(':') + 1), nullptr, 16);
  };
  uint64_t unread = 0;
  while (std::getline(tcp, line)) {
    // sl local_address rem_address st tx_queue:rx_queue ...
    std::istringstream fields(line);
    std::string sl, local, remote, state, queues;
    fields >> sl >> local >> remote >> state >> queues;
    if (state == "0A") continue;  // listening
    size_t colon = queues.find(':');
    uint64_t tx = std::stoull(queues.substr(0, colon), nullptr, 16);
    uint64_t rx = std::stoull(queues.substr(colon + 1), nullptr, 16);
    if (portOf(local) == port) unread += rx;
    if (portOf(remote) == port) unread += tx;
  }
  return unread;
}

}  // namespace shop::bench
