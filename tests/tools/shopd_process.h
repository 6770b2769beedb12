// shopd as a child process: where it serves, read from its log.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "tests/testkit/process.h"

namespace shop::testkit {

// Waits for shopd's "serving" line and returns one of its endpoints:
// `which` is "commands" or "events".
inline std::string endpointOf(Process& shopd, const std::string& which = "commands") {
  std::string line = shopd.waitForStderrLine("serving commands on", 30'000);
  // "... serving commands on <endpoint>, events on <endpoint> (...)"
  const std::string marker = which + " on ";
  size_t at = line.find(marker);
  REQUIRE(at != std::string::npos);
  size_t begin = at + marker.size();
  size_t end = line.find_first_of(", ", begin);
  std::string endpoint = line.substr(begin, end - begin);
  REQUIRE(endpoint.starts_with("tcp://127.0.0.1:"));
  return endpoint;
}

}  // namespace shop::testkit
