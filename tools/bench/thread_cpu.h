// CPU time of every thread of a process, from /proc/<pid>/task/*/stat, to
// charge each server thread its CPU per command.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

namespace shop::bench {

struct ThreadTicks {
  std::string name;    // the comm field: the thread's name, or the program's for the main thread
  uint64_t ticks = 0;  // utime + stime, in clock ticks (sysconf(_SC_CLK_TCK) per second)
};

// tid -> its name and CPU ticks so far. A thread that exits between two
// samples drops out of the second, so its last ticks are lost; the servers
// measured keep their threads for their whole life.
using CpuSample = std::map<pid_t, ThreadTicks>;

// Reads every thread of `pid`. Throws std::runtime_error when the process is gone.
CpuSample sampleCpu(pid_t pid);

// CPU seconds used between two samples, summed by thread name. Resolution is
// one clock tick, 10 ms with the usual CLK_TCK of 100: a 5 s round of a busy
// thread is about 500 ticks (0.2 %), a 1 s --quick round about 100 (1 %).
std::map<std::string, double> cpuSecondsByThread(const CpuSample& before, const CpuSample& after);

}  // namespace shop::bench
