// Events between domain values (core/domain.h) and their wire form
// (schemas/shop.capnp), and the encoder that writes each event once, into
// the event log. Stateless functions are safe on any thread.
#pragma once

#include <capnp/message.h>

#include <array>
#include <cstring>
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
// The same, from the parts (seq and time may be 0: see PreEncodedEvent).
void toWire(Seq seq, int64_t timestampNs, const CommandId& id, const EventBody& body,
            wire::Event::Builder out);
Event fromWire(wire::Event::Reader in);
CommandId commandIdFromWire(capnp::Data::Reader in);
kj::ArrayPtr<const kj::byte> bytesOf(const CommandId& id);
// Enum values from a peer may be newer than ours; unknown ones map to
// internalError, which still reads as a rejection.
RejectReason reasonFromWire(wire::RejectReason r);
// A string as Cap'n Proto Text by its size, so that an id holding a NUL byte
// travels whole (and is rejected as itself) instead of being cut at the NUL.
inline capnp::Text::Reader textOf(const std::string& s) {
  return {s.data(), s.size()};
}

// Reads one message that the log holds (trusted, aligned, standard framing).
Event decodeEvent(kj::ArrayPtr<const capnp::word> message);

// An event a shard encoded before it was sequenced: seq and timestampNs are
// 0 in it, and the ingress writes them in place as it copies the message
// into the log. Inline, so that it travels in a ShardOutcome without an
// allocation; `size` 0 means it did not fit and the ingress encodes it.
struct PreEncodedEvent {
  static constexpr size_t kMaxWords = 40;  // any event with ids of up to ~64 bytes

  PreEncodedEvent() = default;
  // Copies move only the words in use: outcomes are moved through queues.
  PreEncodedEvent(const PreEncodedEvent& other) { *this = other; }
  PreEncodedEvent& operator=(const PreEncodedEvent& other) {
    size = other.size;
    std::memcpy(words.data(), other.words.data(), size * sizeof(capnp::word));
    return *this;
  }

  std::array<capnp::word, kMaxWords> words;
  uint16_t size = 0;  // words used, segment table included
};

// Encodes events through a reused first segment: no allocation per event
// unless one outgrows 8 KiB. One per thread that encodes; not thread-safe.
class EventEncoder {
 public:
  EventEncoder();
  // Appends `event` to `log` (event.seq must be log.headSeq() + 1) and
  // returns its message.
  kj::ArrayPtr<const capnp::word> append(const Event& event, EventLog& log);
  // Appends a shard's pre-encoded message as seq log.headSeq() + 1 at
  // `timestampNs`, writing both into the copy; returns it.
  kj::ArrayPtr<const capnp::word> append(const PreEncodedEvent& pre, int64_t timestampNs,
                                         EventLog& log) const;
  // Encodes with seq and time 0 into `out`; out.size stays 0 when too big.
  void preEncode(const CommandId& id, const EventBody& body, PreEncodedEvent& out);

 private:
  static constexpr size_t kScratchWords = 1024;
  std::unique_ptr<capnp::word[]> scratch_;  // zeroed; the builder re-zeroes what it used
  // Where seq and timestampNs sit in a single-segment Event message, in
  // words from its start (segment table included); found by encoding a
  // template, not assumed.
  size_t seqWord_ = 0;
  size_t timestampWord_ = 0;
};

}  // namespace shop
