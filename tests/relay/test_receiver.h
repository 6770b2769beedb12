// A downstream system for the relay's tests: an HTTP server on loopback
// that records every delivery by its idempotency key, and can be down, fail
// the first tries of each key, answer late, or refuse some messages.
#pragma once

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace shop::testkit {

class TestReceiver {
 public:
  using Clock = std::chrono::steady_clock;
  struct Delivery {
    std::string key;
    uint64_t seq = 0;
    std::string kind;
    std::string body;
    Clock::time_point at;
  };
  // How to answer one attempt: the HTTP status, and how long to wait first.
  struct Answer {
    int status = 200;
    std::chrono::milliseconds delay{0};
  };
  // Decides each answer from the key, the attempt number of that key (1-based)
  // and the body. The default takes everything at once.
  using Behaviour = std::function<Answer(const std::string& key, int attempt, const std::string&)>;

  // Picks a free port, not yet listening.
  TestReceiver() { port_ = pickPort(); }
  ~TestReceiver() { down(); }

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/orders"; }
  void setBehaviour(Behaviour b) {
    std::lock_guard lock(mutex_);
    behaviour_ = std::move(b);
  }

  // Starts listening on the port (again).
  void up() {
    server_ = std::make_unique<httplib::Server>();
    server_->set_keep_alive_max_count(100'000);
    server_->Post("/orders", [this](const httplib::Request& req, httplib::Response& res) {
      std::string key = req.get_header_value("Idempotency-Key");
      Answer answer;
      {
        std::lock_guard lock(mutex_);
        maxConcurrent_ = std::max(maxConcurrent_, ++concurrent_);
        int attempt = ++attempts_[key];
        answer = behaviour_ ? behaviour_(key, attempt, req.body) : Answer{};
      }
      if (answer.delay.count() > 0) std::this_thread::sleep_for(answer.delay);  // a slow receiver
      res.status = answer.status;
      {
        std::lock_guard lock(mutex_);
        --concurrent_;
      }
      if (answer.status >= 200 && answer.status < 300) {
        std::lock_guard lock(mutex_);
        deliveries_.push_back(Delivery{key, std::stoull(req.get_header_value("X-Shop-Seq")),
                                       req.get_header_value("X-Shop-Event"), req.body,
                                       Clock::now()});
        changed_.notify_all();
      }
    });
    if (!server_->bind_to_port("127.0.0.1", port_)) throw std::runtime_error("cannot bind");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    // bind_to_port also listens: connections queue until the loop takes them.
  }
  void down() {
    if (!server_) return;
    server_->stop();
    thread_.join();
    server_.reset();
  }

  // Waits until `n` distinct keys were taken; false after `timeout`.
  bool waitForKeys(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return distinctLocked() >= n; });
  }
  // Waits until `n` deliveries were taken, repeats included.
  bool waitForDeliveries(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return deliveries_.size() >= n; });
  }
  std::vector<Delivery> deliveries() const {
    std::lock_guard lock(mutex_);
    return deliveries_;
  }
  size_t distinct() const {
    std::lock_guard lock(mutex_);
    return distinctLocked();
  }
  // The most requests it was ever answering at once.
  int maxConcurrent() const {
    std::lock_guard lock(mutex_);
    return maxConcurrent_;
  }
  int attemptsOf(const std::string& key) const {
    std::lock_guard lock(mutex_);
    auto it = attempts_.find(key);
    return it == attempts_.end() ? 0 : it->second;
  }

 private:
  // A port the kernel had free, closed again. (Not an httplib::Server: its
  // listening socket outlives it, and with SO_REUSEPORT the kernel would
  // hand some connections to that socket, where nobody accepts them.)
  static int pickPort() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
      throw std::runtime_error("no free port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
  }
  size_t distinctLocked() const {
    std::set<std::string> keys;
    for (const auto& d : deliveries_) keys.insert(d.key);
    return keys.size();
  }

  int port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  Behaviour behaviour_;
  std::map<std::string, int> attempts_;
  std::vector<Delivery> deliveries_;
  int concurrent_ = 0, maxConcurrent_ = 0;
};

}  // namespace shop::testkit
