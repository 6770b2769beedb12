// What a bench run found: the figures for the JSON file, the rows of the
// tables on stdout, and progress lines on stderr.
#pragma once

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "tools/bench/histogram.h"

namespace shop::bench {

void progress(const char* fmt, auto... args) {
  std::fprintf(stderr, "shop-bench: ");
  std::fprintf(stderr, fmt, args...);
  std::fprintf(stderr, "\n");
}

// Figures collected for the JSON file: scenario -> key -> value.
struct Report {
  std::map<std::string, std::map<std::string, double>> figures;
  std::map<std::string, double> ratios;
  // server ("echo", "e2e") -> configuration ("4x32") -> thread name (and
  // "total") -> CPU microseconds per command.
  std::map<std::string, std::map<std::string, std::map<std::string, double>>> cpu;
  std::vector<std::string> failures;  // servers that did not stop cleanly
  void set(const std::string& scenario, const std::string& key, double v) {
    figures[scenario][key] = v;
  }
};

struct Figures {
  double throughput;
  LatencySummary latency;
};

// The median over rounds of one figure, e.g. [](const Figures& f) { return f.throughput; }.
double medianOf(std::vector<Figures> rounds, double (*field)(const Figures&));
inline double throughputOf(const Figures& f) {
  return f.throughput;
}
inline double p99Of(const Figures& f) {
  return f.latency.p99Us;
}

void printRow(const char* name, const Figures& f, const std::string& note = "");
void printHeader(const char* title);
// `prefix` + commands_per_s, p50_us, p99_us, p999_us.
void record(Report& report, const std::string& scenario, const std::string& prefix,
            const Figures& f);
std::string fixed(double v, int decimals = 2);

}  // namespace shop::bench
