// Hand-made wire messages that this build cannot produce by itself: what a
// newer (or broken) peer could send.
#pragma once

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>

#include <stdexcept>

#include "core/event_codec.h"

namespace shop::testkit {

// Makes `event`'s union say member `which`, which this build does not know
// (the schema has 7): as an event kind added by a newer server reads here.
// The discriminant is found through the schema, not assumed.
inline void setEventKind(wire::Event::Builder event, uint16_t which) {
  uint32_t offset =
      capnp::Schema::from<wire::Event>().getProto().getStruct().getDiscriminantOffset();
  kj::ArrayPtr<kj::byte> data = capnp::toAny(wire::Event::Builder(event)).getDataSection();
  if ((offset + 1) * 2 > data.size()) throw std::logic_error("no discriminant in the data section");
  data[offset * 2] = static_cast<kj::byte>(which & 0xFF);  // little-endian, as on the wire
  data[offset * 2 + 1] = static_cast<kj::byte>(which >> 8);
}

// One Event message in standard framing; with `unknownKind`, its union
// member is one this build does not know.
inline kj::Array<capnp::word> eventMessage(const Event& event, bool unknownKind = false) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<wire::Event>();
  toWire(event, root);
  if (unknownKind) setEventKind(root, 100);
  return capnp::messageToFlatArray(message);
}

}  // namespace shop::testkit
