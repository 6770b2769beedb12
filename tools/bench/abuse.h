// Clients that misbehave, each against a shopd process of its own: connection
// churn, a client that never reads its replies, raw TCP connections that
// never finish ZeroMQ's handshake, and a subscriber that never reads its
// events. Each reports what shopd holds (RSS, open files, read from /proc)
// and what an ordinary client sees meanwhile, as a ratio to the same figure
// on the same shopd without the abuse.
#pragma once

#include <cstdint>

#include "tools/bench/report.h"

namespace shop::bench {

struct AbuseOptions {
  // Smoke sizes: one wave of 200 connections, 20,000 unread requests, 200
  // raw sockets, 1 s slow-subscriber rounds.
  bool quick = false;
  // The slow-subscriber load: connections x requests in flight, closed loop.
  int connections = 2;
  int window = 16;
};

// Waves of DEALERs that connect, send one deposit and close unread
// (linger 0); shopd's fds and RSS after each wave once it has settled.
void runChurn(const AbuseOptions& o, Report& report);
// One DEALER sends as fast as it can and never reads; shopd's RSS before,
// at its peak and after the client has gone.
void runNeverReading(const AbuseOptions& o, Report& report);
// Plain TCP connections to the commands port, half sending one byte, held
// until shopd's handshake deadline closes them.
void runRawTcp(const AbuseOptions& o, Report& report);
// A normal load with and without a SUB that never reads, interleaved.
void runSlowSubscriber(const AbuseOptions& o, Report& report);

// Raises this process's RLIMIT_NOFILE soft limit to its hard limit, since
// churn holds two descriptors per DEALER (its TCP socket and its mailbox's
// eventfd) and raw-tcp one per connection. Returns the soft limit in force.
uint64_t raiseOpenFileLimit();

}  // namespace shop::bench
