// Command-line helpers shared by the tools: flag values with clear errors.
#pragma once

#include <signal.h>
#include <sys/signalfd.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace shop::cli {

// A usage error: the tool prints it with a pointer to --help and exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The value after flag argv[i]; advances i.
inline std::string value(int argc, char** argv, int& i) {
  if (i + 1 >= argc) throw UsageError(std::string(argv[i]) + " needs a value");
  return argv[++i];
}

inline uint64_t unsignedValue(const std::string& flag, const std::string& text, uint64_t min,
                              uint64_t max) {
  size_t used = 0;
  unsigned long long v = 0;
  try {
    if (text.empty() || text[0] == '-') throw std::invalid_argument("negative");
    v = std::stoull(text, &used, 10);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v < min || v > max) {
    throw UsageError(flag + " must be a whole number from " + std::to_string(min) + " to " +
                     std::to_string(max) + ", got '" + text + "'");
  }
  return v;
}

// A size in bytes: a whole number with an optional K, M or G suffix (powers
// of 1,024; "KiB", "MiB", "GiB" too), from min to max bytes.
inline uint64_t sizeValue(const std::string& flag, const std::string& text, uint64_t min,
                          uint64_t max) {
  std::string digits = text;
  uint64_t unit = 1;
  for (auto [suffix, scale] : {std::pair{"GiB", 1ull << 30},
                               {"MiB", 1ull << 20},
                               {"KiB", 1ull << 10},
                               {"G", 1ull << 30},
                               {"M", 1ull << 20},
                               {"K", 1ull << 10}}) {
    std::string s = suffix;
    if (digits.size() > s.size() && digits.ends_with(s)) {
      digits.resize(digits.size() - s.size());
      unit = scale;
      break;
    }
  }
  uint64_t v;
  try {
    v = unsignedValue(flag, digits, 0, max / unit);
  } catch (const UsageError&) {
    v = max + 1;
  }
  if (v > max / unit || v * unit < min) {
    throw UsageError(flag + " must be a size from " + std::to_string(min) + " to " +
                     std::to_string(max) + " bytes (K, M and G suffixes allowed), got '" + text +
                     "'");
  }
  return v * unit;
}

// Blocks `signals` in the calling thread, and so in every thread it starts
// afterwards, and returns a signalfd that becomes readable when one of them
// arrives: a poll loop can then stop or reload cleanly. -1 (errno set) when
// it cannot. Call before any thread starts.
inline int signalFdFor(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int signo : signals) sigaddset(&set, signo);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

}  // namespace shop::cli
