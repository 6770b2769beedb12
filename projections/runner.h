// The projection runner: one thread that owns the read models and feeds
// them from the event stream, and the only way other threads reach them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <concurrentqueue/concurrentqueue.h>
#include <zmq.hpp>

#include "bus/client.h"
#include "projections/read_models.h"

namespace shop::bus {
class CatchUpSubscriber;
}

namespace shop::projections {

// What the runner knows about the stream it follows.
struct Health {
  uint64_t serverId = 0;   // the server followed now; 0 before the first answer
  bool connected = false;  // the server answered its last head check
  Seq headSeq = 0;         // the server's newest seq, as of the last check or event
  Seq appliedSeq = 0;      // the newest seq in the models
  Seq builtFromSeq = 1;    // the models hold every event from here to appliedSeq
  uint64_t gapsRepaired = 0;
  uint64_t framesSkipped = 0;  // events that could not be decoded
  uint64_t resets = 0;         // restarts of the server followed, and truncations
  uint64_t disconnects = 0;
  // Set when the models fell behind the server's retention and were rebuilt
  // from its oldest event: what was lost.
  std::optional<std::pair<Seq, Seq>> truncated;  // {first seq lost, oldest kept}
  std::string lastError;
  Seq lag() const { return headSeq > appliedSeq ? headSeq - appliedSeq : 0; }
};

struct RunnerConfig {
  std::string commandsEndpoint = "tcp://127.0.0.1:5555";
  std::string eventsEndpoint = "tcp://127.0.0.1:5556";
  bus::ClientCurve curve;
  ReadModelsConfig models;
  int subscriberRcvHwm = 100'000;  // events the SUB socket queues; past it PUB drops and we repair
  // How often the server is asked for its head (and so noticed when down or back).
  std::chrono::milliseconds headCheckEvery{250};
  // The summary is rebuilt at most this often, and at least once a second
  // (the windows move even when no event comes).
  std::chrono::milliseconds summaryEvery{100};
  // Builds the summary that summary() hands out, on the runner thread. Empty: no summary.
  std::function<std::string(ReadModels&, const Health&)> summarize;
};

// Owns a thread. Construct, start(), then query() from any thread; stop()
// (or the destructor) joins it.
//
// Ownership: the models and Health live on the runner thread and nothing
// else ever touches them. Other threads either send it a query (a function
// run there between batches of events, its result handed back through a
// future), or read the summary: an immutable string the runner publishes at
// most every summaryEvery, shared by pointer.
class ProjectionRunner {
 public:
  explicit ProjectionRunner(RunnerConfig config);
  ~ProjectionRunner();
  ProjectionRunner(const ProjectionRunner&) = delete;
  ProjectionRunner& operator=(const ProjectionRunner&) = delete;

  void start();
  void stop();  // idempotent

  // Runs fn(models, health) on the runner thread at its next turn (within
  // about 10 ms, unless it is applying a large catch-up). Thread-safe.
  template <typename Fn>
  auto query(Fn fn)
      -> std::future<decltype(fn(std::declval<ReadModels&>(), std::declval<const Health&>()))>;

  struct Summary {
    uint64_t version = 0;
    std::shared_ptr<const std::string> text;
  };
  // The newest summary once its version is past `after`, or the current one
  // after `timeout`. Thread-safe.
  Summary waitSummary(uint64_t after, std::chrono::milliseconds timeout);

 private:
  void run();
  // Applies what the stream has (waiting up to 10 ms); false when the server
  // cannot be reached.
  bool follow();
  void startFollowing(Seq from);
  // Applies the events delivered and not yet applied.
  void applyPending();
  void checkHead();
  void runQueries();
  void publishSummary(bool force);

  RunnerConfig config_;
  zmq::context_t context_{1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
  moodycamel::ConcurrentQueue<std::function<void(ReadModels&, const Health&)>> queries_;

  // Runner thread only.
  std::unique_ptr<ReadModels> models_;
  // Delivered, not yet applied: the models take events a batch at a time,
  // which lets them load a customer's state before its event needs it.
  std::vector<Event> pending_;
  Health health_;
  std::unique_ptr<bus::CatchUpSubscriber> subscriber_;  // while connected
  uint64_t subscriberGaps_ = 0;  // its stats as of the last turn, to add the difference
  std::unique_ptr<bus::Client> head_;
  bool headPending_ = false;
  std::chrono::steady_clock::time_point nextHeadCheck_{};
  std::chrono::steady_clock::time_point lastSummary_{};
  Seq summarizedSeq_ = 0;
  bool summarizedConnected_ = false;

  std::mutex summaryMutex_;
  std::condition_variable summaryChanged_;
  Summary summary_;  // guarded by summaryMutex_
};

template <typename Fn>
auto ProjectionRunner::query(Fn fn)
    -> std::future<decltype(fn(std::declval<ReadModels&>(), std::declval<const Health&>()))> {
  using R = decltype(fn(std::declval<ReadModels&>(), std::declval<const Health&>()));
  auto done = std::make_shared<std::promise<R>>();
  auto future = done->get_future();
  queries_.enqueue([fn = std::move(fn), done](ReadModels& models, const Health& health) mutable {
    try {
      if constexpr (std::is_void_v<R>) {
        fn(models, health);
        done->set_value();
      } else {
        done->set_value(fn(models, health));
      }
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  });
  return future;
}

}  // namespace shop::projections
