// Drives an in-process Engine from the test thread (which is its ingress
// thread) and records everything it emits.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/engine.h"
#include "core/journal.h"

namespace shop::testkit {

// Records every event and reply. Owned by the engine's ingress thread.
class RecordingListener : public EngineListener {
 public:
  // With a journal (started), each event is journaled too, and each batch
  // committed to it, as bus::Server does.
  explicit RecordingListener(Journal* journal = nullptr) : journal_(journal) {}
  void append(const PublishedEvent& event) override {
    if (journal_) journal_->append(event.message);
    EngineListener::append(event);
  }
  void commit() override {
    if (journal_) journal_->commit();
  }
  void onEvent(const Event& event) override { events.push_back(event); }
  void onReply(uint64_t tag, const Reply& reply) override { replies[tag].push_back(reply); }

  std::vector<Event> events;
  std::map<uint64_t, std::vector<Reply>> replies;  // by tag; more than one is a bug

 private:
  Journal* journal_;
};

// Replays `events` in seq order and checks every state an event states (a
// balance, a stock) against the replay at that seq. Returns the first
// disagreement, described, or empty when all agree.
std::string firstStatedMismatch(const std::vector<Event>& events);

class EngineHarness {
 public:
  explicit EngineHarness(EngineConfig config = {}, Journal* journal = nullptr)
      : listener(journal), engine(config, listener) {}

  // Submits and returns the tag; the reply comes later (see replyOf/await).
  uint64_t send(CommandBody body, CommandId id = CommandId::random());
  // Submits, waits for the reply, and returns it.
  Reply run(CommandBody body, CommandId id = CommandId::random());
  // Waits (blocking on the engine's wakeup, no sleeps) until `tag` has a reply.
  const Reply& await(uint64_t tag);
  // The reply for `tag` if it arrived.
  const Reply* replyOf(uint64_t tag) const;

  RecordingListener listener;
  Engine engine;

 private:
  uint64_t nextTag_ = 1;
};

}  // namespace shop::testkit
