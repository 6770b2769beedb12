// The servers a bench scenario drives, each in its own process as in
// production, and what /proc says about them.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tools/bench/child.h"
#include "tools/bench/report.h"

namespace shop::bench {

// A shopd or shop-echo process serving on ephemeral ports, started from the
// directory of this executable. Owned by the main thread (see ChildProcess).
class ServerProcess {
 public:
  // Starts `program` and waits for its "serving commands on ..." line.
  ServerProcess(const std::string& program, std::vector<std::string> args);
  // SIGTERM and wait; a non-zero exit goes into report.failures.
  void stop(Report& report);
  pid_t pid() const { return child_.pid(); }
  // Everything the server wrote on stderr so far.
  std::string log() { return child_.stderrText(); }

  std::string commands;
  std::string events;  // empty for shop-echo

 private:
  ChildProcess child_;
};

// shopd with no catalog; history > 0 sets both --retention and --dedupe-window.
std::unique_ptr<ServerProcess> startShopd(uint64_t history = 0);

// The default of a shopd flag, read from `shopd --help` ("... (default N)"),
// so that a full run fills what the shopd it starts really keeps.
uint64_t shopdDefault(const std::string& flag);

// `hop`: shop-echo --hop, every request through a worker thread and back as
// in shopd, with nothing decided: the cost of the hand-off alone.
std::unique_ptr<ServerProcess> startEcho(bool hop = false);

// VmRSS of another process, in bytes; 0 when it cannot be read.
long rssBytesOf(pid_t pid);
// The entries of /proc/<pid>/fd: the process's open file descriptors; -1
// when they cannot be listed.
int openFdsOf(pid_t pid);

// A server's open files and memory at one moment.
struct Footprint {
  int fds = 0;
  double rssMb = 0;  // VmRSS, MiB
};
Footprint footprintOf(pid_t pid);

// How a wait on /proc/<pid>/fd ended.
struct FdWait {
  bool ok = false;  // the count got there before the deadline
  double seconds = 0;
  int fds = 0;  // the last count read
};
// Poll /proc/<pid>/fd every millisecond, for at most `timeout` seconds (then
// a warning). A server closes a connection's descriptor once it has seen the
// peer go or given up on it, so the count is the observable start and end of
// a connection's life on the server.
//
// Until at most `fds` are open: the server has let go of connections that closed.
FdWait settleTo(pid_t pid, int fds, double timeout);
// Until at least `fds` are open: the server has accepted the connections made.
FdWait waitForAccepted(pid_t pid, int fds, double timeout);

// Owned by the thread that constructs it, which alone calls stopMb(). The
// peak VmRSS of a process from construction to stopMb(), sampled every 2 ms
// on a thread of its own.
class RssPeak {
 public:
  explicit RssPeak(pid_t pid);
  ~RssPeak() { stopMb(); }
  RssPeak(const RssPeak&) = delete;
  RssPeak& operator=(const RssPeak&) = delete;

  // Stops sampling; the peak in MiB. Idempotent.
  double stopMb();

 private:
  std::atomic<bool> stop_{false};
  long peak_ = 0;  // bytes; written by thread_ until it is joined
  std::thread thread_;
};

// TcpExt ListenOverflows from /proc/net/netstat: SYNs dropped because a
// listening socket's accept queue was full (the client retries a second
// later). The count is the network namespace's: every listener adds to it.
uint64_t listenOverflows();

// Request bytes sent to `port` that its server has not read yet, over every
// IPv4 TCP connection to it (/proc/net/tcp): the clients' send queues (on
// loopback, what the server's receive window has no room for) plus the
// server's receive queues.
uint64_t unreadRequestBytes(int port);

}  // namespace shop::bench
