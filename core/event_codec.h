// Events between domain values (core/domain.h) and their wire form
// (schemas/shop.capnp), and the encoder that writes each event once, into
// the event log. Stateless functions are safe on any thread.
#pragma once

#include <capnp/message.h>

#include <stdexcept>

#include "core/domain.h"
#include "core/event_log.h"
#include "schemas/shop.capnp.h"

namespace shop {

// A message that cannot be read as the domain value: a bad commandId, or a
// union member from a newer peer.
struct DecodeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void toWire(const Event& event, wire::Event::Builder out);
Event fromWire(wire::Event::Reader in);
CommandId commandIdFromWire(capnp::Data::Reader in);
kj::ArrayPtr<const kj::byte> bytesOf(const CommandId& id);
// A string as Cap'n Proto Text by its size, so that an id holding a NUL byte
// travels whole (and is rejected as itself) instead of being cut at the NUL.
inline capnp::Text::Reader textOf(const std::string& s) {
  return {s.data(), s.size()};
}

// Reads one message that the log holds (trusted, aligned, standard framing).
Event decodeEvent(kj::ArrayPtr<const capnp::word> message);

// Encodes events straight into the event log, through a reused first
// segment: no allocation per event unless one outgrows 8 KiB.
// Owned by the ingress thread; not thread-safe.
class EventEncoder {
 public:
  EventEncoder();
  // Appends `event` to `log` (the log assigns event.seq, which must equal
  // log.headSeq() + 1) and returns its message.
  kj::ArrayPtr<const capnp::word> append(const Event& event, EventLog& log);

 private:
  static constexpr size_t kScratchWords = 1024;
  std::unique_ptr<capnp::word[]> scratch_;  // zeroed; the builder re-zeroes what it used
};

}  // namespace shop
