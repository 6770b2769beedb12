// The journal: every event, appended to files in a directory, so that a
// restart or a crash loses nothing that was acknowledged. Recovery reads it
// back in seq order (readJournal); the socket thread appends each batch's
// events and hands the batch to the journal thread, which writes and syncs
// while the socket thread goes on (group commit).
//
// On-disk format, little-endian:
//   segment   <dir>/<first seq, 20 digits>.journal, a header then records
//   header    32 bytes: magic "SHOPJRNL", u32 version (1), u32 CRC32C of the
//             header with this field zero, u64 serverId, u64 first seq
//   record    u32 length L (a multiple of 8, at least 8), u32 CRC32C of the
//             length's 4 bytes and the message, then the L-byte message:
//             the event as the PUB socket sends it (standard framing)
// Records are 8-byte aligned in the file. Seqs run on without a gap from
// segment to segment.
#pragma once

#include <capnp/common.h>
#include <kj/common.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <concurrentqueue/blockingconcurrentqueue.h>

#include "core/domain.h"
#include "core/record_file.h"
#include "core/wakeup.h"

namespace shop {

// CRC32C (Castagnoli), as iSCSI and ext4 use it: hardware-accelerated.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

enum class FsyncMode : uint8_t {
  always,    // a batch is durable once fdatasync covered it
  interval,  // once written; synced every fsyncInterval
  never,     // once written; the OS syncs when it likes
};
std::optional<FsyncMode> parseFsyncMode(std::string_view text);
const char* name(FsyncMode mode);

struct JournalConfig {
  std::string dir;
  FsyncMode fsync = FsyncMode::always;
  std::chrono::milliseconds fsyncInterval{50};
  size_t segmentBytes = size_t{64} << 20;  // a segment rolls once it is this big
};

// A journal file that does not read as written, somewhere a crash cannot
// explain (not the torn tail of the newest segment). Nothing is skipped: the
// server must not start on it.
struct JournalCorrupt : std::runtime_error {
  JournalCorrupt(std::string file, uint64_t offset, const std::string& why);
  std::string file;
  uint64_t offset;
};

// The directory is in use by another process.
struct JournalLocked : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct JournalFormat {
  static constexpr char kMagic[8] = {'S', 'H', 'O', 'P', 'J', 'R', 'N', 'L'};
  static constexpr uint32_t kVersion = 1;
  static constexpr size_t kHeaderBytes = records::kHeaderBytes;
  static constexpr size_t kRecordHeaderBytes = records::kRecordHeaderBytes;
  static constexpr uint32_t kMaxRecordBytes = records::kMaxRecordBytes;  // far above any event
};

// The message length of the whole record at `p` (with `left` bytes from p
// to the end) if its checksum holds, else 0.
uint32_t goodRecordLength(const kj::byte* p, size_t left);

// A file mapped read-only, as recovery and the history reader read
// segments: page-aligned, so records are read in place.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws std::system_error
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const kj::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const kj::byte* data_ = nullptr;
  size_t size_ = 0;
};

// What readJournal found.
struct JournalContents {
  uint64_t serverId = 0;  // 0: no segment yet
  Seq headSeq = 0;        // the last seq read
  size_t segments = 0;
  uint64_t bytes = 0;
  // A torn tail cut off the newest segment: which file, where, and why.
  std::optional<std::string> truncated;
};

using JournalVisitor = std::function<void(Seq seq, kj::ArrayPtr<const capnp::word> message)>;

// Reads every record in `dir`, in seq order; `visit` sees each message
// (valid during the call; it must hold event `seq`). A torn tail of the
// newest segment (a partial record, or a bad one with no good record after
// it) is truncated, and the result says where. Anything else that does not
// read throws JournalCorrupt.
// With `fromSeq`, segments wholly before it are not read and `visit` sees
// seqs from it on (a snapshot covers the rest); the oldest segment read must
// start at or before it.
JournalContents readJournal(const std::string& dir, const JournalVisitor& visit, Seq fromSeq = 1);
// The last seq the journal in `dir` holds and its server id, from its
// newest segment alone (0, 0: none). A quick look before recovery: the
// torn-tail checks are readJournal's.
struct JournalEnd {
  Seq lastSeq = 0;
  uint64_t serverId = 0;
};
JournalEnd journalEnd(const std::string& dir);
// The first seq of the oldest segment in `dir` (0: none).
Seq firstJournalSeq(const std::string& dir);
// The segment files of `dir` and the seq each starts at, oldest first.
std::vector<std::pair<Seq, std::string>> journalSegments(const std::string& dir);

// Reads one segment file's bytes (for fuzzing and tools): the same checks,
// no truncation. Returns the offset of the first byte not read as a record.
struct SegmentScan {
  uint64_t serverId = 0;
  Seq firstSeq = 0;
  Seq records = 0;
  size_t goodBytes = 0;    // header and whole good records
  std::string stop;        // why reading stopped before the end; empty at the end
  bool goodAfter = false;  // a good record follows the point where it stopped
};
SegmentScan scanSegment(kj::ArrayPtr<const kj::byte> bytes, const JournalVisitor& visit);

// The writer. The socket thread calls append() for each event and commit()
// at the end of its batch; the journal thread writes the batch, syncs as
// the mode says, then marks it durable and makes wakeFd() readable.
//
// Owns the directory's lock from construction: a second Journal on the same
// directory, in this or another process, throws JournalLocked.
class Journal {
 public:
  explicit Journal(const JournalConfig& config);
  ~Journal();  // stops: writes and syncs what was committed
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Before start(): reads what the directory holds (see readJournal).
  JournalContents recover(const JournalVisitor& visit, Seq fromSeq = 1);
  // Starts writing: new segments carry `serverId`, and the next event
  // appended is `nextSeq`.
  void start(uint64_t serverId, Seq nextSeq);

  // ---- socket thread ----
  // Stages one event's message for the current batch.
  void append(kj::ArrayPtr<const capnp::word> message);
  // Hands the batch staged since the last commit to the journal thread.
  // Returns its number (they count up from 1), or 0 when nothing was staged.
  uint64_t commit();
  // The newest batch number commit() returned.
  uint64_t committed() const { return committed_; }
  // The newest batch number that is durable under the mode. Thread-safe.
  uint64_t durable() const { return durable_.load(std::memory_order_acquire); }
  // Readable when durable() moved or the journal failed; clear() it.
  int wakeFd() const { return wakeup_.fd(); }
  void clearWake() { wakeup_.clear(); }
  // Blocks until batch `number` is durable or the journal failed.
  void waitDurable(uint64_t number);
  // Blocks until every event up to `seq` is durable under the mode; false
  // when the journal failed first. Any thread: the snapshot writer waits
  // here before it publishes a snapshot, so that no snapshot is ever ahead
  // of the journal.
  bool waitDurableSeq(Seq seq);
  // Why the journal stopped writing (disk full, I/O error), or empty. Once
  // failed, nothing more becomes durable. Thread-safe.
  std::string failure() const;
  bool failed() const { return failed_.load(std::memory_order_acquire); }

  const JournalConfig& config() const { return config_; }

  // Counters, written by the journal thread; read them after the journal
  // stopped or as approximate figures.
  struct Stats {
    std::atomic<uint64_t> batches{0};
    std::atomic<uint64_t> syncs{0};
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> segments{0};
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Batch {
    uint64_t number = 0;  // 0: the stop marker
    Seq firstSeq = 0;
    Seq lastSeq = 0;
    std::vector<kj::byte> bytes;  // records, CRCs filled in by the journal thread
  };

  void run();
  void write(Batch& batch);
  void openSegment(Seq firstSeq);
  void sync();
  void fail(const std::string& why);
  std::unique_ptr<Batch> takeBatch();

  JournalConfig config_;
  int lockFd_ = -1;
  uint64_t serverId_ = 0;

  // Socket thread.
  std::unique_ptr<Batch> staging_;
  Seq nextSeq_ = 1;
  uint64_t committed_ = 0;

  // Between the threads.
  moodycamel::BlockingConcurrentQueue<std::unique_ptr<Batch>> toWrite_;
  moodycamel::ConcurrentQueue<std::unique_ptr<Batch>> spare_;
  std::atomic<uint64_t> durable_{0};
  std::mutex durableSeqMutex_;  // for waitDurableSeq()
  std::condition_variable durableSeqMoved_;
  Seq durableSeq_ = 0;
  std::atomic<bool> failed_{false};
  std::string failure_;  // written once before failed_ is set
  Wakeup wakeup_;
  Stats stats_;

  // Journal thread.
  int segmentFd_ = -1;
  size_t segmentSize_ = 0;
  bool unsynced_ = false;
  std::thread thread_;
};

}  // namespace shop
