#include "core/wakeup.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace shop {

Wakeup::Wakeup() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

Wakeup::~Wakeup() {
  ::close(fd_);
}

void Wakeup::notify() {
  uint64_t one = 1;
  // EAGAIN only when the counter is at its maximum: it is readable anyway.
  while (::write(fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void Wakeup::notifyIfArmed() {
  // Pairs with the fence in arm(): either the consumer's re-check sees our
  // item, or we see armed_ == true here (Dekker: store, fence, load).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (armed_.load(std::memory_order_relaxed) && armed_.exchange(false, std::memory_order_relaxed)) {
    notify();
  }
}

void Wakeup::arm() {
  armed_.store(true, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

void Wakeup::clear() {
  uint64_t count;
  while (::read(fd_, &count, sizeof count) < 0 && errno == EINTR) {
  }
}

bool Wakeup::wait(int timeoutMs) {
  pollfd p{fd_, POLLIN, 0};
  int n;
  while ((n = ::poll(&p, 1, timeoutMs)) < 0 && errno == EINTR) {
  }
  return n > 0;
}

}  // namespace shop
