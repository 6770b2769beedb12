// Translation between domain values (core/domain.h) and the wire schema
// (schemas/shop.capnp), and the framing rules for untrusted input.
// Stateless; safe on any thread.
#pragma once

#include <capnp/message.h>
#include <kj/array.h>

#include <optional>
#include <string>
#include <variant>

#include <zmq.hpp>

#include "core/domain.h"
#include "core/egress.h"
#include "core/event_codec.h"
#include "schemas/shop.capnp.h"

namespace shop::bus {

// Largest frame accepted from a client. Commands are a few hundred bytes;
// this leaves room for 64-byte ids and any future fields, and bounds what a
// hostile client can make the server copy or traverse.
inline constexpr size_t kMaxFrameBytes = 16 * 1024;
// Frames above kMaxFrameBytes are answered `malformed`; a peer that sends
// one above this hard cap is disconnected by ZeroMQ (ZMQ_MAXMSGSIZE) before
// the server ever buffers it.
inline constexpr size_t kDisconnectFrameBytes = 1024 * 1024;

// Reader limits for untrusted frames: traversal bounded by the frame limit
// (one pass over every word), nesting deeper than any real command.
capnp::ReaderOptions untrustedReaderOptions();

// Events are translated in core (core/event_codec.h), where they are encoded
// once as they are sequenced.
using shop::commandIdFromWire;
using shop::DecodeError;
using shop::fromWire;
using shop::toWire;

// Domain -> wire.
void toWire(const Command& command, wire::Command::Builder out);
void toWire(const Reply& reply, wire::Reply::Builder out);
void toWire(const ReplyView& reply, wire::Reply::Builder out);
void toWire(const CustomerView& view, wire::CustomerView::Builder out);
void toWire(const ShopStats& stats, wire::ShopStats::Builder out);

// Wire -> domain. Throws DecodeError (bad commandId, unknown union member
// from a newer peer) or kj::Exception (a broken message).
Command fromWire(wire::Command::Reader in);
// The same when the commandId has been read already.
Command fromWire(wire::Command::Reader in, const CommandId& id);

// A reply as a client sees it: a domain Reply, or the server's `malformed`
// text when the request could not be decoded. In a page, an event that
// cannot be decoded is left out of `page.events` and listed, with why, in
// `page.skipped`; the rest of the page is kept.
struct ClientReply {
  Reply reply;
  std::optional<std::string> malformed;
};
ClientReply fromWire(wire::Reply::Reader in);

// One Cap'n Proto message as one frame (standard framing, not packed).
zmq::message_t toFrame(capnp::MessageBuilder& message);
// A message already in standard framing (e.g. from the event log), copied.
zmq::message_t toFrame(kj::ArrayPtr<const capnp::word> message);

// Builds reply frames through a reused first segment: no allocation per
// reply beyond the frame itself, unless a reply outgrows 8 KiB (pages).
// Owned by one thread; not thread-safe.
//
// An accepted reply is not built at all: it is a two-segment message whose
// first segment is a fixed Reply header (the commandId patched in) and whose
// second is the logged event's segment, copied byte for byte; the header's
// `accepted` pointer is a far pointer to that segment's root pointer. So the
// reply carries exactly the bytes the log and PUB carry.
class ReplyEncoder {
 public:
  ReplyEncoder();
  zmq::message_t encode(const ReplyView& reply);
  zmq::message_t malformed(const CommandId& id, std::string_view why);

 private:
  // The accepted reply around a single-segment event message; false when
  // the event has more than one segment (the caller then builds it).
  bool acceptedFrame(const ReplyView& reply, zmq::message_t& out) const;

  static constexpr size_t kScratchWords = 1024;
  std::unique_ptr<capnp::word[]> scratch_;  // zeroed; each builder re-zeroes what it used
  // The accepted-reply header, taken from a Reply that capnp built once.
  std::vector<capnp::word> header_;
  size_t commandIdWord_ = 0;  // where the 16 commandId bytes start in header_
  size_t acceptedWord_ = 0;   // the `accepted` pointer in header_
};

// The outcome of decoding a client's frame: the command, or why it is
// malformed (with the commandId when one could be read).
struct DecodedCommand {
  std::optional<Command> command;
  std::string malformed;
  CommandId id;
};
// `scratch` holds an aligned copy of an unaligned frame; passing the same
// one each time saves an allocation per frame.
DecodedCommand decodeCommandFrame(const zmq::message_t& frame);
DecodedCommand decodeCommandFrame(const zmq::message_t& frame, std::vector<capnp::word>& scratch);

// Reads a trusted frame (from our own server) as message type T and calls
// fn(reader). Copies when the buffer is not 8-byte aligned. Throws
// DecodeError or kj::Exception when the frame is not a valid message.
template <typename T, typename Fn>
auto readFrame(const zmq::message_t& frame, Fn&& fn);

}  // namespace shop::bus

#include "bus/codec_inl.h"
