#include "bus/access.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "core/log.h"

namespace shop::bus {
namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";  // fixed by ZeroMQ
constexpr size_t kZ85KeyChars = 40;
constexpr size_t kKeyBytes = 32;
// Denials are logged one by one up to this count, then one in 1,000.
constexpr uint64_t kDenialsLogged = 20;

std::string monitorEndpoint(const std::string& name) {
  return "inproc://shop.monitor." + name;
}

// The 32 bytes a Z85 key stands for, or empty when it is not one.
std::string decodeKey(const std::string& z85) {
  if (z85.size() != kZ85KeyChars) return {};
  std::string key(kKeyBytes, '\0');
  if (!zmq_z85_decode(reinterpret_cast<uint8_t*>(key.data()), z85.c_str())) return {};
  return key;
}

// Each line of a text file that is not blank or a comment, split into
// words, with its line number.
struct Line {
  int number;
  std::vector<std::string> words;
};
std::vector<Line> readLines(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw KeyError("cannot read key file " + path);
  std::vector<Line> lines;
  std::string text;
  for (int number = 1; std::getline(in, text); ++number) {
    // Only whole lines are comments: '#' is also a Z85 digit.
    std::istringstream words(text);
    Line line{number, {}};
    for (std::string w; words >> w;) line.words.push_back(w);
    if (!line.words.empty() && line.words[0][0] != '#') lines.push_back(std::move(line));
  }
  return lines;
}

std::string where(const std::string& path, int line) {
  return path + ":" + std::to_string(line);
}

}  // namespace

CurveKeyPair generateKeyPair() {
  char publicKey[kZ85KeyChars + 1];
  char secretKey[kZ85KeyChars + 1];
  if (zmq_curve_keypair(publicKey, secretKey) != 0) {
    throw KeyError(std::string("cannot make a CURVE key pair: ") + zmq_strerror(zmq_errno()));
  }
  return {publicKey, secretKey};
}

void writeKeyFiles(const std::string& base, const CurveKeyPair& keys) {
  auto write = [](const std::string& path, const std::string& text, mode_t mode) {
    std::FILE* f = std::fopen(path.c_str(), "wx");  // never overwrite a key
    if (!f) throw KeyError("cannot create " + path + ": " + std::strerror(errno));
    ::fchmod(fileno(f), mode);
    bool ok = std::fputs(text.c_str(), f) >= 0;
    ok = std::fclose(f) == 0 && ok;
    if (!ok) throw KeyError("cannot write " + path);
  };
  write(base + ".key",
        "# shop CURVE key pair: keep this file secret\npublic-key " + keys.publicKey +
            "\nsecret-key " + keys.secretKey + "\n",
        0600);
  write(base + ".pub", "# shop CURVE public key\npublic-key " + keys.publicKey + "\n", 0644);
}

CurveKeyPair readKeyFile(const std::string& path) {
  CurveKeyPair keys;
  for (const Line& line : readLines(path)) {
    if (line.words.size() != 2 ||
        (line.words[0] != "public-key" && line.words[0] != "secret-key")) {
      throw KeyError(where(path, line.number) + ": expected 'public-key Z85' or 'secret-key Z85'");
    }
    if (decodeKey(line.words[1]).empty()) {
      throw KeyError(where(path, line.number) + ": not a 40-character Z85 key");
    }
    (line.words[0] == "public-key" ? keys.publicKey : keys.secretKey) = line.words[1];
  }
  if (keys.publicKey.empty()) throw KeyError(path + ": no public-key line");
  if (!keys.secretKey.empty()) {
    char derived[kZ85KeyChars + 1];
    if (zmq_curve_public(derived, keys.secretKey.c_str()) != 0 || keys.publicKey != derived) {
      throw KeyError(path + ": the public key does not belong to the secret key");
    }
  }
  return keys;
}

std::set<std::string> readAuthorizedKeys(const std::string& path) {
  std::set<std::string> keys;
  for (const Line& line : readLines(path)) {
    // A key file's own `public-key Z85` line is accepted too.
    size_t at = line.words[0] == "public-key" && line.words.size() >= 2 ? 1 : 0;
    std::string key = decodeKey(line.words[at]);
    if (key.empty()) {
      throw KeyError(where(path, line.number) + ": not a 40-character Z85 public key");
    }
    keys.insert(std::move(key));
  }
  return keys;
}

std::string fingerprint(const std::string& key) {
  std::string hex;
  char byte[3];
  for (size_t i = 0; i < key.size() && i < 8; ++i) {
    std::snprintf(byte, sizeof byte, "%02x", static_cast<unsigned char>(key[i]));
    hex += byte;
  }
  return hex;
}

ClientCurve ClientCurve::fromFiles(const std::string& serverKeyFile,
                                   const std::string& clientKeyFile) {
  ClientCurve curve{readKeyFile(serverKeyFile).publicKey, readKeyFile(clientKeyFile)};
  if (curve.keys.secretKey.empty()) {
    throw KeyError(clientKeyFile + ": no secret-key line (the client needs its .key file)");
  }
  return curve;
}

void secureClient(zmq::socket_t& socket, const ClientCurve& curve) {
  if (!curve.on()) return;
  socket.set(zmq::sockopt::curve_serverkey, curve.serverPublicKey);
  socket.set(zmq::sockopt::curve_publickey, curve.keys.publicKey);
  socket.set(zmq::sockopt::curve_secretkey, curve.keys.secretKey);
}

AccessControl::AccessControl(zmq::context_t& context, AccessConfig config)
    : config_(std::move(config)),
      zap_(context, zmq::socket_type::rep),
      commandsMonitor_(context, zmq::socket_type::pair),
      eventsMonitor_(context, zmq::socket_type::pair),
      jsonEventsMonitor_(context, zmq::socket_type::pair) {
  if (!config_.secretKeyFile.empty()) {
    serverKeys_ = readKeyFile(config_.secretKeyFile);
    if (serverKeys_.secretKey.empty()) {
      throw KeyError(config_.secretKeyFile + ": no secret-key line (this is a public key file)");
    }
    if (config_.authorizedKeysFile.empty() && config_.adminKeysFile.empty()) {
      throw KeyError("a CURVE server needs --authorized-keys or --admin-keys");
    }
  } else if (!config_.authorizedKeysFile.empty() || !config_.adminKeysFile.empty()) {
    throw KeyError("key lists need the server's --curve-secret-key");
  }
  loadKeys();
  zap_.set(zmq::sockopt::linger, 0);
  zap_.bind(kZapEndpoint);
  // ZeroMQ's I/O thread blocks when a monitor's pipe is full, so this side
  // takes every event: it drains them each turn.
  for (auto* monitor : {&commandsMonitor_, &eventsMonitor_, &jsonEventsMonitor_}) {
    monitor->set(zmq::sockopt::linger, 0);
    monitor->set(zmq::sockopt::rcvhwm, 0);
  }
  commandsMonitor_.connect(monitorEndpoint("commands"));
  eventsMonitor_.connect(monitorEndpoint("events"));
  jsonEventsMonitor_.connect(monitorEndpoint("events.json"));
  thread_ = std::thread([this] { run(); });
}

AccessControl::~AccessControl() {
  stop_.store(true);
  control_.notify();
  thread_.join();
}

void AccessControl::secure(zmq::socket_t& socket, const std::string& name, bool json) {
  if (curve()) {
    socket.set(zmq::sockopt::curve_server, true);
    socket.set(zmq::sockopt::curve_secretkey, serverKeys_.secretKey);
  }
  // With a domain set, ZeroMQ asks the handler about NULL connections too:
  // that is where the connection cap is kept.
  socket.set(zmq::sockopt::zap_domain, name);
  if (zmq_socket_monitor(socket.handle(), monitorEndpoint(json ? name + ".json" : name).c_str(),
                         ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0) {
    throw zmq::error_t();
  }
}

void AccessControl::reload() {
  reload_.store(true);
  control_.notify();
}

void AccessControl::pause() {
  paused_.store(true);
  control_.notify();
}

AccessStats AccessControl::stats() const {
  return AccessStats{allowed_.load(), deniedKey_.load(),    deniedConnections_.load(),
                     reloads_.load(), liveCommands_.load(), liveEvents_.load()};
}

void AccessControl::loadKeys() {
  clients_ = config_.authorizedKeysFile.empty() ? std::set<std::string>{}
                                                : readAuthorizedKeys(config_.authorizedKeysFile);
  admins_ = config_.adminKeysFile.empty() ? std::set<std::string>{}
                                          : readAuthorizedKeys(config_.adminKeysFile);
  if (curve()) {
    logLine("access", "CURVE on: %zu client keys, %zu admin keys; server key %s", clients_.size(),
            admins_.size(), fingerprint(decodeKey(serverKeys_.publicKey)).c_str());
  }
}

void AccessControl::run() {
  pthread_setname_np(pthread_self(), "shop-access");
  std::vector<zmq::pollitem_t> items = {
      {zap_.handle(), 0, ZMQ_POLLIN, 0},
      {commandsMonitor_.handle(), 0, ZMQ_POLLIN, 0},
      {eventsMonitor_.handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, control_.fd(), ZMQ_POLLIN, 0},
      {jsonEventsMonitor_.handle(), 0, ZMQ_POLLIN, 0},
  };
  if (config_.reloadFd >= 0) items.push_back({nullptr, config_.reloadFd, ZMQ_POLLIN, 0});
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> trimAt;
  while (!stop_.load()) {
    // Paused, the ZAP socket is left unread: handshakes wait, then time out.
    items[0].events = paused_.load() ? 0 : ZMQ_POLLIN;
    auto timeout = std::chrono::milliseconds(-1);
    if (trimAt) {
      timeout =
          std::max(std::chrono::milliseconds(0),
                   std::chrono::duration_cast<std::chrono::milliseconds>(*trimAt - Clock::now()));
    }
    zmq::poll(items.data(), items.size(), timeout);
    if (trimAt && Clock::now() >= *trimAt) {
      // Closed connections free their buffers in the middle of ZeroMQ's
      // heap, where glibc's automatic trim never looks: after 5 waves of
      // 1,000 vanished connections RSS stayed 86 MB up, all of it free.
      // malloc_trim gives it back. Here, a second after a burst of closes,
      // it costs the socket thread nothing.
      malloc_trim(0);
      trimAt.reset();
    }
    if (items[3].revents & ZMQ_POLLIN) control_.clear();
    if (items.size() > 5 && (items[5].revents & ZMQ_POLLIN)) {
      char info[128];  // a signalfd_siginfo
      (void)::read(config_.reloadFd, info, sizeof info);
      reload_.store(true);
    }
    if (reload_.exchange(false)) {
      try {
        loadKeys();
        logLine("access", "key files reloaded");
      } catch (const KeyError& e) {
        logLine("access", "reload failed, keeping the previous keys: %s", e.what());
      }
      reloads_.fetch_add(1);
    }
    // Connections first, so that a handshake's own connection is counted.
    size_t live = liveCommands_.load();
    size_t closed = countConnections(commandsMonitor_, live);
    liveCommands_.store(live);
    live = liveEvents_.load();
    closed += countConnections(eventsMonitor_, live);
    closed += countConnections(jsonEventsMonitor_, live);
    liveEvents_.store(live);
    if (closed > 0 && !trimAt) trimAt = Clock::now() + std::chrono::seconds(1);
    if (!paused_.load()) answer(zap_);
  }
}

size_t AccessControl::countConnections(zmq::socket_t& monitor, size_t& live) {
  size_t closed = 0;
  zmq::message_t event, endpoint;
  while (monitor.recv(event, zmq::recv_flags::dontwait)) {
    (void)monitor.recv(endpoint);
    if (event.size() < 6) continue;
    uint16_t kind;
    std::memcpy(&kind, event.data(), sizeof kind);
    if (kind == ZMQ_EVENT_ACCEPTED) ++live;
    if (kind == ZMQ_EVENT_DISCONNECTED) {
      ++closed;
      if (live > 0) --live;
    }
  }
  return closed;
}

void AccessControl::answer(zmq::socket_t& zap) {
  std::vector<zmq::message_t> request;
  for (;;) {
    request.clear();
    zmq::message_t& first = request.emplace_back();
    if (!zap.recv(first, zmq::recv_flags::dontwait)) return;
    while (request.back().more()) (void)zap.recv(request.emplace_back());

    // ZAP 1.0: version, request id, domain, address, routing id, mechanism,
    // credentials...; the reply: version, request id, status, text, user id,
    // metadata.
    std::string status = "400", text, user;
    std::string domain = request.size() > 2 ? request[2].to_string() : "";
    std::string mechanism = request.size() > 5 ? request[5].to_string() : "";
    size_t live = domain == "events" ? liveEvents_.load() : liveCommands_.load();
    if (request.size() < 6 || request[0].to_string_view() != "1.0") {
      text = "malformed ZAP request";
    } else if (live > config_.maxConnections) {
      text = "too many connections";
      if (deniedConnections_.fetch_add(1) % 1000 == 0) {
        logLine("access", "%s: %zu connections, over the cap of %zu: turning new ones away",
                domain.c_str(), live, config_.maxConnections);
      }
    } else if (mechanism == "CURVE" && request.size() == 7 && request[6].size() == kKeyBytes) {
      std::string key = request[6].to_string();
      if (admins_.count(key)) {
        status = "200", user = kAdminRole;
      } else if (clients_.count(key)) {
        status = "200", user = kClientRole;
      } else {
        text = "unknown key";
        uint64_t denied = deniedKey_.fetch_add(1);
        if (denied < kDenialsLogged || denied % 1000 == 0) {
          logLine("access", "%s: denied key %s from %s (not in the key files)", domain.c_str(),
                  fingerprint(key).c_str(), request[3].to_string().c_str());
        }
      }
    } else if (mechanism == "NULL" && !curve()) {
      status = "200";
    } else {
      text = "mechanism " + mechanism + " is not accepted";
    }
    if (status == "200") allowed_.fetch_add(1);
    zap.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
    zap.send(request[1], zmq::send_flags::sndmore);
    zap.send(zmq::buffer(status), zmq::send_flags::sndmore);
    zap.send(zmq::buffer(text), zmq::send_flags::sndmore);
    zap.send(zmq::buffer(user), zmq::send_flags::sndmore);
    zap.send(zmq::message_t(), zmq::send_flags::none);
  }
}

}  // namespace shop::bus
