#include "core/event_log.h"

#include <algorithm>
#include <stdexcept>

#include "core/check.h"

namespace shop {

EventLog::EventLog(size_t retention)
    : capacity_(std::max<size_t>(retention, 1)), slots_(new Slot[capacity_]) {
  startChunk(0);
}

void EventLog::startChunk(size_t words) {
  if (!chunks_.empty()) chunks_[current_].lastSeq = head_;
  // A recycled chunk when one is big enough; an event larger than a chunk
  // gets a chunk of its own size.
  if (!spare_.empty() && chunks_[spare_.back()].capacity >= words) {
    current_ = spare_.back();
    spare_.pop_back();
  } else {
    size_t capacity = std::max(kChunkWords, words);
    chunks_.push_back(Chunk{std::unique_ptr<capnp::word[]>(new capnp::word[capacity]), capacity});
    storageWords_ += capacity;
    current_ = static_cast<uint32_t>(chunks_.size() - 1);
  }
  chunks_[current_].used = 0;
}

void EventLog::evictOldest() {
  Seq oldest = oldestSeq();
  const Slot& s = slot(oldest);
  --size_;
  // A sealed chunk is free once its newest event leaves. The current chunk is
  // never recycled here: it is sealed while its newest event is retained.
  if (s.chunk != current_ && chunks_[s.chunk].lastSeq == oldest) spare_.push_back(s.chunk);
}

kj::ArrayPtr<capnp::word> EventLog::append(size_t words) {
  SHOP_CHECK(words > 0 && words <= UINT32_MAX, "event of %zu words", words);
  if (size_ == capacity_) evictOldest();
  Chunk* chunk = &chunks_[current_];
  if (chunk->capacity - chunk->used < words) {
    startChunk(words);
    chunk = &chunks_[current_];
  }
  Seq seq = ++head_;
  ++size_;
  slot(seq) = Slot{current_, static_cast<uint32_t>(chunk->used), static_cast<uint32_t>(words)};
  capnp::word* begin = chunk->words.get() + chunk->used;
  chunk->used += words;
  chunk->lastSeq = seq;
  return kj::arrayPtr(begin, words);
}

kj::ArrayPtr<const capnp::word> EventLog::at(Seq seq) const {
  SHOP_CHECK(retains(seq), "seq %llu is not retained", static_cast<unsigned long long>(seq));
  const Slot& s = slot(seq);
  return kj::arrayPtr(chunks_[s.chunk].words.get() + s.offset, s.words);
}

void EventLog::startAfter(Seq head) {
  SHOP_CHECK(head_ == 0 && size_ == 0, "EventLog::startAfter on a log that holds events");
  head_ = head;
}

}  // namespace shop
