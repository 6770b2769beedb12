// shop-relay's configuration: where the events come from, where each kind
// of event goes, and how hard to try. Read from a JSON file; a bad file
// stops the start with a message that names the field.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bus/access.h"

namespace shop::relay {

// A field that is missing, of the wrong type or out of range; what() names
// it as a path, e.g. "destinations[1].retry.maxAttempts: must be >= 1".
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct RetryPolicy {
  int64_t initialMs = 200;   // the delay after the first failed attempt
  double multiplier = 2.0;   // each further delay: the one before times this
  int64_t maxMs = 30'000;    // the cap of a delay
  double jitter = 0.2;       // each delay is scaled by a random factor in [1 - j, 1 + j]
  uint32_t maxAttempts = 8;  // then the message is parked

  // The delay before attempt `attempt` + 1 after `attempt` failed, without
  // jitter.
  double baseDelayMs(uint32_t attempt) const;
};

struct Destination {
  std::string name;  // [A-Za-z0-9_-]{1,64}: names its state files
  enum class Kind : uint8_t { http, zmq } kind = Kind::http;
  // http: "http://host[:port]/path". zmq: a ZeroMQ endpoint, e.g.
  // "tcp://127.0.0.1:7000", reached with a DEALER socket.
  std::string url;
  std::vector<std::string> events;  // event kinds (capnp names, e.g. "holdConfirmed")
  std::string customerPrefix;       // only events whose customer starts with it
  std::string productPrefix;        // only events whose product starts with it
  uint32_t maxInFlight = 1;         // deliveries at once; 1 keeps arrival in seq order
  double ratePerSecond = 0;         // attempts per second at most; 0: no limit
  int64_t timeoutMs = 5'000;        // one attempt, connect to answer
  RetryPolicy retry;
};

struct Config {
  std::string commands = "tcp://127.0.0.1:5555";  // shopd's command socket
  std::string events = "tcp://127.0.0.1:5556";    // shopd's event socket
  std::string control = "tcp://127.0.0.1:5570";   // shop-relay's own: status, parked, replay
  std::string stateDir = "relay-state";           // checkpoints and parked messages
  // CURVE to shopd (both sockets): shopd's public key file and the relay's
  // key pair file, both or neither. `curve` is what they hold, read with the
  // config.
  std::string curveServerKey, curveClientKey;
  bus::ClientCurve curve;
  std::vector<Destination> destinations;
};

// Parses a config from JSON text; throws ConfigError.
Config parseConfig(const std::string& text);
// Reads and parses a file; throws ConfigError (naming the file).
Config readConfig(const std::string& path);

// The event kinds a destination may name.
const std::vector<std::string>& eventKinds();

}  // namespace shop::relay
