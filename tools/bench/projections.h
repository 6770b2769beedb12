// The `projections` scenario: the read models' apply rate and memory
// in-process, and shop-dashboard's lag behind a shopd at full load.
#pragma once

#include "tools/bench/report.h"

namespace shop::bench {

struct ProjectionsOptions {
  bool quick = false;
  int connections = 4;
  int window = 32;
  double seconds = 5;
};

void runProjections(const ProjectionsOptions& o, Report& report);

}  // namespace shop::bench
