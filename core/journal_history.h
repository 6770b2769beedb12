// History beyond memory: ReadEvents pages for seqs that have left the
// in-memory retention, read from the journal's segments on a thread of
// their own, never on the socket thread.
#pragma once

#include <capnp/common.h>
#include <kj/common.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <concurrentqueue/blockingconcurrentqueue.h>
#include <concurrentqueue/concurrentqueue.h>

#include "core/domain.h"
#include "core/wakeup.h"

namespace shop {

struct HistoryRequest {
  uint64_t tag = 0;
  CommandId commandId;
  Seq from = 1;
  uint32_t maxCount = 0;
  size_t maxBytes = 0;  // at least one event
};

// A page read from disk: `messages` point into `words`.
struct HistoryPage {
  HistoryRequest request;
  std::vector<capnp::word> words;
  std::vector<kj::ArrayPtr<const capnp::word>> messages;
  bool capped = false;  // stopped at maxBytes
  std::string error;    // the journal could not be read; no events
  bool gone = false;    // `from` is older than the journal's oldest segment; no events
};

// Reads pages of journaled events by seq. Not thread-safe: one reader.
// Only whole records whose checksum holds are returned, so a page stops
// early at a record still being written.
class SegmentReader {
 public:
  explicit SegmentReader(std::string dir) : dir_(std::move(dir)) {}
  // Fills page.messages (and words) from request.from on.
  void read(HistoryPage& page);

 private:
  struct Segment {
    Seq firstSeq = 0;
    std::string path;
    // Offsets of every kIndexEvery-th record, from the first: built as far
    // as reads have gone, so a read starts near its seq.
    std::vector<uint64_t> index;
    Seq indexedRecords = 0;   // records whose offsets the index covers
    uint64_t indexedEnd = 0;  // offset just past the last indexed record
  };
  static constexpr Seq kIndexEvery = 1024;

  // The segment holding `seq`, listing the directory again when it may be
  // newer than the segments known.
  Segment* segmentOf(Seq seq);
  void list();

  std::string dir_;
  std::map<Seq, Segment> segments_;  // by first seq
};

// The thread that serves HistoryRequests. request() and take() are called
// by one thread (the engine's ingress); when a page is ready, `wakeup` is
// notified as a shard would notify it.
class HistoryReader {
 public:
  HistoryReader(std::string dir, Wakeup& wakeup);
  ~HistoryReader();
  HistoryReader(const HistoryReader&) = delete;
  HistoryReader& operator=(const HistoryReader&) = delete;

  void request(HistoryRequest request);
  // A page served, if one is ready.
  std::unique_ptr<HistoryPage> take();
  size_t pending() const { return pending_; }
  // Whether a page may be ready (any thread's view; for a sleep check).
  bool ready() const { return done_.size_approx() > 0; }

 private:
  void run();

  SegmentReader reader_;  // reader thread only
  Wakeup& wakeup_;
  moodycamel::BlockingConcurrentQueue<std::unique_ptr<HistoryPage>> requests_;
  moodycamel::ConcurrentQueue<std::unique_ptr<HistoryPage>> done_;
  size_t pending_ = 0;  // requested and not yet taken; ingress thread
  std::thread thread_;
};

}  // namespace shop
