#include "relay/destination.h"

#include <fcntl.h>
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>

#include <zmq.hpp>

#include "core/log.h"

namespace shop::relay {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kDelaysKept = 4096;
// A checkpoint is written each time it moves (a process crash loses
// nothing), and synced at most this often (a power loss may send again what
// was delivered since).
constexpr auto kSyncEvery = std::chrono::milliseconds(200);
// The checkpoint file is one JSON object padded with spaces to this width.
// It is replaced whole (a temporary file renamed over it) at the first write
// of a run, then overwritten in place: one pwrite per move. (A rename per
// move cost more than the delivery itself.) A process crash cannot tear a
// write this small, and it sits inside one disk sector.
constexpr size_t kCheckpointBytes = 64;
// How often the watchdog cuts an attempt past its deadline again, should
// the first cut have come before the attempt had a socket to shut.
constexpr auto kCutAgain = std::chrono::milliseconds(50);

int64_t wallNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t coarseSecond() {
  return std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
}

// Syncs a directory: what was created or renamed in it outlives a power loss.
bool syncDirectory(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  bool synced = fd >= 0 && ::fsync(fd) == 0;
  int e = errno;
  if (fd >= 0) ::close(fd);
  errno = e;
  return synced;
}

// Writes `text` to `path` atomically: a temporary file, optionally synced,
// renamed over the old one.
void writeAtomically(const std::string& path, const std::string& text, bool sync) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
  size_t at = 0;
  while (at < text.size()) {
    ssize_t n = ::write(fd, text.data() + at, text.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(e));
    }
    at += static_cast<size_t>(n);
  }
  if (sync && ::fdatasync(fd) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("cannot sync " + tmp + ": " + std::strerror(e));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot rename " + tmp + ": " + std::strerror(errno));
  }
  // The rename itself is durable only once the directory is synced.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (sync && !syncDirectory(dir)) {
    throw std::runtime_error("cannot sync " + dir + ": " + std::strerror(errno));
  }
}

json messageJson(const Message& m) {
  return {{"seq", m.seq},
          {"serverId", serverIdHex(m.serverId)},
          {"key", m.key()},
          {"kind", m.kind},
          {"event", json::parse(m.body, nullptr, false)}};
}

// One parked message as the parked file and the control socket show it.
json parkedJson(const Parked& p) {
  json j = messageJson(p.message);
  j["attempts"] = p.attempts;
  j["lastError"] = p.lastError;
  j["parkedAtNs"] = p.parkedAtNs;
  return j;
}

std::string parkedLine(const Parked& p) {
  return parkedJson(p).dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

uint64_t parseServerId(const std::string& hex) {
  if (hex.size() != 16 || hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
    throw std::runtime_error("server id '" + hex + "' is not 16 hex digits");
  }
  return std::stoull(hex, nullptr, 16);
}

struct HttpTarget {
  std::string origin;  // http://host:port
  std::string path;    // /path, at least "/"
};

// The config checked the form: http://host[:port][/path].
HttpTarget splitUrl(const std::string& url) {
  size_t slash = url.find('/', 7);
  if (slash == std::string::npos) return {url, "/"};
  return {url.substr(0, slash), url.substr(slash)};
}

}  // namespace

std::string Message::key() const {
  return serverIdHex(serverId) + "-" + std::to_string(seq);
}

struct DestinationRunner::Connection {
  std::mutex mutex;  // `http` between its worker (which replaces it) and the watchdog
  std::unique_ptr<httplib::Client> http;
  bool reused = false;  // the HTTP connection answered before
  std::optional<zmq::socket_t> socket;
  // Under the runner's mutex_: when the HTTP attempt in progress must end
  // (max(): none in progress), and whether the watchdog cut it.
  Clock::time_point deadline = Clock::time_point::max();
  bool cut = false;
  // Counts HTTP attempts, so that a cut meant for one never reaches the next.
  std::atomic<uint64_t> attempt{0};
};

DestinationRunner::DestinationRunner(Destination config, std::string stateDir)
    : config_(std::move(config)), stateDir_(std::move(stateDir)) {
  std::filesystem::create_directories(stateDir_);
  if (std::ifstream in(path(".checkpoint")); in) {
    std::stringstream text;
    text << in.rdbuf();
    try {
      json j = json::parse(text.str());
      initial_ =
          Checkpoint{parseServerId(j.at("serverId").get<std::string>()), j.at("seq").get<Seq>()};
    } catch (const std::exception& e) {
      throw std::runtime_error(path(".checkpoint") + " does not read as a checkpoint (" + e.what() +
                               "); move it away to start this destination over");
    }
    checkpoint_ = seen_ = *initial_;
  }
  if (std::ifstream in(path(".parked")); in) {
    std::string line;
    size_t lineNo = 0;
    while (std::getline(in, line)) {
      ++lineNo;
      if (line.empty()) continue;
      try {
        json j = json::parse(line);
        Parked p;
        p.message.seq = j.at("seq").get<Seq>();
        p.message.serverId = parseServerId(j.at("serverId").get<std::string>());
        p.message.kind = j.at("kind").get<std::string>();
        p.message.body = j.at("event").dump();
        p.attempts = j.at("attempts").get<uint32_t>();
        p.lastError = j.at("lastError").get<std::string>();
        p.parkedAtNs = j.at("parkedAtNs").get<int64_t>();
        parked_[ParkedId{p.message.serverId, p.message.seq}] = std::move(p);
      } catch (const std::exception& e) {
        throw std::runtime_error(path(".parked") + " line " + std::to_string(lineNo) +
                                 " does not read (" + e.what() + ")");
      }
    }
  }
  parkedCount_ = parked_.size();
  if (config_.kind == Destination::Kind::zmq) zmqContext_ = std::make_unique<zmq::context_t>(1);
  for (unsigned w = 0; w < config_.maxInFlight; ++w) {
    connections_.push_back(std::make_unique<Connection>());
  }
  for (unsigned w = 0; w < config_.maxInFlight; ++w) {
    workers_.emplace_back([this, w] { work(w); });
  }
  if (config_.kind == Destination::Kind::http) watchdog_ = std::thread([this] { watch(); });
}

DestinationRunner::~DestinationRunner() {
  stop();
  if (checkpointFd_ >= 0) ::close(checkpointFd_);
}

std::string DestinationRunner::path(const char* suffix) const {
  return stateDir_ + "/" + config_.name + suffix;
}

bool DestinationRunner::selects(const Event& event) const {
  std::string_view kind = eventName(event.body);
  if (std::find(config_.events.begin(), config_.events.end(), kind) == config_.events.end()) {
    return false;
  }
  if (!config_.customerPrefix.empty() && !event.customer().starts_with(config_.customerPrefix)) {
    return false;
  }
  if (!config_.productPrefix.empty() && !event.product().starts_with(config_.productPrefix)) {
    return false;
  }
  return true;
}

void DestinationRunner::offer(Message message) {
  std::lock_guard lock(mutex_);
  seen_ = Checkpoint{message.serverId, message.seq};
  queue_.push_back(std::move(message));
  changed_.notify_all();
}

void DestinationRunner::seen(uint64_t serverId, Seq seq) {
  std::unique_lock lock(mutex_);
  seen_ = Checkpoint{serverId, seq};
  if (queue_.empty() && inFlight_.empty() &&
      (checkpoint_.seq != seq || checkpoint_.serverId != serverId)) {
    // Nothing of ours before it: the checkpoint moves with what was seen,
    // at once (the status shows no lag). The file follows lazily: at most
    // once a sync period while idle, at the next delivery, and at stop. A
    // file left behind costs only a second look at events not selected.
    checkpoint_ = seen_;
    if (Clock::now() - lastSync_ >= kSyncEvery) writeCheckpoint(checkpoint_, true);
    // Only a status waiter cares; the idle workers would wake for nothing,
    // once per event not selected.
    if (statusWaiters_ > 0) changed_.notify_all();
  }
}

bool DestinationRunner::waitForRoom(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] {
    return stopping_ || queue_.size() < kQueueCapacity;
  }) && !stopping_;
}

bool DestinationRunner::waitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] {
    return stopping_ ||
           (queue_.empty() && inFlight_.empty() && redrives_.empty() && redriving_ == 0);
  });
}

void DestinationRunner::work(unsigned worker) {
  for (;;) {
    Message message;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || !queue_.empty() || !redrives_.empty(); });
      if (stopping_) return;
      if (!redrives_.empty()) {
        message = std::move(redrives_.front());
        redrives_.pop_front();
        ++redriving_;
      } else {
        message = std::move(queue_.front());
        queue_.pop_front();
        inFlight_.insert(message.seq);
      }
      changed_.notify_all();  // room in the queue
    }
    if (!deliver(worker, message)) return;  // stopping: not done, sent again after a restart
    done(message);
  }
}

bool DestinationRunner::deliver(unsigned worker, const Message& message) {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> spread(-1.0, 1.0);
  for (uint32_t n = 1;; ++n) {
    if (!takeSlot()) return false;
    Attempt a = attempt(worker, message);
    std::unique_lock lock(mutex_);
    ++attempts_;
    changed_.notify_all();
    // Cut short by a stop: not done, so sent again after a restart.
    if (a.outcome != Attempt::Outcome::delivered && stopping_) return false;
    if (a.outcome == Attempt::Outcome::delivered) {
      ++delivered_;
      if (message.redrive) ++redriven_;
      int64_t now = coarseSecond();
      if (deliveredBySecond_.empty() || deliveredBySecond_.back().first != now) {
        deliveredBySecond_.emplace_back(now, delivered_);
        while (deliveredBySecond_.size() > 11) deliveredBySecond_.pop_front();
      }
      return true;
    }
    lastError_ = a.detail;
    if (a.outcome == Attempt::Outcome::reject || n >= config_.retry.maxAttempts) {
      lock.unlock();
      // Until the parked file takes it, the message stays in flight: the
      // checkpoint never passes a message neither delivered nor parked.
      while (!park(message, n, a.detail)) {
        lock.lock();
        auto again = std::chrono::milliseconds(config_.retry.maxMs);
        if (changed_.wait_for(lock, again, [&] { return stopping_; })) return false;
        lock.unlock();
      }
      return true;
    }
    double delay = config_.retry.baseDelayMs(n) * (1.0 + config_.retry.jitter * spread(rng));
    logLine("relay", "%s: attempt %u of %s failed (%s); the next in %.0f ms", config_.name.c_str(),
            n, message.key().c_str(), a.detail.c_str(), delay);
    ++retries_;
    delays_.emplace_back(n, delay);
    if (delays_.size() > kDelaysKept) delays_.pop_front();
    auto until = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(delay * 1000));
    if (changed_.wait_until(lock, until, [&] { return stopping_; })) return false;
  }
}

bool DestinationRunner::takeSlot() {
  if (config_.ratePerSecond <= 0) {
    std::lock_guard lock(mutex_);
    return !stopping_;
  }
  auto interval = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / config_.ratePerSecond));
  Clock::time_point slot;
  {
    std::lock_guard lock(rateMutex_);
    slot = std::max(nextSlot_, Clock::now());
    nextSlot_ = slot + interval;
  }
  std::unique_lock lock(mutex_);
  return !changed_.wait_until(lock, slot, [&] { return stopping_; });
}

Attempt DestinationRunner::attempt(unsigned worker, const Message& message) {
  try {
    return config_.kind == Destination::Kind::http ? attemptHttp(worker, message)
                                                   : attemptZmq(worker, message);
  } catch (const std::exception& e) {
    return {Attempt::Outcome::retry, e.what()};
  }
}

Attempt DestinationRunner::attemptHttp(unsigned worker, const Message& message) {
  Connection& c = *connections_[worker];
  HttpTarget target = splitUrl(config_.url);
  if (!c.http) {
    std::lock_guard connectionLock(c.mutex);
    c.http = std::make_unique<httplib::Client>(target.origin);
    auto timeout = std::chrono::milliseconds(config_.timeoutMs);
    c.http->set_connection_timeout(timeout);
    c.http->set_read_timeout(timeout);
    c.http->set_write_timeout(timeout);
    c.http->set_keep_alive(true);
    // Headers and body go out as separate writes: without this, Nagle's
    // algorithm holds the body for the receiver's delayed ACK (40 ms).
    c.http->set_tcp_nodelay(true);
    c.reused = false;
  }
  httplib::Headers headers = {{"Idempotency-Key", message.key()},
                              {"X-Shop-Event", message.kind},
                              {"X-Shop-Seq", std::to_string(message.seq)},
                              {"X-Shop-Server", serverIdHex(message.serverId)}};
  auto sent = Clock::now();
  {
    // Under the connection's mutex, as the watchdog compares it there.
    std::lock_guard connectionLock(c.mutex);
    ++c.attempt;
  }
  {
    // The whole attempt ends at its deadline: the watchdog sees to it.
    std::lock_guard lock(mutex_);
    if (stopping_) return {Attempt::Outcome::retry, "stopping"};
    c.deadline = sent + std::chrono::milliseconds(config_.timeoutMs);
    c.cut = false;
    if (c.deadline < watchSleepsUntil_) watchChanged_.notify_all();
  }
  // However the attempt ends, even by an exception, the watchdog is told.
  struct EndOfAttempt {
    DestinationRunner& runner;
    Connection& c;
    bool ended = false;
    bool cut = false;
    void end() {
      if (ended) return;
      ended = true;
      std::lock_guard lock(runner.mutex_);
      c.deadline = Clock::time_point::max();
      cut = c.cut;
    }
    ~EndOfAttempt() { end(); }
  } endOfAttempt{*this, c};
  auto res = c.http->Post(target.path, headers, message.body, "application/json");
  bool quick = Clock::now() - sent < std::chrono::milliseconds(config_.timeoutMs) / 2;
  auto wasCut = [&] {
    std::lock_guard lock(mutex_);
    return c.cut;
  };
  if (!res && c.reused && quick && !wasCut() &&
      (res.error() == httplib::Error::Read || res.error() == httplib::Error::Write)) {
    // The receiver closed the idle kept-alive connection: the request went
    // nowhere, or at worst arrived (the key makes that harmless). Once more
    // on a fresh connection, within the same attempt.
    c.http->stop();
    res = c.http->Post(target.path, headers, message.body, "application/json");
  }
  endOfAttempt.end();
  bool cut = endOfAttempt.cut;
  if (!res || cut) {
    // A connection that failed, or was cut, is never reused.
    std::lock_guard connectionLock(c.mutex);
    c.http.reset();
    c.reused = false;
  }
  if (!res) {
    if (cut) {
      return {Attempt::Outcome::retry,
              "http: no answer within " + std::to_string(config_.timeoutMs) + " ms"};
    }
    return {Attempt::Outcome::retry, "http: " + httplib::to_string(res.error())};
  }
  // An answer that came in before the cut stands.
  c.reused = !cut;
  int status = res->status;
  if (status >= 200 && status < 300) return {Attempt::Outcome::delivered, {}};
  std::string detail = "http status " + std::to_string(status);
  // The receiver's trouble, or ours to wait out: try again. Any other 4xx
  // says this message will never be taken: parked at once.
  if (status >= 500 || status == 408 || status == 429) return {Attempt::Outcome::retry, detail};
  return {Attempt::Outcome::reject, detail};
}

Attempt DestinationRunner::attemptZmq(unsigned worker, const Message& message) {
  Connection& z = *connections_[worker];
  if (!z.socket) {
    z.socket.emplace(*zmqContext_, zmq::socket_type::dealer);
    z.socket->set(zmq::sockopt::linger, 0);
    z.socket->connect(config_.url);
  }
  std::string key = message.key();
  z.socket->send(zmq::buffer(key), zmq::send_flags::sndmore);
  z.socket->send(zmq::buffer(message.kind), zmq::send_flags::sndmore);
  z.socket->send(zmq::buffer(message.body), zmq::send_flags::none);
  auto deadline = Clock::now() + std::chrono::milliseconds(config_.timeoutMs);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    zmq::pollitem_t item{z.socket->handle(), 0, ZMQ_POLLIN, 0};
    if (left.count() <= 0 || zmq::poll(&item, 1, left) == 0) {
      z.socket.reset();  // the Lazy Pirate: a fresh socket drops the late reply
      return {Attempt::Outcome::retry,
              "zmq: no answer within " + std::to_string(config_.timeoutMs) + " ms"};
    }
    std::vector<zmq::message_t> frames;
    zmq::message_t frame;
    do {
      if (!z.socket->recv(frame, zmq::recv_flags::none)) break;
      frames.push_back(std::move(frame));
    } while (z.socket->get(zmq::sockopt::rcvmore));
    if (frames.size() < 2 || frames[0].to_string() != key) continue;  // a late answer
    std::string answer = frames[1].to_string();
    if (answer == "ok") return {Attempt::Outcome::delivered, {}};
    if (answer.starts_with("reject")) return {Attempt::Outcome::reject, "zmq: " + answer};
    return {Attempt::Outcome::retry, "zmq: " + answer};
  }
}

void DestinationRunner::done(const Message& message) {
  std::lock_guard lock(mutex_);
  if (message.redrive) {
    --redriving_;
    auto it = parked_.find(ParkedId{message.serverId, message.seq});
    if (it != parked_.end() && it->second.redriving) {  // delivered, not parked again
      parked_.erase(it);
      // Should the file keep it, it is listed again after a restart, and a
      // second re-drive sends it once more under the same key.
      writeParked();
    }
  } else {
    inFlight_.erase(message.seq);
    Seq upTo = seen_.seq;
    if (!inFlight_.empty()) upTo = std::min(upTo, *inFlight_.begin() - 1);
    if (!queue_.empty()) upTo = std::min(upTo, queue_.front().seq - 1);
    if (upTo > checkpoint_.seq || seen_.serverId != checkpoint_.serverId) {
      checkpoint_ = Checkpoint{seen_.serverId, upTo};
      bool sync = Clock::now() - lastSync_ >= kSyncEvery;
      writeCheckpoint(checkpoint_, sync);
    }
  }
  changed_.notify_all();
}

void DestinationRunner::writeCheckpoint(const Checkpoint& checkpoint, bool sync) {
  std::string text =
      json{{"serverId", serverIdHex(checkpoint.serverId)}, {"seq", checkpoint.seq}}.dump();
  text.resize(kCheckpointBytes - 1, ' ');
  text += '\n';
  std::string file = path(".checkpoint");
  try {
    if (checkpointFd_ < 0) {
      // The first write of a run replaces the file whole (a temporary file,
      // synced, renamed, the directory synced), whatever an older relay or
      // a crash left there: a file this code created is never empty, and
      // always this record's width. Later writes overwrite it in place.
      writeAtomically(file, text, true);
      lastSync_ = Clock::now();
      checkpointFd_ = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
      if (checkpointFd_ < 0) {
        throw std::runtime_error("cannot open " + file + ": " + std::strerror(errno));
      }
      return;
    }
    auto fail = [&](const char* what) {
      int e = errno;
      ::close(checkpointFd_);
      checkpointFd_ = -1;  // the next write starts over with a whole file
      throw std::runtime_error(std::string("cannot ") + what + " " + file + ": " +
                               std::strerror(e));
    };
    ssize_t n;
    do {
      n = ::pwrite(checkpointFd_, text.data(), text.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(text.size())) {
      if (n >= 0) errno = EIO;
      fail("write");
    }
    if (sync) {
      if (::fdatasync(checkpointFd_) != 0) fail("sync");
      lastSync_ = Clock::now();
    }
  } catch (const std::exception& e) {
    // Not fatal: the checkpoint stays behind, so more is sent again after a
    // restart. Said once per failure.
    logLine("relay", "%s: %s", config_.name.c_str(), e.what());
  }
}

bool DestinationRunner::park(const Message& message, uint32_t attempts, const std::string& why) {
  std::lock_guard lock(mutex_);
  ParkedId id{message.serverId, message.seq};
  Parked p{message, attempts, why, wallNs()};
  p.message.redrive = false;
  if (message.redrive) {  // parked again: the entry is updated in place
    Parked before = std::exchange(parked_[id], std::move(p));
    if (!writeParked()) {
      parked_[id] = std::move(before);
      ++parkFailures_;
      changed_.notify_all();
      return false;
    }
    logLine("relay", "%s: parked %s again after %u attempts: %s", config_.name.c_str(),
            message.key().c_str(), attempts, why.c_str());
    return true;
  }
  // Appended and synced before the checkpoint can pass it: a parked
  // message is never lost.
  std::string text = parkedLine(p);
  std::string file = path(".parked");
  bool created = !std::filesystem::exists(file);
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  off_t end = fd >= 0 ? ::lseek(fd, 0, SEEK_END) : -1;
  bool written = end >= 0;
  for (size_t at = 0; written && at < text.size();) {
    ssize_t n = ::write(fd, text.data() + at, text.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) written = false;
    if (n > 0) at += static_cast<size_t>(n);
  }
  written = written && ::fdatasync(fd) == 0;
  int e = errno;
  // Half a line (a full disk) would make the file unreadable at the next
  // start: it is cut back to where it ended.
  if (!written && end >= 0) (void)::ftruncate(fd, end);
  if (fd >= 0) ::close(fd);
  // A file just made is there after a power loss only once its directory is synced.
  if (written && created && !syncDirectory(stateDir_)) {
    written = false;
    e = errno;
  }
  if (!written) {
    ++parkFailures_;
    changed_.notify_all();
    logLine("relay",
            "%s: cannot park %s in %s (%s); it stays in flight, and parking is tried "
            "again in %lld ms",
            config_.name.c_str(), message.key().c_str(), path(".parked").c_str(), std::strerror(e),
            static_cast<long long>(config_.retry.maxMs));
    return false;
  }
  parked_[id] = std::move(p);
  ++parkedCount_;
  logLine("relay", "%s: parked %s (%s) after %u attempts: %s", config_.name.c_str(),
          message.key().c_str(), message.kind.c_str(), attempts, why.c_str());
  return true;
}

bool DestinationRunner::writeParked() {
  std::string text;
  for (const auto& [id, p] : parked_) text += parkedLine(p);
  try {
    writeAtomically(path(".parked"), text, true);
    return true;
  } catch (const std::exception& e) {
    logLine("relay", "%s: %s", config_.name.c_str(), e.what());
    return false;
  }
}

namespace {

// A seq as written in a parked message's id: digits only (no sign, no
// spaces), or nothing.
std::optional<Seq> parseSeq(const std::string& text) {
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  try {
    return std::stoull(text);
  } catch (const std::out_of_range&) {
    return std::nullopt;
  }
}

}  // namespace

std::string DestinationRunner::redrive(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto notAnId = [&] {
    return std::runtime_error("'" + id + "' is neither a seq nor a key (SERVERID-SEQ)");
  };
  auto found = parked_.end();
  size_t dash = id.find('-');
  if (dash != std::string::npos) {  // a key: server id '-' seq
    auto seq = parseSeq(id.substr(dash + 1));
    if (!seq) throw notAnId();
    uint64_t serverId = 0;
    try {
      serverId = parseServerId(id.substr(0, dash));
    } catch (const std::exception&) {
      throw notAnId();
    }
    found = parked_.find(ParkedId{serverId, *seq});
    if (found == parked_.end()) throw std::runtime_error("no parked message with key " + id);
  } else {
    auto parsed = parseSeq(id);
    if (!parsed) throw notAnId();
    Seq seq = *parsed;
    size_t matches = 0;
    for (auto it = parked_.begin(); it != parked_.end(); ++it) {
      if (it->first.second == seq) {
        found = it;
        ++matches;
      }
    }
    if (matches == 0) throw std::runtime_error("no parked message with seq " + id);
    if (matches > 1) {
      throw std::runtime_error("seq " + id + " is parked from " + std::to_string(matches) +
                               " streams of shopd; name it by its key");
    }
  }
  Parked& p = found->second;
  if (p.redriving) throw std::runtime_error(p.message.key() + " is being sent again already");
  // It stays parked (on disk too) until it is delivered: a crash before
  // then loses nothing.
  p.redriving = true;
  Message m = p.message;
  m.redrive = true;
  logLine("relay", "%s: sending parked %s again", config_.name.c_str(), m.key().c_str());
  redrives_.push_back(m);
  changed_.notify_all();
  return m.key();
}

void DestinationRunner::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
    changed_.notify_all();
    watchChanged_.notify_all();
  }
  for (auto& t : workers_) t.join();
  workers_.clear();
  if (watchdog_.joinable()) watchdog_.join();
  std::lock_guard lock(mutex_);
  if (queue_.empty() && inFlight_.empty()) checkpoint_ = seen_;
  if (checkpoint_.serverId != 0) writeCheckpoint(checkpoint_, true);
}

bool DestinationRunner::waitForAttempts(uint64_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return attempts_ >= n; });
}

bool DestinationRunner::waitForStatus(const std::function<bool(const json&)>& done,
                                      std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  ++statusWaiters_;
  bool met = changed_.wait_for(lock, timeout, [&] { return done(statusLocked()); });
  --statusWaiters_;
  return met;
}

void DestinationRunner::watch() {
  std::unique_lock lock(mutex_);
  for (;;) {
    auto now = Clock::now();
    auto next = Clock::time_point::max();
    bool inProgress = false;
    std::vector<std::pair<Connection*, uint64_t>> cuts;
    for (auto& c : connections_) {
      if (c->deadline == Clock::time_point::max()) continue;
      inProgress = true;
      if (c->deadline <= now || (stopping_ && !c->cut)) {
        c->cut = true;
        c->deadline = now + kCutAgain;
        cuts.emplace_back(c.get(), c->attempt.load());
      }
      next = std::min(next, c->deadline);
    }
    if (stopping_ && !inProgress) return;
    if (cuts.empty()) {
      watchSleepsUntil_ = next;
      watchChanged_.wait_until(lock, next);
      watchSleepsUntil_ = Clock::time_point::min();
      continue;
    }
    // Not under mutex_: httplib's stop() waits while the attempt connects.
    lock.unlock();
    for (auto [c, attempt] : cuts) {
      std::lock_guard connectionLock(c->mutex);
      // The attempt's socket is shut, so its call returns.
      if (c->http && c->attempt.load() == attempt) c->http->stop();
    }
    lock.lock();
  }
}

std::vector<std::pair<uint32_t, double>> DestinationRunner::retryDelays() const {
  std::lock_guard lock(mutex_);
  return {delays_.begin(), delays_.end()};
}

json DestinationRunner::status() const {
  std::lock_guard lock(mutex_);
  return statusLocked();
}

json DestinationRunner::statusLocked() const {
  double rate = 0;
  if (!deliveredBySecond_.empty()) {
    auto [since, before] = deliveredBySecond_.front();
    int64_t seconds = coarseSecond() - since;
    if (seconds > 0) rate = static_cast<double>(delivered_ - before) / static_cast<double>(seconds);
  }
  return {{"name", config_.name},
          {"kind", config_.kind == Destination::Kind::http ? "http" : "zmq"},
          {"url", config_.url},
          {"serverId", serverIdHex(checkpoint_.serverId)},
          {"checkpoint", checkpoint_.seq},
          {"seen", seen_.seq},
          {"lag", seen_.seq - std::min(seen_.seq, checkpoint_.seq)},
          {"queued", queue_.size() + redrives_.size()},
          {"inFlight", inFlight_.size()},
          {"delivered", delivered_},
          {"deliveredPerSecond", rate},
          {"attempts", attempts_},
          {"retries", retries_},
          {"parked", parked_.size()},
          {"parkedTotal", parkedCount_},
          {"parkFailures", parkFailures_},
          {"redriven", redriven_},
          {"lastError", lastError_}};
}

json DestinationRunner::parked() const {
  std::lock_guard lock(mutex_);
  json out = json::array();
  for (const auto& [id, p] : parked_) out.push_back(parkedJson(p));
  return out;
}

}  // namespace shop::relay
