// Command-line helpers shared by the tools: flag values with clear errors.
#pragma once

#include <signal.h>
#include <sys/signalfd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

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

// The one of `candidates` nearest to `word` (edit distance), when it is near
// enough to be a typo of it: at most a third of its letters, at least one.
// Empty otherwise.
inline std::string closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t bestDistance = std::max<size_t>(1, word.size() / 3) + 1;
  for (const auto& candidate : candidates) {
    std::vector<size_t> row(candidate.size() + 1);
    for (size_t j = 0; j <= candidate.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= candidate.size(); ++j) {
        size_t above = row[j];
        row[j] = std::min(
            {row[j] + 1, row[j - 1] + 1, diagonal + (word[i - 1] == candidate[j - 1] ? 0 : 1)});
        diagonal = above;
      }
    }
    if (row.back() < bestDistance) {
      bestDistance = row.back();
      best = candidate;
    }
  }
  return best;
}

// After a parse error: "unknown command 'crate': did you mean 'create'?"
// for the word where a subcommand belongs (the first one that is neither an
// option nor an option's value), or "unknown option '--jsn': did you mean
// '--json'?" for a long option that neither `app` nor its subcommands know,
// when it is a typo of one they do. Empty otherwise. (Debian's CLI11 2.1
// makes no suggestions of its own.)
inline std::string didYouMean(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> options;
  std::vector<std::string> commands;
  std::vector<const CLI::App*> apps = {&app};
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    commands.push_back(sub->get_name());
    apps.push_back(sub);
  }
  // Whether a known long option takes a value (so the next word is not a
  // subcommand's place).
  auto takesValue = [&apps](std::string_view name) {
    for (const CLI::App* from : apps) {
      for (const CLI::Option* option : from->get_options()) {
        for (const auto& long_name : option->get_lnames()) {
          if ("--" + long_name == name) return option->get_type_size_min() > 0;
        }
      }
    }
    return false;
  };
  for (const CLI::App* from : apps) {
    for (const CLI::Option* option : from->get_options()) {
      for (const auto& name : option->get_lnames()) options.push_back("--" + name);
    }
  }
  bool commandPlace = !commands.empty();
  for (int i = 1; i < argc; ++i) {
    std::string_view word = argv[i];
    if (word.starts_with("--")) {
      bool inline_value = word.find('=') != std::string_view::npos;
      word = word.substr(0, word.find('='));
      if (std::find(options.begin(), options.end(), word) != options.end()) {
        if (!inline_value && takesValue(word)) ++i;  // its value
        continue;
      }
      std::string near = closest(word, options);
      if (!near.empty()) {
        return "unknown option '" + std::string(word) + "': did you mean '" + near + "'?";
      }
    } else if (commandPlace && !word.starts_with("-")) {
      commandPlace = false;  // only the first word can name the subcommand
      if (std::find(commands.begin(), commands.end(), word) != commands.end()) continue;
      std::string near = closest(word, commands);
      if (!near.empty()) {
        return "unknown command '" + std::string(word) + "': did you mean '" + near + "'?";
      }
    }
  }
  return {};
}

}  // namespace shop::cli
