// The `holds` scenario: reserve-then-buy against a plain buy, on the engine
// in-process (no sockets), in the same run.
#pragma once

#include "tools/bench/report.h"

namespace shop::bench {

struct HoldsOptions {
  bool quick = false;
  double seconds = 5;
};

void runHolds(const HoldsOptions& o, Report& report);

}  // namespace shop::bench
