#include "tools/bench/report.h"

#include <algorithm>

namespace shop::bench {

void printRow(const char* name, const Figures& f, const std::string& note) {
  std::printf("  %-34s %12.0f %10.1f %10.1f %10.1f  %s\n", name, f.throughput, f.latency.p50Us,
              f.latency.p99Us, f.latency.p999Us, note.c_str());
}

double medianOf(std::vector<Figures> rounds, double (*field)(const Figures&)) {
  std::sort(rounds.begin(), rounds.end(),
            [field](const Figures& a, const Figures& b) { return field(a) < field(b); });
  return field(rounds[rounds.size() / 2]);
}

void printHeader(const char* title) {
  std::printf("\n%s\n  %-34s %12s %10s %10s %10s\n", title, "", "cmds/s", "p50 us", "p99 us",
              "p99.9 us");
}

void record(Report& report, const std::string& scenario, const std::string& prefix,
            const Figures& f) {
  report.set(scenario, prefix + "commands_per_s", f.throughput);
  report.set(scenario, prefix + "p50_us", f.latency.p50Us);
  report.set(scenario, prefix + "p99_us", f.latency.p99Us);
  report.set(scenario, prefix + "p999_us", f.latency.p999Us);
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace shop::bench
