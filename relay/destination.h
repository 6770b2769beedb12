// One destination: its queue of messages in seq order, the workers that
// deliver them (retries with backoff and jitter, a rate limit, a timeout),
// its durable checkpoint and its parked messages.
//
// Delivery is at least once, with an idempotency key (the server id and the
// event's seq) on every attempt, so a receiver that deduplicates on the key
// applies each event once. The checkpoint is the seq up to which every
// event was delivered, parked, or not selected for this destination; it is
// written (to a temporary file, then renamed) each time it moves. After a
// crash the relay starts after it, so it sends again at most the messages
// that were in flight or queued.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/domain.h"
#include "relay/config.h"

namespace zmq {
class context_t;
}

namespace shop::relay {

// One event for one destination.
struct Message {
  Seq seq = 0;
  uint64_t serverId = 0;
  std::string kind;      // the event kind, e.g. "holdConfirmed"
  std::string body;      // the event as JSON, as `shopctl tail` prints it
  bool redrive = false;  // a parked message sent again by hand
  // The idempotency key: 16 hex digits of the server id, '-', the seq.
  std::string key() const;
};

// What one attempt came to.
struct Attempt {
  enum class Outcome : uint8_t { delivered, retry, reject } outcome = Outcome::retry;
  std::string detail;  // why it was not delivered
};

// Where the checkpoint stands: every seq up to `seq` of server `serverId`'s
// stream is done with.
struct Checkpoint {
  uint64_t serverId = 0;
  Seq seq = 0;
};

// A parked message is named by its stream and seq: after shopd restarts
// without a journal, two streams can have parked the same seq.
using ParkedId = std::pair<uint64_t, Seq>;  // (server id, seq)

// A message that failed maxAttempts times (or was refused outright).
struct Parked {
  Message message;
  uint32_t attempts = 0;
  std::string lastError;
  int64_t parkedAtNs = 0;
  bool redriving = false;  // sent again by hand, not yet delivered
};

class DestinationRunner {
 public:
  static constexpr size_t kQueueCapacity = 10'000;

  // Reads the checkpoint and the parked messages from `stateDir`; the
  // workers start at once.
  DestinationRunner(Destination config, std::string stateDir);
  ~DestinationRunner();  // stop()
  DestinationRunner(const DestinationRunner&) = delete;
  DestinationRunner& operator=(const DestinationRunner&) = delete;

  const Destination& config() const { return config_; }
  // The checkpoint read at the start (nullopt: none yet).
  std::optional<Checkpoint> initialCheckpoint() const { return initial_; }
  bool selects(const Event& event) const;

  // The feeding thread: seqs in order. offer() queues a selected event;
  // seen() says every seq up to `seq` was offered (selected or not).
  void offer(Message message);
  void seen(uint64_t serverId, Seq seq);
  // Whether the queue has room; waits up to `timeout` for it.
  bool waitForRoom(std::chrono::milliseconds timeout);
  // Waits until nothing is queued or in flight (or stop); false when
  // `timeout` passed first.
  bool waitIdle(std::chrono::milliseconds timeout);

  // Sends a parked message again (out of order: it was parked). `id` is
  // its key (server id '-' seq), or its seq alone when only one parked
  // message has it. Returns the key; throws std::runtime_error when no
  // parked message (or more than one) answers to `id`.
  std::string redrive(const std::string& id);
  // Stops the workers: HTTP attempts in progress are cut (ZeroMQ ones end
  // by their timeout), retry waits end, and the checkpoint is synced.
  // Idempotent.
  void stop();

  nlohmann::json status() const;
  nlohmann::json parked() const;
  // Waits until `n` attempts were made in all (test seam); false after
  // `timeout`.
  bool waitForAttempts(uint64_t n, std::chrono::milliseconds timeout);
  // Waits until status() satisfies `done` (test seam), looking again at
  // each change of the queue, the messages in flight, the counters or the
  // checkpoint (not at each seq merely seen); false after `timeout`.
  bool waitForStatus(const std::function<bool(const nlohmann::json&)>& done,
                     std::chrono::milliseconds timeout);
  // Test seam and metrics: every delay scheduled before a retry, by the
  // attempt that failed (1-based), in ms, the most recent 4,096.
  std::vector<std::pair<uint32_t, double>> retryDelays() const;

 private:
  void work(unsigned worker);
  // Delivers one message until done (delivered or parked), or stop.
  bool deliver(unsigned worker, const Message& message);
  Attempt attempt(unsigned worker, const Message& message);
  Attempt attemptHttp(unsigned worker, const Message& message);
  Attempt attemptZmq(unsigned worker, const Message& message);
  // Waits for the rate limit's next slot; false on stop.
  bool takeSlot();
  void done(const Message& message);
  // Parks a message, durably; false (and said) when the parked file could
  // not take it, and then the message must stay in flight.
  bool park(const Message& message, uint32_t attempts, const std::string& why);
  void writeCheckpoint(const Checkpoint& checkpoint, bool sync);
  bool writeParked();
  nlohmann::json statusLocked() const;
  // Stops each HTTP attempt at its deadline, and every one at stop():
  // httplib's timeouts bound each read and write, not the whole attempt.
  void watch();
  std::string path(const char* suffix) const;

  Destination config_;
  std::string stateDir_;
  std::optional<Checkpoint> initial_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;       // queue, in flight, stop
  std::condition_variable watchChanged_;  // an earlier deadline, stop
  // Until when the watchdog sleeps (min(): it is awake and will look at
  // every deadline): a new deadline wakes it only when it is earlier.
  std::chrono::steady_clock::time_point watchSleepsUntil_ =
      std::chrono::steady_clock::time_point::min();
  std::deque<Message> queue_;  // in seq order
  std::deque<Message> redrives_;
  std::set<Seq> inFlight_;
  size_t redriving_ = 0;   // redrives taken by workers
  Checkpoint seen_;        // every seq up to here was offered
  Checkpoint checkpoint_;  // done up to here; the file may lag while idle (seen())
  std::chrono::steady_clock::time_point lastSync_{};
  int checkpointFd_ = -1;     // the checkpoint file, overwritten in place
  size_t statusWaiters_ = 0;  // in waitForStatus()
  std::map<ParkedId, Parked> parked_;
  bool stopping_ = false;

  // Rate limit: the earliest time of the next attempt.
  std::mutex rateMutex_;
  std::chrono::steady_clock::time_point nextSlot_{};

  // Counters (under mutex_).
  uint64_t delivered_ = 0, retries_ = 0, attempts_ = 0, parkedCount_ = 0, redriven_ = 0;
  uint64_t parkFailures_ = 0;
  std::string lastError_;
  std::deque<std::pair<uint32_t, double>> delays_;
  std::deque<std::pair<int64_t, uint64_t>> deliveredBySecond_;  // (second, delivered_)

  // Each worker's connection: kept between messages, dropped after a
  // failed attempt (a late answer must never be read as the next one's).
  struct Connection;
  std::unique_ptr<zmq::context_t> zmqContext_;            // zmq destinations
  std::vector<std::unique_ptr<Connection>> connections_;  // one per worker
  std::vector<std::thread> workers_;
  std::thread watchdog_;
};

}  // namespace shop::relay
