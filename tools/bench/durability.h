// The `journal` scenario: what durability costs. The device's raw fdatasync
// rate, e2e throughput under each --fsync mode beside the in-memory shopd in
// the same run, commands per fdatasync (group commit at work), and the
// replay rate from journal to state.
#pragma once

#include <string>

#include "tools/bench/report.h"

namespace shop::bench {

struct DurabilityOptions {
  bool quick = false;
  int connections = 4;
  int window = 32;
  double seconds = 5;
  // Where the journals go; empty: a temporary directory in the current one
  // (a disk, where /tmp may be memory).
  std::string dir;
  bool modes = true;   // the journal scenario: e2e under each mode
  bool replay = true;  // the replay scenario
};

void runDurability(const DurabilityOptions& o, Report& report);

}  // namespace shop::bench
