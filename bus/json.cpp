#include "bus/json.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <string>

namespace shop::bus {
namespace {

zmq::message_t frameOf(const kj::String& text) {
  return zmq::message_t(text.cStr(), text.size());
}

// Which of Command's union members the object names. A JSON object may name
// none or several, which Cap'n Proto's decoder would read as the first
// member with empty fields, or as the last one given: both are malformed.
std::string commandMember(capnp::JsonValue::Reader value, std::string& error) {
  if (!value.isObject()) {
    error = "json: a command must be a JSON object";
    return {};
  }
  auto members = capnp::Schema::from<wire::Command>().getUnionFields();
  std::string found;
  for (auto field : value.getObject()) {
    for (auto member : members) {
      if (field.getName() != member.getProto().getName()) continue;
      if (!found.empty()) {
        error = "json: a command names one kind, this one names " + found + " and " +
                field.getName().cStr();
        return {};
      }
      found = field.getName().cStr();
    }
  }
  if (found.empty()) {
    std::string kinds;
    for (auto member : members) {
      kinds += kinds.empty() ? "" : ", ";
      kinds += member.getProto().getName().cStr();
    }
    error = "json: no command kind in the object (one of " + kinds + ")";
  }
  return found;
}

// kj's description of a failed check, without the check's source text:
// "expected value <= U(MAX) [...]; Value out-of-range...; value = 1e30"
// reads "Value out-of-range...; value = 1e30".
std::string reason(const kj::Exception& e) {
  std::string text = e.getDescription().cStr();
  if (text.starts_with("expected ")) {
    size_t cut = text.find("; ");
    if (cut != std::string::npos) {
      text.erase(0, cut + 2);
    } else {
      // A bare failed check, as for an array where an object belongs.
      text = "a value has the wrong JSON type (" + text.substr(9) + ")";
    }
  }
  return "json: " + text;
}

// The commandId of a command whose decoding failed part way, when it was read.
CommandId idIfRead(wire::Command::Reader command) {
  try {
    if (command.hasCommandId()) return commandIdFromWire(command.getCommandId());
  } catch (const DecodeError&) {
  }
  return CommandId{};
}

}  // namespace

JsonWire::JsonWire() : codec_(std::make_unique<capnp::JsonCodec>()) {
  codec_->handleByAnnotation<wire::Command>();
  codec_->handleByAnnotation<wire::Reply>();
  codec_->setRejectUnknownFields(true);
  // Deeper than any command; the frame limit bounds the rest.
  codec_->setMaxNestingDepth(8);
}

DecodedCommand JsonWire::decodeCommand(std::string_view frame) const {
  DecodedCommand out;
  if (frame.size() > kMaxFrameBytes) {
    out.malformed = "frame of " + std::to_string(frame.size()) + " bytes exceeds the limit of " +
                    std::to_string(kMaxFrameBytes);
    return out;
  }
  capnp::MallocMessageBuilder message(512);
  auto root = message.initRoot<wire::Command>();
  try {
    auto raw = message.getOrphanage().newOrphan<capnp::JsonValue>();
    codec_->decodeRaw(kj::ArrayPtr<const char>(frame.data(), frame.size()), raw.get());
    std::string error;
    if (commandMember(raw.getReader(), error).empty()) {
      // Still name the command when its id can be read.
      try {
        codec_->decode(raw.getReader(), root);
      } catch (const kj::Exception&) {
      }
      out.id = idIfRead(root.asReader());
      out.malformed = std::move(error);
      return out;
    }
    codec_->decode(raw.getReader(), root);
  } catch (const kj::Exception& e) {
    out.id = idIfRead(root.asReader());
    out.malformed = reason(e);
    return out;
  }
  try {
    out.id = commandIdFromWire(root.asReader().getCommandId());
    out.command = fromWire(root.asReader(), out.id);
  } catch (const DecodeError& e) {
    out.malformed = e.what();
  } catch (const kj::Exception& e) {
    out.malformed = reason(e);
  }
  return out;
}

zmq::message_t JsonWire::encode(const ReplyView& reply) const {
  size_t words = 256;
  if (reply.status == ReplyStatus::events) {
    for (size_t i = 0; i < reply.count; ++i) words += pageEvent(reply, i).size() + 8;
  }
  capnp::MallocMessageBuilder builder(static_cast<unsigned>(words));
  auto root = builder.initRoot<wire::Reply>();
  toWire(reply, root);
  return frameOf(codec_->encode(root.asReader()));
}

zmq::message_t JsonWire::malformed(const CommandId& id, std::string_view why) const {
  capnp::MallocMessageBuilder builder(128);
  auto root = builder.initRoot<wire::Reply>();
  root.setCommandId(bytesOf(id));
  root.setMalformed(capnp::Text::Reader(why.data(), why.size()));
  return frameOf(codec_->encode(root.asReader()));
}

zmq::message_t JsonWire::event(kj::ArrayPtr<const capnp::word> message) const {
  capnp::FlatArrayMessageReader reader(message);
  return frameOf(codec_->encode(reader.getRoot<wire::Event>()));
}

std::string JsonWire::commandText(const Command& command) const {
  capnp::MallocMessageBuilder builder(128);
  auto root = builder.initRoot<wire::Command>();
  toWire(command, root);
  return codec_->encode(root.asReader()).cStr();
}

std::string JsonWire::replyText(const Reply& reply) const {
  capnp::MallocMessageBuilder builder(256);
  auto root = builder.initRoot<wire::Reply>();
  toWire(reply, root);
  return codec_->encode(root.asReader()).cStr();
}

}  // namespace shop::bus
