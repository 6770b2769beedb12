// Snapshots: every aggregate at one seq, in a file beside the journal, so
// that recovery replays only the journal's tail.
//
// The cut is consistent. When one is due, the engine stops handing new
// operations to the shards until every operation already there has
// finished (about one command's latency: stock reserved by a buy in flight,
// or units of a return on their way back to the shelf, would otherwise be
// half in the cut). Then a checkpoint task goes through every shard's inbox,
// the new operations behind it. Each shard encodes its aggregates into
// chunks at that task, and the SnapshotWriter thread writes the file: the
// state is exactly the fold of events 1..seq.
//
// File, in the journal's framing (core/record_file.h):
//   name      <dir>/<seq, 20 digits>.snapshot, written as .snapshot.tmp,
//             synced, then renamed
//   header    magic "SHOPSNAP", version 1, serverId, seq
//   records   a SnapshotInfo, then SnapshotInfo.chunks SnapshotChunk
//             messages (schemas/snapshot.capnp)
#pragma once

#include <capnp/common.h>
#include <kj/array.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <concurrentqueue/blockingconcurrentqueue.h>

#include "core/aggregates.h"
#include "core/domain.h"

namespace shop {

struct SnapshotFormat {
  static constexpr char kMagic[8] = {'S', 'H', 'O', 'P', 'S', 'N', 'A', 'P'};
  static constexpr uint32_t kVersion = 1;
};

struct SnapshotInfo {
  Seq seq = 0;  // the state is the fold of events 1..seq
  uint64_t serverId = 0;
  // Recovery reads the journal from here: the events up to `seq` rebuild the
  // in-memory retention and the dedupe window, the rest replay.
  Seq replayFrom = 1;
  uint32_t chunks = 0;
  uint64_t customers = 0;
  uint64_t products = 0;
  HoldId nextHoldId = 1;  // the next id a hold gets
};

// A snapshot file that does not read as written.
struct SnapshotCorrupt : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One shard's aggregates as chunk messages, encoded on the shard thread.
struct SnapshotPart {
  std::vector<kj::Array<capnp::word>> chunks;
  uint64_t customers = 0;
  uint64_t products = 0;
};

// Builds a SnapshotPart, closing a chunk every few thousand aggregates or
// few MiB, so that no record comes near the framing's size limit.
// customer() and product() keep a reference: the aggregate and its id must
// stay as they are until endChunk() or finish().
class SnapshotEncoder {
 public:
  SnapshotEncoder();
  ~SnapshotEncoder();
  SnapshotEncoder(SnapshotEncoder&&) noexcept;
  SnapshotEncoder& operator=(SnapshotEncoder&&) noexcept;
  void customer(std::string_view id, const Customer& customer);
  void product(std::string_view id, const Product& product);
  // Encodes what is pending into a chunk now.
  void endChunk();
  SnapshotPart finish();

 private:
  struct Pending;
  void flushIfFull();
  std::unique_ptr<Pending> pending_;
  SnapshotPart part_;
};

// Where a read snapshot's aggregates go.
class SnapshotVisitor {
 public:
  virtual ~SnapshotVisitor() = default;
  virtual void customer(std::string_view id, Customer&& customer) = 0;
  virtual void product(std::string_view id, Product&& product) = 0;
};

// Reads a whole snapshot from its bytes and checks every record; the
// visitor (may be null) sees each aggregate. Throws SnapshotCorrupt.
SnapshotInfo readSnapshot(kj::ArrayPtr<const kj::byte> bytes, SnapshotVisitor* visitor);
// The same from a file.
SnapshotInfo readSnapshotFile(const std::string& path, SnapshotVisitor* visitor);
// Only the info record, for pruning.
SnapshotInfo readSnapshotInfo(const std::string& path);
// The snapshot files of `dir` and their seqs, newest first.
std::vector<std::pair<Seq, std::string>> listSnapshots(const std::string& dir);
// Writes a snapshot file of the given parts to `dir` (temporary name, sync,
// rename, directory sync); returns its path and size.
std::pair<std::string, uint64_t> writeSnapshot(const std::string& dir, SnapshotInfo info,
                                               const std::vector<SnapshotPart>& parts);

struct SnapshotConfig {
  std::string dir;            // the journal's
  Seq every = 1'000'000;      // events between snapshots; 0: never
  bool keepSegments = false;  // keep journal segments that snapshots cover
  size_t keepSnapshots = 2;   // the newest, and one to fall back on
};

// The snapshot thread: waits for the shards' parts, waits until the journal
// holds every event up to the snapshot's seq (a snapshot is never ahead of
// the journal), writes the file, then deletes older snapshots and the
// segments no kept snapshot needs. The command path never waits on it.
class SnapshotWriter {
 public:
  struct Job {
    SnapshotInfo info;
    std::vector<std::promise<SnapshotPart>> parts;   // one per shard, set on its thread
    std::vector<std::future<SnapshotPart>> futures;  // taken before the shards see `parts`
  };
  // `durable(seq)` blocks until the journal holds seq; false if it failed.
  SnapshotWriter(SnapshotConfig config, std::function<bool(Seq)> durable);
  ~SnapshotWriter();
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  const SnapshotConfig& config() const { return config_; }
  // A job is being written: the engine starts no other until it is done.
  bool busy() const { return busy_.load(std::memory_order_acquire); }
  void submit(std::unique_ptr<Job> job);
  // Blocks until no job is queued or being written.
  void waitIdle();
  // The first seq the journal's segments still hold. Thread-safe.
  Seq journalStart() const { return journalStart_.load(std::memory_order_acquire); }

  struct Stats {
    std::atomic<uint64_t> written{0};
    std::atomic<uint64_t> failed{0};
    std::atomic<uint64_t> segmentsDeleted{0};
    std::atomic<Seq> lastSeq{0};
  };
  const Stats& stats() const { return stats_; }

 private:
  void run();
  void write(Job& job);
  void prune();

  SnapshotConfig config_;
  std::function<bool(Seq)> durable_;
  std::atomic<bool> busy_{false};
  std::mutex idleMutex_;
  std::condition_variable idle_;
  std::atomic<bool> stopping_{false};
  std::atomic<Seq> journalStart_{0};
  Seq lastReplayFrom_ = 0;  // writer thread: of the snapshot just written
  Stats stats_;
  moodycamel::BlockingConcurrentQueue<std::unique_ptr<Job>> jobs_;
  std::thread thread_;
};

}  // namespace shop
