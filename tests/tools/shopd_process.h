// shopd as a child process: where it serves, read from its log.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "tests/testkit/process.h"

namespace shop::testkit {

struct ShopdEndpoints {
  std::string commands;
  std::string events;
};

// Waits for shopd's "serving" line and returns both endpoints from it.
inline ShopdEndpoints endpointsOf(Process& shopd) {
  std::string line = shopd.waitForStderrLine("serving commands on", 30'000);
  // "... serving commands on <endpoint>, events on <endpoint> (...)"
  auto after = [&line](const std::string& marker) {
    size_t at = line.find(marker);
    REQUIRE(at != std::string::npos);
    size_t begin = at + marker.size();
    std::string endpoint = line.substr(begin, line.find_first_of(", ", begin) - begin);
    REQUIRE(endpoint.starts_with("tcp://127.0.0.1:"));
    return endpoint;
  };
  return {after("commands on "), after("events on ")};
}

// The same, the commands endpoint alone.
inline std::string endpointOf(Process& shopd) {
  return endpointsOf(shopd).commands;
}

}  // namespace shop::testkit
