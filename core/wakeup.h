// A level-triggered wakeup that poll(2)/zmq_poll can watch: an eventfd.
// notify() is thread-safe; clear() and fd() belong to the waiting thread.
#pragma once

namespace shop {

class Wakeup {
 public:
  Wakeup();
  ~Wakeup();
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;

  // Makes fd() readable. Producer side; any thread.
  void notify();
  // Consumes pending notifications. Call before draining the queue that
  // notify() announces, so that nothing enqueued after the drain is missed.
  void clear();
  // Blocks up to timeoutMs (-1: forever) until notified. Returns false on timeout.
  bool wait(int timeoutMs);
  int fd() const { return fd_; }

 private:
  int fd_;
};

}  // namespace shop
