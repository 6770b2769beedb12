// A level-triggered wakeup that poll(2)/zmq_poll can watch: an eventfd, with
// wakeup suppression: producers write it only when the consumer said it is
// about to sleep, so a busy consumer costs the producers no syscall.
//
// Consumer protocol (one thread): arm(); check the queue once more; sleep on
// fd() only if it was empty; disarm(); clear() if fd() was readable; drain.
// Producer protocol (any thread): enqueue, then notifyIfArmed().
#pragma once

#include <atomic>

namespace shop {

class Wakeup {
 public:
  Wakeup();
  ~Wakeup();
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;

  // Producer side; any thread. Always makes fd() readable.
  void notify();
  // Producer side; any thread. Makes fd() readable only if the consumer is
  // armed (at most once per arm). Call after the item is enqueued.
  void notifyIfArmed();

  // Consumer side. After arm(), re-check the queue before sleeping: an item
  // enqueued before arm() took effect is seen there, one after it notifies.
  void arm();
  void disarm() { armed_.store(false, std::memory_order_relaxed); }
  // Consumes pending notifications (a read(2); call when fd() was readable).
  void clear();
  // Blocks up to timeoutMs (-1: forever) until fd() is readable.
  bool wait(int timeoutMs);
  int fd() const { return fd_; }

 private:
  int fd_;
  std::atomic<bool> armed_{false};
};

}  // namespace shop
