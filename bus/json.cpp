#include "bus/json.h"

#include <nlohmann/json.hpp>

#include "core/validation.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <array>
#include <cmath>
#include <string>

namespace shop::bus {
namespace {

zmq::message_t frameOf(const kj::String& text) {
  return zmq::message_t(text.cStr(), text.size());
}

// The largest integer a JSON number carries exactly (a double's 53 bits).
constexpr double kExactIntegers = 9007199254740992.0;  // 2^53
constexpr int64_t kExactIntegerLimit = int64_t{1} << 53;
// How much of a parser's message a reply or a log line quotes.
constexpr size_t kReasonBytes = 200;
// Nesting deeper than any command: a command is 2 levels, its fields 3.
constexpr int kMaxDepth = 8;

// Every reason goes through displayText: a parser's message may quote the
// client's bytes (an unknown key, a bad number), which must reach neither
// the log nor a reply raw.
std::string malformedText(std::string_view text) {
  return displayText(text, kReasonBytes);
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
  return malformedText("json: " + text);
}

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The object's commandId, read strictly: capnp's hex decoder takes a bad
// digit for zero bits and drops an odd one, so that two different strings
// could name one command. Empty `error` and the id, or why not.
CommandId readCommandId(capnp::JsonValue::Reader object, std::string& error) {
  for (auto field : object.getObject()) {
    if (field.getName() != "commandId") continue;
    auto value = field.getValue();
    if (!value.isString()) {
      error = "json: commandId must be a string of 32 hex digits";
      return {};
    }
    kj::StringPtr text = value.getString();
    std::array<kj::byte, 16> bytes{};
    bool hex = text.size() == 32;
    for (size_t i = 0; hex && i < 16; ++i) {
      int high = hexDigit(text[2 * i]);
      int low = hexDigit(text[2 * i + 1]);
      hex = high >= 0 && low >= 0;
      bytes[i] = static_cast<kj::byte>(high << 4 | low);
    }
    if (!hex) {
      error = "json: commandId must be 32 hex digits (16 bytes), got " +
              std::to_string(text.size()) + " characters";
      return {};
    }
    return commandIdFromWire(kj::arrayPtr(bytes.data(), bytes.size()));
  }
  error = "json: no commandId";
  return {};
}

// Every number in a command is an integer. parseJson passes integers on
// exactly (past 2^53 as their digits); a number that is a fraction, or
// written with an exponent past 2^53, has no exact integer value. Empty
// when there is none.
std::string inexactNumber(capnp::JsonValue::Reader value) {
  switch (value.which()) {
    case capnp::JsonValue::NUMBER: {
      double n = value.getNumber();
      if (n != std::trunc(n)) return "json: numbers in a command are whole numbers";
      if (std::fabs(n) > kExactIntegers) {
        return "json: a number beyond 2^53 written with an exponent or a fraction is not exact; "
               "write its digits";
      }
      return {};
    }
    case capnp::JsonValue::ARRAY:
      for (auto element : value.getArray()) {
        if (auto why = inexactNumber(element); !why.empty()) return why;
      }
      return {};
    case capnp::JsonValue::OBJECT:
      for (auto field : value.getObject()) {
        if (auto why = inexactNumber(field.getValue()); !why.empty()) return why;
      }
      return {};
    default:
      return {};
  }
}

// Which of Command's union members the object names. A JSON object may name
// none or several, which Cap'n Proto's decoder would read as the first
// member with empty fields, or as the last one given: both are malformed.
std::string commandMember(capnp::JsonValue::Reader value, std::string& error) {
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

void copyTree(const nlohmann::ordered_json& in, capnp::JsonValue::Builder out) {
  switch (in.type()) {
    case nlohmann::ordered_json::value_t::null:
    case nlohmann::ordered_json::value_t::discarded:
      out.setNull();
      return;
    case nlohmann::ordered_json::value_t::boolean:
      out.setBoolean(in.get<bool>());
      return;
    // capnp-json reads a number through a double: an integer past 2^53
    // would arrive as another value. It goes as its digits instead, which
    // capnp-json reads exactly into an integer field.
    case nlohmann::ordered_json::value_t::number_integer: {
      int64_t n = in.get<int64_t>();
      if (n >= -kExactIntegerLimit && n <= kExactIntegerLimit) {
        out.setNumber(static_cast<double>(n));
      } else {
        out.setString(std::to_string(n));
      }
      return;
    }
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t n = in.get<uint64_t>();
      if (n <= static_cast<uint64_t>(kExactIntegerLimit)) {
        out.setNumber(static_cast<double>(n));
      } else {
        out.setString(std::to_string(n));
      }
      return;
    }
    case nlohmann::ordered_json::value_t::number_float:
      out.setNumber(in.get<double>());
      return;
    case nlohmann::ordered_json::value_t::string: {
      const auto& text = in.get_ref<const std::string&>();
      out.setString(capnp::Text::Reader(text.c_str(), text.size()));
      return;
    }
    case nlohmann::ordered_json::value_t::binary:
      throw JsonError("binary values are not JSON");
    case nlohmann::ordered_json::value_t::array: {
      auto list = out.initArray(static_cast<unsigned>(in.size()));
      unsigned i = 0;
      for (const auto& element : in) copyTree(element, list[i++]);
      return;
    }
    case nlohmann::ordered_json::value_t::object: {
      auto fields = out.initObject(static_cast<unsigned>(in.size()));
      unsigned i = 0;
      for (const auto& [name, value] : in.items()) {
        fields[i].setName(capnp::Text::Reader(name.c_str(), name.size()));
        copyTree(value, fields[i].initValue());
        ++i;
      }
      return;
    }
  }
}

}  // namespace

void parseJson(std::string_view text, capnp::JsonValue::Builder out, int maxDepth) {
  nlohmann::ordered_json tree;
  try {
    tree = nlohmann::ordered_json::parse(
        text.begin(), text.end(),
        [maxDepth](int depth, nlohmann::ordered_json::parse_event_t, auto&) {
          if (depth > maxDepth) {
            throw JsonError("nested deeper than " + std::to_string(maxDepth) + " levels");
          }
          return true;
        });
  } catch (const nlohmann::ordered_json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ...":
    // the bracketed id is for programmers.
    std::string why = e.what();
    if (why.starts_with("[json.exception.")) why.erase(0, why.find("] ") + 2);
    throw JsonError(displayText(why, kReasonBytes));
  }
  copyTree(tree, out);
}

JsonWire::JsonWire() : codec_(std::make_unique<capnp::JsonCodec>()) {
  codec_->handleByAnnotation<wire::Command>();
  codec_->handleByAnnotation<wire::Reply>();
  codec_->setRejectUnknownFields(true);
}

DecodedCommand JsonWire::decodeCommand(std::string_view frame) const {
  DecodedCommand out;
  if (frame.size() > kMaxFrameBytes) {
    out.malformed = "json: frame of " + std::to_string(frame.size()) +
                    " bytes exceeds the limit of " + std::to_string(kMaxFrameBytes);
    return out;
  }
  // First the JSON as a tree: the id, the numbers and the kind are checked
  // there, then Cap'n Proto's decoder fills the typed command.
  capnp::MallocMessageBuilder message(512);
  auto raw = message.getOrphanage().newOrphan<capnp::JsonValue>();
  try {
    parseJson(frame, raw.get(), kMaxDepth);
  } catch (const JsonError& e) {
    out.malformed = malformedText(std::string("json: ") + e.what());
    return out;
  }
  auto tree = raw.getReader();
  if (!tree.isObject()) {
    out.malformed = "json: a command is a JSON object";
    return out;
  }
  std::string error;
  out.id = readCommandId(tree, error);
  if (error.empty()) error = inexactNumber(tree);
  if (error.empty()) commandMember(tree, error);
  if (!error.empty()) {
    out.malformed = malformedText(error);
    return out;
  }
  try {
    auto root = message.initRoot<wire::Command>();
    codec_->decode(tree, root);
    out.command = fromWire(root.asReader(), out.id);
  } catch (const DecodeError& e) {
    out.malformed = malformedText(std::string("json: ") + e.what());
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
