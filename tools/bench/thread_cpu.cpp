#include "tools/bench/thread_cpu.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace shop::bench {
namespace {

// Parses one /proc/<pid>/task/<tid>/stat line. The name sits between the
// first '(' and the last ')' and may hold spaces; utime and stime are fields
// 14 and 15, counting the pid as 1.
bool parseStat(const std::string& line, ThreadTicks& out) {
  size_t open = line.find('(');
  size_t close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  out.name = line.substr(open + 1, close - open - 1);
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;  // fields[0] is field 3 (state)
  for (std::string f; fields.size() < 13 && rest >> f;) fields.push_back(f);
  if (fields.size() < 13) return false;
  out.ticks = std::stoull(fields[11]) + std::stoull(fields[12]);
  return true;
}

}  // namespace

CpuSample sampleCpu(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* tasks = ::opendir(dir.c_str());
  if (!tasks) throw std::runtime_error("cannot read " + dir);
  CpuSample sample;
  while (dirent* entry = ::readdir(tasks)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::ifstream stat(dir + "/" + entry->d_name + "/stat");
    std::string line;
    ThreadTicks t;
    // A thread that exits while we read is simply left out.
    if (std::getline(stat, line) && parseStat(line, t)) {
      sample[static_cast<pid_t>(std::stol(entry->d_name))] = std::move(t);
    }
  }
  ::closedir(tasks);
  return sample;
}

std::map<std::string, double> cpuSecondsByThread(const CpuSample& before, const CpuSample& after) {
  static const double kTicksPerSecond = static_cast<double>(::sysconf(_SC_CLK_TCK));
  std::map<std::string, double> out;
  for (const auto& [tid, t] : after) {
    auto was = before.find(tid);
    uint64_t start = was == before.end() ? 0 : was->second.ticks;  // a thread born in between
    out[t.name] += static_cast<double>(t.ticks - start) / kTicksPerSecond;
  }
  return out;
}

}  // namespace shop::bench
