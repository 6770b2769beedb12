// The relay: a catch-up consumer of shopd's event stream that hands each
// selected event to its destinations (relay/destination.h), and answers
// status, parked and replay requests on its control socket.
//
// Threads: run() follows the stream on the caller's thread; each
// destination has its workers; the control socket has a thread of its own.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "relay/config.h"
#include "relay/destination.h"

namespace shop::relay {

// The stream's next event is no longer retained by shopd: it can never be
// delivered. The relay stops rather than skip it.
struct StreamTruncated : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Relay {
 public:
  // Reads every destination's state and binds the control socket; throws
  // std::runtime_error (a state file that does not read, a control endpoint
  // that cannot be bound).
  explicit Relay(Config config);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Follows the stream until `stop` is set; then stops the destinations
  // (checkpoints synced). Throws StreamTruncated, or std::runtime_error when
  // shopd cannot be reached at the start.
  void run(const std::atomic<bool>& stop);

  // The control socket's actual endpoint (a bound tcp://...:* resolved).
  const std::string& controlEndpoint() const { return controlEndpoint_; }
  DestinationRunner& destination(size_t i) { return *destinations_[i]; }
  size_t destinations() const { return destinations_.size(); }

  // What the control socket answers: {"status":{}}, {"parked":{"destination":
  // NAME}}, {"replay":{"destination": NAME, "id": SEQ or KEY}} ("seq": N is
  // taken too).
  nlohmann::json handle(const nlohmann::json& request);

 private:
  void serveControl();

  Config config_;
  zmq::context_t context_{1};
  std::vector<std::unique_ptr<DestinationRunner>> destinations_;
  std::atomic<Seq> head_{0};  // the newest seq the relay has seen
  std::atomic<uint64_t> serverId_{0};
  zmq::socket_t control_;
  std::string controlEndpoint_;
  std::atomic<bool> controlStop_{false};
  std::thread controlThread_;
};

}  // namespace shop::relay
