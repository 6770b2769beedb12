// The `relay` scenario: shop-relay's delivery rate to a local receiver that
// answers at once, against a plain HTTP client posting the same bodies in
// the same run, and its lag behind a shopd under load.
#pragma once

#include "tools/bench/report.h"

namespace shop::bench {

struct RelayBenchOptions {
  bool quick = false;
  int connections = 2;
  int window = 16;
  double seconds = 5;
};

void runRelay(const RelayBenchOptions& o, Report& report);

}  // namespace shop::bench
