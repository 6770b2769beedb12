#include "core/large_array.h"

#include <sys/mman.h>

#include <new>

namespace shop::detail {

void* mapLarge(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // No MADV_HUGEPAGE: with Debian's default defrag policy ("madvise") a
  // fault in such a region may compact memory synchronously, a stall we do
  // not want on the command path. TODO(perf): measure huge pages with the
  // tables touched once at start, which would keep faults off that path.
  return p;
}

void unmapLarge(void* p, size_t bytes) noexcept {
  if (p) ::munmap(p, bytes);
}

}  // namespace shop::detail
