#include "core/large_array.h"

#include <sys/mman.h>

#include <new>

namespace shop::detail {

void* mapLarge(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // No MADV_HUGEPAGE: with the kernel's default defrag policy a fault in such
  // a region may compact memory synchronously, and shop-bench saw the first
  // requests of a fresh shopd stall for 300+ ms that way on a fragmented
  // machine. 4 KiB faults cost microseconds.
  return p;
}

void unmapLarge(void* p, size_t bytes) noexcept {
  if (p) ::munmap(p, bytes);
}

}  // namespace shop::detail
