#include "projections/runner.h"

#include <cinttypes>
#include <span>

#include "bus/subscriber.h"
#include "core/log.h"

namespace shop::projections {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Short timeouts: a server that does not answer is shown as down quickly,
// and queries never wait long behind a call.
constexpr int kCallTimeoutMs = 1000;
constexpr int kPollMs = 10;
constexpr size_t kApplyBatch = 256;  // as many as the subscriber takes from the socket at once

}  // namespace

ProjectionRunner::ProjectionRunner(RunnerConfig config)
    : config_(std::move(config)), models_(std::make_unique<ReadModels>(config_.models)) {}

ProjectionRunner::~ProjectionRunner() {
  stop();
}

void ProjectionRunner::start() {
  thread_ = std::thread([this] { run(); });
}

void ProjectionRunner::stop() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

ProjectionRunner::Summary ProjectionRunner::waitSummary(uint64_t after,
                                                        std::chrono::milliseconds timeout) {
  std::unique_lock lock(summaryMutex_);
  summaryChanged_.wait_for(lock, timeout, [this, after] { return summary_.version > after; });
  return summary_;
}

void ProjectionRunner::run() {
  bus::ClientOptions options{.timeoutMs = kCallTimeoutMs, .retries = 0, .curve = config_.curve};
  head_ = std::make_unique<bus::Client>(context_, config_.commandsEndpoint, options);
  while (!stop_.load(std::memory_order_acquire)) {
    checkHead();
    if (health_.connected) {
      follow();
    } else {
      // Down: wait for the head check's answer, still serving queries.
      head_->poll(kPollMs);
    }
    runQueries();
    publishSummary(false);
  }
  subscriber_.reset();
  head_.reset();
  runQueries();  // nothing waits in vain for a query sent before the stop
}

void ProjectionRunner::checkHead() {
  auto now = SteadyClock::now();
  if (headPending_) {
    head_->poll(0);
    return;
  }
  if (now < nextHeadCheck_) return;
  nextHeadCheck_ = now + config_.headCheckEvery;
  headPending_ = true;
  head_->send(Command{CommandId::random(), ReadEvents{UINT64_MAX, 1}},
              [this](const bus::CallResult& result) {
                headPending_ = false;
                bool ok = result.ok() && result.reply->reply.status == ReplyStatus::events;
                if (!ok) {
                  if (health_.connected) {
                    ++health_.disconnects;
                    logLine("projections", "server %s is not answering: %s",
                            config_.commandsEndpoint.c_str(), result.error.c_str());
                  }
                  health_.connected = false;
                  health_.lastError = result.ok() ? "unexpected reply to ReadEvents" : result.error;
                  subscriber_.reset();
                  return;
                }
                const EventPage& page = result.reply->reply.page;
                health_.headSeq = std::max(health_.headSeq, page.headSeq);
                if (page.serverId != health_.serverId && health_.serverId != 0) {
                  // A restart: the subscriber notices it on its next read and
                  // resets; the head it reported is the new server's.
                  health_.headSeq = page.headSeq;
                }
                if (!health_.connected) {
                  logLine("projections",
                          "server %s answers (server id %016" PRIx64 ", head %" PRIu64 ")",
                          config_.commandsEndpoint.c_str(), page.serverId, page.headSeq);
                }
                health_.connected = true;
                health_.lastError.clear();
              });
  head_->poll(0);
}

void ProjectionRunner::startFollowing(Seq from) {
  bus::SubscriberOptions options;
  options.from = from;
  options.serverId = health_.serverId;
  options.rcvHwm = config_.subscriberRcvHwm;
  options.client =
      bus::ClientOptions{.timeoutMs = kCallTimeoutMs, .retries = 0, .curve = config_.curve};
  options.onReset = [this](const bus::StreamReset& reset) {
    logLine("projections", "the stream restarted (%s): models rebuilt from the new server",
            reset.reason.c_str());
    pending_.clear();  // the old stream's
    models_->reset();
    ++health_.resets;
    health_.appliedSeq = 0;
    health_.builtFromSeq = 1;
    health_.truncated.reset();
    health_.serverId = reset.newServerId;
  };
  options.onSkipped = [this](Seq seq, const std::string& why) {
    ++health_.framesSkipped;
    logLine("projections", "event %" PRIu64 " cannot be decoded and is skipped: %s", seq,
            why.c_str());
  };
  subscriber_ = std::make_unique<bus::CatchUpSubscriber>(context_, config_.eventsEndpoint,
                                                         config_.commandsEndpoint, options);
  subscriberGaps_ = 0;
}

bool ProjectionRunner::follow() {
  if (!subscriber_) startFollowing(health_.appliedSeq + 1);
  try {
    size_t n = subscriber_->poll(kPollMs, [this](Event&& event) {
      pending_.push_back(std::move(event));
      if (pending_.size() == kApplyBatch) applyPending();
    });
    applyPending();
    const auto& stats = subscriber_->stats();
    health_.gapsRepaired += stats.gapsDetected - subscriberGaps_;
    subscriberGaps_ = stats.gapsDetected;
    health_.serverId = subscriber_->serverId();
    health_.headSeq = std::max(health_.headSeq, health_.appliedSeq);
    return n > 0;
  } catch (const bus::TruncatedError& e) {
    // Too far behind: what the models lack is gone from the server. They
    // start again from the oldest event it has, and the health says what
    // was lost.
    logLine("projections", "%s: models rebuilt from seq %" PRIu64, e.what(), e.oldest);
    pending_.clear();
    models_->reset();
    ++health_.resets;
    health_.truncated = {e.wanted, e.oldest};
    health_.builtFromSeq = e.oldest;
    health_.appliedSeq = e.oldest - 1;
    startFollowing(e.oldest);
  } catch (const std::exception& e) {
    applyPending();  // delivered before the stream broke: they stand
    if (health_.connected) ++health_.disconnects;
    health_.connected = false;
    health_.lastError = e.what();
    logLine("projections", "lost the event stream: %s", e.what());
    subscriber_.reset();
  }
  return false;
}

void ProjectionRunner::applyPending() {
  if (pending_.empty()) return;
  models_->apply(std::span<const Event>(pending_));
  health_.appliedSeq = pending_.back().seq;
  pending_.clear();
}

void ProjectionRunner::runQueries() {
  std::function<void(ReadModels&, const Health&)> query;
  bool expired = false;
  while (queries_.try_dequeue(query)) {
    if (!expired) {
      models_->expire();  // windows as of now, once per batch of queries
      expired = true;
    }
    query(*models_, health_);
  }
}

void ProjectionRunner::publishSummary(bool force) {
  if (!config_.summarize) return;
  auto now = SteadyClock::now();
  if (!force && now - lastSummary_ < config_.summaryEvery) return;
  bool changed = summarizedSeq_ != health_.appliedSeq || summarizedConnected_ != health_.connected;
  if (!force && !changed && now - lastSummary_ < std::chrono::seconds(1)) {
    return;
  }
  models_->expire();
  auto text = std::make_shared<const std::string>(config_.summarize(*models_, health_));
  lastSummary_ = now;
  summarizedSeq_ = health_.appliedSeq;
  summarizedConnected_ = health_.connected;
  {
    std::lock_guard lock(summaryMutex_);
    summary_ = Summary{summary_.version + 1, std::move(text)};
  }
  summaryChanged_.notify_all();
}

}  // namespace shop::projections
