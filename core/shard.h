// A shard: one thread that owns the customers and products hashing to it.
//
// Threads: the ingress thread is the only producer of a shard's inbox, and
// each shard is the only producer of its own stream in the shared outbox. So
// tasks reach a shard in the order the ingress sent them, and outcomes reach
// the ingress in the order the shard decided them. Cross-shard work (buy)
// always hops through the ingress, which keeps the published order causal.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <variant>

#include <concurrentqueue/blockingconcurrentqueue.h>
#include <concurrentqueue/concurrentqueue.h>

#include "core/aggregates.h"
#include "core/domain.h"
#include "core/event_codec.h"
#include "core/shard_router.h"
#include "core/snapshot.h"
#include "core/wakeup.h"

namespace shop {

enum class Step : uint8_t {
  execute,     // the whole command on this shard (a buy or hold when both aggregates are here)
  reserve,     // cross-shard buy or hold, part 1: reserve stock at the product
  debit,       // part 2: pay (buy) or record the hold (hold) at the customer (unitPrice set)
  release,     // give back stock reserved by a buy that failed (no reply)
  stockBack,   // stock of a return goes back to the product (no reply)
  unhold,      // held units go back to the stock: a hold that failed, was released or
               // expired (no reply)
  holdSold,    // held units were bought: a confirmed hold (no reply)
  hold,        // test seam: block until Shard::resume()
  armFault,    // test seam: the next command touching `key` throws
  snapshot,    // test seam: copy this shard's state into `snapshotOut`
  checkpoint,  // snapshot: encode this shard's aggregates into `partOut`
  install,     // recovery: take `install`'s aggregates as this shard's state
  fail,        // test seam: a failed invariant check outside any command
  stop,        // leave the loop after the tasks before it
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

using CustomerMap = std::unordered_map<std::string, Customer, StringHash, std::equal_to<>>;
using ProductMap = std::unordered_map<std::string, Product, StringHash, std::equal_to<>>;

// One shard's aggregates, as recovery rebuilds them.
struct ShardState {
  CustomerMap customers;
  ProductMap products;
};

struct ShardTask {
  Step step = Step::execute;
  uint32_t op = 0;
  // Borrowed from the ingress's op table: immutable and alive until the op's
  // final outcome has been processed on the ingress thread.
  const Command* command = nullptr;
  Money unitPrice = 0;    // debit
  std::string key;        // release/stockBack/unhold/holdSold: product; armFault: aggregate key
  Quantity quantity = 0;  // release/stockBack/unhold/holdSold
  std::promise<ShopState>* snapshotOut = nullptr;  // snapshot
  ShardState* install = nullptr;                   // install: moved from
  std::promise<SnapshotPart>* partOut = nullptr;   // checkpoint
  std::promise<void>* installed = nullptr;         // install: set once taken
};

// What a shard reports for an op. `reserved` is an intermediate step of a
// buy; every other kind is the op's final outcome.
struct ShardOutcome {
  uint32_t op = 0;
  bool reserved = false;
  Money unitPrice = 0;  // reserved
  std::variant<std::monostate, EventBody, Rejection, CustomerView> result;
  // With an EventBody: its message, encoded here so that the ingress only
  // copies it into the log and writes seq and time (size 0: too big).
  PreEncodedEvent encoded;
};

using OutcomeQueue = moodycamel::ConcurrentQueue<ShardOutcome>;

// A shard's inbox blocks at once when empty. moodycamel spins 10,000 times
// by default before it sleeps; on a 2-core machine that spinning takes the
// CPU the socket thread and ZeroMQ need, and at moderate load it showed as
// milliseconds of p99. Threads that wait, block.
struct InboxTraits : moodycamel::ConcurrentQueueDefaultTraits {
  static const int MAX_SEMA_SPINS = 0;
};
using Inbox = moodycamel::BlockingConcurrentQueue<ShardTask, InboxTraits>;

// Owned by its own thread; other threads call only submit() (the ingress,
// producer side) and resume() (test seam).
class Shard {
 public:
  // `checkpointSlice`: aggregates a snapshot encodes between two batches.
  // `maxHolds`: live holds one customer may have.
  Shard(unsigned index, OutcomeQueue& outbox, Wakeup& wakeup, size_t checkpointSlice = 512,
        size_t maxHolds = 20);
  ~Shard();  // stops and joins the thread
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // Producer side: call from the ingress thread only.
  void submit(ShardTask task);
  // Producer side: moves every task of `tasks` in, in order, and clears it.
  void submitBulk(std::vector<ShardTask>& tasks);
  // Ends a `hold`; thread-safe.
  void resume();

  unsigned index() const { return index_; }
  // True once an exception escaped outside any command's supervision (a
  // broken invariant): the shard logged it and stopped; its state is not
  // trusted. Thread-safe. failure() says what happened, once failed().
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  const std::string& failure() const { return failure_; }

 private:
  void run();
  // Handles one task; returns true when the thread should stop.
  bool handle(ShardTask& task);
  void decide(const ShardTask& task, ShardOutcome& out);
  void throwIfArmed(AggregateKind kind, std::string_view id);
  Product* reservable(std::string_view product, Quantity quantity, ShardOutcome& out);
  void flush();
  void fail(const char* what);

  // ---- snapshots: encoded in slices, between batches ----
  // At a checkpoint task the shard notes the cut (how many aggregates it
  // holds: they are only ever added, in order) and encodes them a slice at
  // a time between batches of tasks, so no command waits for more than one
  // slice. An aggregate about to change before its slice came is encoded
  // first, as it was at the cut (copy-on-write).
  struct Checkpoint {
    std::promise<SnapshotPart>* out = nullptr;
    uint32_t epoch = 0;
    size_t customers = 0, products = 0;    // the cut
    size_t customerAt = 0, productAt = 0;  // encoded up to here
    SnapshotEncoder encoder;
    // Copies of aggregates encoded early, until their chunk is encoded.
    std::deque<std::pair<std::string, Customer>> customerCopies;
    std::deque<std::pair<std::string, Product>> productCopies;
  };
  void beginCheckpoint(std::promise<SnapshotPart>* out);
  // Encodes one slice; sets the promise once every aggregate of the cut is in.
  void checkpointSlice(size_t budget);
  void keep(std::string_view id, Customer& customer);
  void keep(std::string_view id, Product& product);
  Customer& addCustomer(std::string id, Customer customer);
  Product& addProduct(std::string id, Product product);
  void indexAll();  // after install: the creation order, rebuilt

  unsigned index_;
  size_t checkpointSlice_;
  size_t maxHolds_;
  std::string failure_;  // written before failed_ is set
  std::atomic<bool> failed_{false};
  OutcomeQueue& outbox_;
  Wakeup& wakeup_;
  Inbox inbox_;
  moodycamel::ProducerToken inboxToken_;   // used by the ingress thread
  moodycamel::ProducerToken outboxToken_;  // used by the shard thread
  moodycamel::LightweightSemaphore resume_;

  // Shard thread only.
  CustomerMap customers_;
  ProductMap products_;
  // Every aggregate in creation order (map nodes never move): the cut of a
  // checkpoint is a prefix of each.
  std::vector<std::pair<const std::string*, Customer*>> customerOrder_;
  std::vector<std::pair<const std::string*, Product*>> productOrder_;
  uint32_t epoch_ = 0;  // of the newest checkpoint
  // A pointer, not an optional: clang cannot tell a nested struct with
  // member initializers is default-constructible inside its enclosing class.
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unordered_set<std::string> armedFaults_;
  std::vector<ShardOutcome> pendingOut_;
  EventEncoder encoder_;

  std::thread thread_;  // last: starts after every member above exists
};

}  // namespace shop
