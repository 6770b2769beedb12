// Template bodies for bus/codec.h.
#pragma once

#include <capnp/serialize.h>

#include <cstring>
#include <vector>

namespace shop::bus {

// A frame's words, aligned: borrowed when the buffer already is, else copied.
class AlignedWords {
 public:
  // With `scratch`, an unaligned frame is copied there instead of to the heap.
  explicit AlignedWords(const zmq::message_t& frame, std::vector<capnp::word>* scratch = nullptr) {
    if (frame.size() % sizeof(capnp::word) != 0) {
      throw DecodeError("frame of " + std::to_string(frame.size()) +
                        " bytes is not a whole number of 8-byte words");
    }
    size_t words = frame.size() / sizeof(capnp::word);
    if (reinterpret_cast<uintptr_t>(frame.data()) % alignof(capnp::word) == 0) {
      view_ = kj::arrayPtr(static_cast<const capnp::word*>(frame.data()), words);
    } else if (scratch) {
      scratch->resize(words);
      if (words > 0) std::memcpy(scratch->data(), frame.data(), frame.size());
      view_ = kj::arrayPtr(const_cast<const capnp::word*>(scratch->data()), words);
    } else {
      copy_ = kj::heapArray<capnp::word>(words);
      if (words > 0) std::memcpy(copy_.begin(), frame.data(), frame.size());
      view_ = copy_.asPtr();
    }
  }
  kj::ArrayPtr<const capnp::word> words() const { return view_; }

 private:
  kj::Array<capnp::word> copy_;
  kj::ArrayPtr<const capnp::word> view_;
};

template <typename T, typename Fn>
auto readFrame(const zmq::message_t& frame, Fn&& fn) {
  AlignedWords words(frame);
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 64 * 1024 * 1024;  // trusted: pages of events
  capnp::FlatArrayMessageReader reader(words.words(), options);
  return fn(reader.getRoot<T>());
}

}  // namespace shop::bus
