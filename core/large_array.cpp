#include "core/large_array.h"

#include <sys/mman.h>

#include <new>

namespace shop::detail {

void* mapLarge(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // A hint: without transparent huge pages the table still works.
  (void)::madvise(p, bytes, MADV_HUGEPAGE);
  return p;
}

void unmapLarge(void* p, size_t bytes) noexcept {
  if (p) ::munmap(p, bytes);
}

}  // namespace shop::detail
