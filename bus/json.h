// JSON frames: the capnp-json form of the wire schema (schemas/shop.capnp),
// for clients in languages without a Cap'n Proto binding. The same form
// `shopctl --json` and `shopctl tail` print: camelCase field names, the union
// member as a key, Data (the commandId) as hex, 64-bit integers as strings
// (integer numbers are accepted too, read exactly).
//
// The binary path stays the fast one; JSON costs a parse and a build per
// frame, and is used only by clients that send it.
#pragma once

#include <capnp/compat/json.h>
#include <kj/array.h>

#include <memory>
#include <stdexcept>
#include <string_view>

#include <zmq.hpp>

#include "bus/codec.h"
#include "core/egress.h"

namespace shop::bus {

// A request body is JSON when its first byte is '{'. A Cap'n Proto frame
// starts with its segment count minus one, little-endian; '{' there would
// claim 124 segments, which no client sends.
inline bool isJsonFrame(std::string_view frame) {
  return !frame.empty() && frame.front() == '{';
}
inline bool isJsonFrame(const zmq::message_t& frame) {
  return isJsonFrame(std::string_view(frame.data<char>(), frame.size()));
}

// Parses JSON text into Cap'n Proto's JSON tree (capnp::JsonValue), for
// JsonCodec::decode to read into a typed struct. Parsed by nlohmann::json,
// not by capnp-json's own parser, which in Cap'n Proto 0.9.2 misreads a
// \u escape with a hex letter (\u00e9 arrives as another character: a
// client's "café" would name another customer). Integers arrive exactly:
// past 2^53, where a double (capnp-json's number) would round them, as
// their digits in a string, which capnp-json reads exactly into an integer
// field. Objects keep their keys' order. Throws JsonError, whose message
// is safe to show (no raw input),
// past `maxDepth` levels of nesting or on bad JSON.
struct JsonError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
void parseJson(std::string_view text, capnp::JsonValue::Builder out, int maxDepth);

// Decodes JSON commands and encodes JSON replies and events. Owned by one
// thread; not thread-safe.
class JsonWire {
 public:
  JsonWire();

  // The same limits and outcome as decodeCommandFrame: the command, or why
  // it is malformed ("json: ..."), with the commandId when it is valid.
  // Stricter than capnp-json alone: the commandId must be 32 hex digits,
  // numbers must be whole (a fraction, or an exponent past 2^53, has no
  // exact integer), the object must name
  // exactly one command kind, and unknown field names are malformed, so
  // that a typo is named rather than read as a missing field. A reason
  // quoting the client's bytes shows them as text (displayText).
  DecodedCommand decodeCommand(std::string_view frame) const;

  zmq::message_t encode(const ReplyView& reply) const;
  zmq::message_t malformed(const CommandId& id, std::string_view why) const;
  // An event's message (standard framing, as the log holds it) as JSON.
  zmq::message_t event(kj::ArrayPtr<const capnp::word> message) const;

  // The same as text, for tools and tests.
  std::string commandText(const Command& command) const;
  std::string replyText(const Reply& reply) const;

 private:
  // By pointer: JsonCodec's destructor may throw, which a member's would
  // let into its owners' destructors.
  std::unique_ptr<capnp::JsonCodec> codec_;
};

}  // namespace shop::bus
