// Who may connect, and with which role: CURVE keys, the ZAP handler that
// checks them, and the per-socket connection cap.
#pragma once

#include <atomic>
#include <cstddef>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "core/wakeup.h"

namespace shop::bus {

// A CURVE key pair in Z85 text, 40 characters each.
struct CurveKeyPair {
  std::string publicKey;
  std::string secretKey;  // empty when read from a public key file
};

// A key file that cannot be used; the message names the file and the line.
struct KeyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

CurveKeyPair generateKeyPair();
// Writes `base`.key (both keys, mode 0600) and `base`.pub (the public key).
// Key files are text: `public-key Z85` and `secret-key Z85` lines; a line
// that starts with '#' is a comment. Throws KeyError.
void writeKeyFiles(const std::string& base, const CurveKeyPair& keys);
// Reads a .key or .pub file. Throws KeyError.
CurveKeyPair readKeyFile(const std::string& path);
// An authorized-keys file: one Z85 public key per line, then optionally a
// name; a line that starts with '#' is a comment. Returns the keys as 32-byte strings. Throws
// KeyError.
std::set<std::string> readAuthorizedKeys(const std::string& path);
// A short, loggable name for a 32-byte public key: its first 8 bytes in hex.
std::string fingerprint(const std::string& key);

// A client's side of CURVE: the server's public key and the client's own
// pair. Off when serverPublicKey is empty.
struct ClientCurve {
  std::string serverPublicKey;
  CurveKeyPair keys;
  bool on() const { return !serverPublicKey.empty(); }
  // Reads `serverKeyFile` (a .pub or .key file) and `clientKeyFile` (a .key
  // file). Throws KeyError.
  static ClientCurve fromFiles(const std::string& serverKeyFile, const std::string& clientKeyFile);
};
// Sets a client socket's CURVE options before it connects; nothing when off.
void secureClient(zmq::socket_t& socket, const ClientCurve& curve);

// The role a connection was given, from its messages' User-Id property.
inline constexpr const char* kAdminRole = "admin";
inline constexpr const char* kClientRole = "client";

struct AccessConfig {
  // With a secret key file, both server sockets use CURVE, and only keys in
  // the authorized (or admin) file get in. Empty: no encryption, no keys.
  std::string secretKeyFile;
  std::string authorizedKeysFile;
  std::string adminKeysFile;  // may also use the catalog commands
  // Live connections per server socket; past it, a new one is turned away
  // at its handshake.
  size_t maxConnections = 10'000;
  // Re-read the key files when this fd is readable (shopd: a SIGHUP
  // signalfd, which is then read); -1: none.
  int reloadFd = -1;
};

struct AccessStats {
  uint64_t allowed = 0;
  uint64_t deniedKey = 0;          // unknown CURVE key
  uint64_t deniedConnections = 0;  // the connection cap
  uint64_t reloads = 0;            // key files re-read (or tried)
  size_t liveCommands = 0;         // connections to the commands socket now
  size_t liveEvents = 0;
};

// The ZAP handler (ZeroMQ's authentication protocol) on its own thread. It
// also returns freed memory to the OS a second after connections close.
// Construct it before the server binds its sockets: ZeroMQ asks it about
// every connection's handshake. It stays bound until destroyed, so with it
// paused or stuck, handshakes wait and time out: nobody gets in.
//
//   bus::AccessControl access(context, accessConfig);
//   bus::ServerConfig config; config.access = &access;
//   bus::Server server(context, config);   // calls access.secure(...)
class AccessControl {
 public:
  // Reads the key files (throws KeyError) and starts the handler.
  AccessControl(zmq::context_t& context, AccessConfig config);
  ~AccessControl();
  AccessControl(const AccessControl&) = delete;
  AccessControl& operator=(const AccessControl&) = delete;

  bool curve() const { return !serverKeys_.secretKey.empty(); }
  const std::string& serverPublicKey() const { return serverKeys_.publicKey; }

  // Sets up a server socket before it binds: CURVE server keys, the ZAP
  // domain (`name`: "commands" or "events", also the log's name for it),
  // and the monitor that counts its connections. Call from the socket's
  // thread, once per socket. The JSON events socket (`json` set) shares the
  // "events" domain and its connection count.
  void secure(zmq::socket_t& socket, const std::string& name, bool json = false);

  // Thread-safe. Re-reads the key files at the handler's next turn; a file
  // that has become unreadable keeps the previous keys, and says so.
  void reload();
  // Test seam, thread-safe: the handler stops answering for good.
  void pause();
  // Thread-safe: counters as of the handler's last turn.
  AccessStats stats() const;

 private:
  void run();
  void loadKeys();
  void answer(zmq::socket_t& zap);
  // Applies a monitor's events to `live`; returns how many connections closed.
  size_t countConnections(zmq::socket_t& monitor, size_t& live);

  AccessConfig config_;
  CurveKeyPair serverKeys_;
  zmq::socket_t zap_;
  zmq::socket_t commandsMonitor_;
  zmq::socket_t eventsMonitor_;
  zmq::socket_t jsonEventsMonitor_;
  Wakeup control_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> reload_{false};
  std::atomic<bool> paused_{false};

  // Handler thread only.
  std::set<std::string> clients_;  // 32-byte keys
  std::set<std::string> admins_;
  // Published for stats(); written by the handler thread.
  std::atomic<uint64_t> allowed_{0}, deniedKey_{0}, deniedConnections_{0}, reloads_{0};
  std::atomic<size_t> liveCommands_{0}, liveEvents_{0};

  std::thread thread_;  // last: starts after the members above exist
};

}  // namespace shop::bus
