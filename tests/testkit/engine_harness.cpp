#include "tests/testkit/engine_harness.h"

#include <stdexcept>

namespace shop::testkit {

uint64_t EngineHarness::send(CommandBody body, CommandId id) {
  uint64_t tag = nextTag_++;
  engine.submit(Command{id, std::move(body)}, tag);
  return tag;
}

Reply EngineHarness::run(CommandBody body, CommandId id) { return await(send(std::move(body), id)); }

const Reply* EngineHarness::replyOf(uint64_t tag) const {
  auto it = listener.replies.find(tag);
  return it == listener.replies.end() || it->second.empty() ? nullptr : &it->second.front();
}

const Reply& EngineHarness::await(uint64_t tag) {
  while (!replyOf(tag)) {
    if (engine.inFlight() == 0 && !replyOf(tag)) {
      throw std::logic_error("awaited a reply with nothing in flight");
    }
    engine.wait(-1);
  }
  return *replyOf(tag);
}

}  // namespace shop::testkit
