// The dashboard's view of shop-relay processes: one thread asks each
// relay's control socket for its status once a second, and keeps the newest
// answer for the page (GET /api/relay) and the metrics.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace shop::dashboard {

struct RelayWatchConfig {
  std::vector<std::string> endpoints;  // control sockets (shop-relay's `control`)
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds timeout{1000};  // no answer by then: that relay is down
};

// Keeps what the page and the metrics show of a relay's status answer,
// checking every field's type: the answer crossed a socket from another
// process. A URL's query is cut (it may hold a token). Throws
// std::runtime_error saying what is wrong.
nlohmann::json readRelayStatus(const std::string& text);

class RelayWatch {
 public:
  explicit RelayWatch(RelayWatchConfig config);
  ~RelayWatch();
  RelayWatch(const RelayWatch&) = delete;
  RelayWatch& operator=(const RelayWatch&) = delete;

  // Starts asking; stop() (or the destructor) ends it within 100 ms.
  void start();
  void stop();

  bool empty() const { return config_.endpoints.empty(); }

  // {"relays": [{endpoint, up, error, serverId, head, askedAtNs,
  //   destinations: [{name, kind, url, checkpoint, lag, queued, inFlight,
  //   delivered, deliveredPerSecond, attempts, retries, parked, parkedTotal,
  //   parkFailures, redriven, lastError}]}]}, in the order of the endpoints.
  // A relay that is down has no destinations, and says why in `error`.
  nlohmann::json snapshot() const;

  // Prometheus text: shop_relay_up per relay; lag, queued, in flight,
  // delivered, delivered per second, attempts, retries and parked per
  // destination.
  std::string metricsText() const;

  // Test seam: waits until `more` rounds of asking (each relay answered or
  // timed out) have ended after this call; false after `timeout`. With
  // `more` >= 2, the last round began after the call.
  bool waitForRounds(uint64_t more, std::chrono::milliseconds timeout) const;

 private:
  struct Relay {
    std::string endpoint;
    bool up = false;
    std::string error = "not asked yet";
    nlohmann::json status;  // the last good answer's serverId, head, destinations
    int64_t askedAtNs = 0;
  };

  void run();

  const RelayWatchConfig config_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;  // a round ended, or stop
  std::vector<Relay> relays_;
  uint64_t rounds_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace shop::dashboard
