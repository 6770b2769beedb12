#include "core/engine.h"

#include <capnp/serialize.h>

#include <chrono>
#include <future>
#include <random>

#include <time.h>
#include <unistd.h>
#include <cstdio>

#include "core/check.h"
#include "core/log.h"
#include "core/saga.h"
#include "core/validation.h"

namespace shop {

unsigned defaultShardCount() {
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 1 ? hw - 1 : 1;
}

uint64_t randomServerId() {
  std::random_device device;
  uint64_t id = 0;
  // 0 means "no id" on the wire (a server older than EventPage.serverId).
  while (id == 0) id = (uint64_t{device()} << 32) ^ device();
  return id;
}

namespace {
constexpr size_t kDrainBatch = 256;
constexpr size_t kExpiriesPerCommit = 4096;

bool isQuery(CommandKind kind) {
  return kind == CommandKind::getCustomer || kind == CommandKind::readEvents ||
         kind == CommandKind::getStats;
}

// Seconds of a coarse monotonic clock: cheap enough for every batch.
int64_t coarseSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return ts.tv_sec;
}

uint64_t residentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long pages = 0, resident = 0;
  int got = std::fscanf(f, "%llu %llu", &pages, &resident);
  std::fclose(f);
  return got == 2 ? resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

// Transient outcomes are not remembered: the command was not applied, so a
// retry is a new attempt rather than a duplicate.
bool remembered(RejectReason reason) {
  return reason != RejectReason::tooManyPending && reason != RejectReason::internalError &&
         reason != RejectReason::overloaded;
}

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Engine::Engine(const EngineConfig& config, EventSink& events, ReplySink& replies)
    : config_(config),
      serverId_(config.serverId != 0 ? config.serverId : randomServerId()),
      events_(events),
      replies_(replies),
      owner_(std::this_thread::get_id()),
      router_(config.shards),
      gate_(config.maxPending),
      dedupe_(config.dedupeWindow),
      log_(config.retention),
      outboxToken_(outbox_),
      staged_(config.shards) {
  if (config_.snapshots && config_.snapshots->config().every > 0) {
    nextSnapshotAt_ = config_.snapshots->config().every;
    deferred_.resize(config_.shards);
  }
  drained_.resize(kDrainBatch);
  if (!config_.historyDir.empty()) {
    history_ = std::make_unique<HistoryReader>(config_.historyDir, wakeup_);
  }
  shards_.reserve(config_.shards);
  for (unsigned k = 0; k < config_.shards; ++k) {
    shards_.push_back(
        std::make_unique<Shard>(k, outbox_, wakeup_, config_.checkpointSlice, config_.maxHolds));
  }
}

Engine::~Engine() {
  shards_.clear();
}

void Engine::assertOwner() const {
  SHOP_CHECK(std::this_thread::get_id() == owner_, "Engine used off its ingress thread");
}

kj::ArrayPtr<const capnp::word> Engine::publish(const CommandId& id, EventBody&& body) {
  return publish(id, std::move(body), PreEncodedEvent{});
}

kj::ArrayPtr<const capnp::word> Engine::publish(const CommandId& id, EventBody&& body,
                                                const PreEncodedEvent& encoded) {
  scratchEvent_.seq = log_.headSeq() + 1;
  scratchEvent_.timestampNs = now();
  scratchEvent_.commandId = id;
  scratchEvent_.body = std::move(body);
  bool restated = foldStock(scratchEvent_.body);
  // A shard's encoding is copied and stamped; without one (size 0), or when
  // the sequencer restated a field, the event is encoded here.
  auto message = encoded.size && !restated
                     ? encoder_.append(encoded, scratchEvent_.timestampNs, log_)
                     : encoder_.append(scratchEvent_, log_);
  events_.append(PublishedEvent{scratchEvent_, message});
  count(scratchEvent_.body, false);
  holds_.onEvent(scratchEvent_.seq, scratchEvent_.body);
  if (nextSnapshotAt_ != 0 && scratchEvent_.seq >= nextSnapshotAt_ && !barrier_ &&
      !config_.snapshots->busy()) {
    barrier_ = true;  // commit() takes the cut once the operations in flight finish
  }
  return message;
}

bool Engine::foldStock(EventBody& body) {
  // Stock moves on two kinds of shard: buys and returns are decided at the
  // customer, adds and restocks at the product. Only this thread sees them
  // in seq order, so the stock an event states is the one it keeps here:
  // what a replay of the log gives at that seq. The product shard's own
  // figure can differ by a buy reserved but not yet published, or by units
  // returned but not yet back on the shelf.
  auto stockOf = [this](const std::string& product) -> Quantity& {
    auto it = stockBySeq_.find(product);
    SHOP_CHECK(it != stockBySeq_.end(),
               "a stock event about a product (%zu-byte id) before its ProductAdded",
               product.size());
    return it->second;
  };
  if (auto* bought = std::get_if<ProductBought>(&body)) {
    stockOf(bought->product) -= bought->quantity;
  } else if (auto* returned = std::get_if<ProductReturned>(&body)) {
    stockOf(returned->product) += returned->quantity;
  } else if (auto* held = std::get_if<ProductHeld>(&body)) {
    stockOf(held->product) -= held->quantity;
  } else if (auto* released = std::get_if<HoldReleased>(&body)) {
    stockOf(released->product) += released->quantity;
  } else if (auto* expired = std::get_if<HoldExpired>(&body)) {
    stockOf(expired->product) += expired->quantity;
  } else if (auto* added = std::get_if<ProductAdded>(&body)) {
    stockBySeq_.emplace(added->product, added->stock);
  } else if (auto* restocked = std::get_if<ProductRestocked>(&body)) {
    Quantity& stock = stockOf(restocked->product);
    Quantity after;
    // The shard checked its own figure; this one is larger only by units in
    // flight, so overflow here needs stock near 2^63 and keeps the shard's.
    if (__builtin_add_overflow(stock, restocked->quantity, &after)) return false;
    stock = after;
    if (restocked->stock == after) return false;
    restocked->stock = after;
    return true;
  }
  return false;
}

ReplyView Engine::reject(const Command& command, RejectReason reason, std::string detail) {
  if (!isQuery(command.kind())) return rejectNow(command, reason, std::move(detail));
  // A read never changes what it reads: a query's rejection is its reply
  // alone, with no event (seq 0).
  scratchDetail_ = std::move(detail);
  return ReplyView{.commandId = command.id,
                   .status = ReplyStatus::rejected,
                   .reason = reason,
                   .detail = scratchDetail_};
}

ReplyView Engine::rejectNow(const Command& command, RejectReason reason, std::string detail) {
  ReplyView reply{.commandId = command.id, .status = ReplyStatus::rejected, .reason = reason};
  // Every other rejection comes after validation, so its ids are valid. An
  // invalid id is carried in its display form: bounded, valid UTF-8.
  auto idOf = [reason](std::string_view id) {
    return reason == RejectReason::invalidId ? displayId(id) : std::string(id);
  };
  reply.event =
      publish(command.id, OperationRejected{reason, command.kind(), idOf(command.customer()),
                                            idOf(command.product()), std::move(detail)});
  const auto& rejected = std::get<OperationRejected>(scratchEvent_.body);
  reply.detail = rejected.detail;  // lives in scratchEvent_ until the next publish
  reply.seq = scratchEvent_.seq;
  return reply;
}

void Engine::replyFromWindow(const CommandId& id, const DedupeOutcome& outcome, uint64_t tag) {
  ReplyView reply{
      .commandId = id, .status = outcome.status, .reason = outcome.reason, .seq = outcome.seq};
  if (!log_.retains(outcome.seq)) {
    // The event left retention: answer with the compact outcome, and say so.
    reply.oldestSeq = log_.oldestSeq();
    if (outcome.status == ReplyStatus::accepted) {
      reply.status = ReplyStatus::retired;
    } else {
      scratchDetail_.assign("rejected earlier as seq ");
      scratchDetail_.append(std::to_string(outcome.seq)).append(", no longer retained");
      reply.detail = scratchDetail_;
    }
    replies_.reply(tag, reply);
    return;
  }
  reply.event = log_.at(outcome.seq);
  if (outcome.status == ReplyStatus::accepted) {
    replies_.reply(tag, reply);
    return;
  }
  capnp::FlatArrayMessageReader reader(reply.event);
  auto detail = reader.getRoot<wire::Event>().getOperationRejected().getDetail();
  reply.detail = std::string_view(detail.cStr(), detail.size());
  replies_.reply(tag, reply);
}

void Engine::serveRead(const Command& command, uint64_t tag) {
  const auto& read = std::get<ReadEvents>(command.body);
  Seq oldest = log_.oldestSeq();
  uint32_t limit = config_.readPageLimit;
  if (read.maxCount != 0 && read.maxCount < limit) limit = read.maxCount;
  if (history_) {
    // Snapshots may have let the journal's oldest segments go.
    Seq journalStart = config_.snapshots ? config_.snapshots->journalStart() : 0;
    oldest = std::min(oldest, std::max<Seq>(journalStart, 1));
  }
  if (read.fromSeq != 0 && read.fromSeq < oldest) {
    ReplyView reply = reject(command, RejectReason::retentionExceeded,
                             "seq " + std::to_string(read.fromSeq) +
                                 " is no longer retained; the oldest is " + std::to_string(oldest));
    reply.oldestSeq = oldest;  // the same figure as the detail: nothing was published
    replies_.reply(tag, reply);
    return;
  }
  if (read.fromSeq != 0 && read.fromSeq < log_.oldestSeq()) {
    // Left memory, but not the journal: read there, off this thread.
    history_->request(HistoryRequest{.tag = tag,
                                     .commandId = command.id,
                                     .from = read.fromSeq,
                                     .maxCount = limit,
                                     .maxBytes = config_.readPageBytes});
    return;
  }
  Seq first = std::max(read.fromSeq, log_.oldestSeq());
  size_t count = first > log_.headSeq() ? 0 : std::min<Seq>(limit, log_.headSeq() - first + 1);
  // Bounded in bytes as well as in count, so that no read can make the
  // socket thread build (and a client queue) more than about a MiB.
  size_t bytes = 0;
  bool capped = false;
  for (size_t i = 0; i < count; ++i) {
    bytes += log_.at(first + i).size() * sizeof(capnp::word);
    if (bytes > config_.readPageBytes && i > 0) {
      count = i;
      capped = true;
      break;
    }
  }
  replies_.reply(tag, ReplyView{.commandId = command.id,
                                .status = ReplyStatus::events,
                                .log = &log_,
                                .first = first,
                                .count = count,
                                .headSeq = log_.headSeq(),
                                .capped = capped,
                                .serverId = serverId_});
}

size_t Engine::serveHistory() {
  size_t n = 0;
  while (auto page = history_->take()) {
    ++n;
    const HistoryRequest& r = page->request;
    if (page->gone) {
      Seq oldest = config_.snapshots ? config_.snapshots->journalStart() : log_.oldestSeq();
      scratchDetail_ = "seq " + std::to_string(r.from) + " is no longer retained; the oldest is " +
                       std::to_string(oldest);
      replies_.reply(r.tag, ReplyView{.commandId = r.commandId,
                                      .status = ReplyStatus::rejected,
                                      .reason = RejectReason::retentionExceeded,
                                      .detail = scratchDetail_,
                                      .oldestSeq = oldest});
      continue;
    }
    if (!page->error.empty()) {
      scratchDetail_ =
          "the journal could not be read from seq " + std::to_string(r.from) + ": " + page->error;
      replies_.reply(r.tag, ReplyView{.commandId = r.commandId,
                                      .status = ReplyStatus::rejected,
                                      .reason = RejectReason::internalError,
                                      .detail = scratchDetail_});
      continue;
    }
    replies_.reply(r.tag, ReplyView{.commandId = r.commandId,
                                    .status = ReplyStatus::events,
                                    .messages = &page->messages,
                                    .count = page->messages.size(),
                                    .headSeq = log_.headSeq(),
                                    .capped = page->capped,
                                    .serverId = serverId_});
  }
  return n;
}

void Engine::prefetch(const Command& command) const {
  if (!isQuery(command.kind())) dedupe_.prefetch(command.id);
}

void Engine::refuse(const Command& command, uint64_t tag, RejectReason reason, std::string detail) {
  assertOwner();
  ++commandsReceived_;
  // Validation still comes first: an invalid id is never echoed raw. An
  // invalid mutation is then remembered as submit() remembers it (and as
  // recovery does from its event), so that a retry is answered from the
  // window, here and after a restart alike.
  if (auto invalid = validate(command)) {
    ReplyView reply = reject(command, invalid->reason, std::move(invalid->detail));
    if (!isQuery(command.kind()) &&
        dedupe_.find(command.id).kind == DedupeWindow::Hit::Kind::absent) {
      dedupe_.remember(command.id, {reply.seq, ReplyStatus::rejected, reply.reason});
    }
    replies_.reply(tag, reply);
    return;
  }
  replies_.reply(tag, reject(command, reason, std::move(detail)));
}

void Engine::submit(Command command, uint64_t tag) {
  assertOwner();
  ++commandsReceived_;
  CommandKind kind = command.kind();
  if (kind == CommandKind::readEvents) {
    serveRead(command, tag);
    return;
  }
  if (kind == CommandKind::getStats) {
    serveStats(command, tag);
    return;
  }
  if (kind == CommandKind::expireHold) {
    // The engine's own: no sender may submit one, and it has no wire form
    // to publish a rejection in.
    scratchDetail_ = "expireHold is the engine's own command";
    replies_.reply(tag, ReplyView{.commandId = command.id,
                                  .status = ReplyStatus::rejected,
                                  .reason = RejectReason::forbidden,
                                  .detail = scratchDetail_});
    return;
  }
  // Queries are answered fresh each time; only mutations are deduplicated.
  if (!isQuery(kind)) {
    DedupeWindow::Hit seen = dedupe_.find(command.id);
    if (seen.kind == DedupeWindow::Hit::Kind::inFlight) {
      ops_[seen.op]->tags.push_back(tag);  // a retry of a command in flight
      return;
    }
    if (seen.kind == DedupeWindow::Hit::Kind::completed) {
      replyFromWindow(command.id, seen.outcome, tag);
      return;
    }
  }
  auto invalid = validate(command);
  if (!invalid) invalid = admitHold(command);
  if (invalid) {
    ReplyView reply = reject(command, invalid->reason, std::move(invalid->detail));
    if (!isQuery(kind)) {
      dedupe_.remember(command.id, {reply.seq, ReplyStatus::rejected, reply.reason});
    }
    replies_.reply(tag, reply);
    return;
  }
  // The global safety valve, before any per-customer state is touched:
  // memory stays bounded however many customers send at once.
  if (inFlight_ >= config_.maxInFlight) {
    replies_.reply(tag, reject(command, RejectReason::overloaded,
                               std::to_string(inFlight_) +
                                   " operations are in flight, the server's bound; retry later"));
    return;
  }
  std::string_view customer = command.customer();
  if (!customer.empty() && !gate_.tryAdmit(customer)) {
    replies_.reply(tag, reject(command, RejectReason::tooManyPending,
                               "customer '" + std::string(customer) + "' already has " +
                                   std::to_string(gate_.maxPending()) + " operations pending"));
    return;
  }
  start(std::move(command), tag, !customer.empty(), false);
}

void Engine::start(Command&& command, uint64_t tag, bool gated, bool internal) {
  CommandKind kind = command.kind();
  uint32_t index;
  if (!freeOps_.empty()) {
    index = freeOps_.back();
    freeOps_.pop_back();
  } else {
    index = static_cast<uint32_t>(ops_.size());
    ops_.push_back(std::make_unique<Op>());
  }
  Op& op = *ops_[index];
  op.command = std::move(command);
  if (internal) {
    op.tags.clear();
  } else {
    op.tags.assign(1, tag);
  }
  op.gated = gated;
  op.internal = internal;
  op.step = saga::first(op.command, router_);
  ++inFlight_;
  if (!isQuery(kind) && !internal) dedupe_.begin(op.command.id, index);
  const Command& cmd = op.command;
  bool atProduct =
      op.step == Step::reserve || kind == CommandKind::addProduct || kind == CommandKind::restock;
  unsigned shard = atProduct ? shardOfProduct(cmd.product()) : shardOfCustomer(cmd.customer());
  dispatch(shard, ShardTask{.step = op.step, .op = index, .command = &cmd});
}

int64_t Engine::now() const {
  return config_.clock ? config_.clock() : nowNs();
}

std::optional<Rejection> Engine::admitHold(Command& command) {
  if (auto* hold = std::get_if<HoldProduct>(&command.body)) {
    if (hold->ttlMs > config_.maxHoldTtlMs) {
      return Rejection{RejectReason::invalidTtl,
                       "ttlMs must be <= " + std::to_string(config_.maxHoldTtlMs) + ", got " +
                           std::to_string(hold->ttlMs)};
    }
    hold->holdId = holds_.allocate();
    hold->expiresAtNs = now() + hold->ttlMs * 1'000'000;  // no overflow: ttlMs is bounded
    return std::nullopt;
  }
  HoldId id = 0;
  std::string* customer = nullptr;
  std::string* product = nullptr;
  if (auto* confirm = std::get_if<ConfirmHold>(&command.body)) {
    id = confirm->holdId;
    customer = &confirm->customer;
    product = &confirm->product;
  } else if (auto* release = std::get_if<ReleaseHold>(&command.body)) {
    id = release->holdId;
    customer = &release->customer;
    product = &release->product;
  } else {
    return std::nullopt;
  }
  expireDue();  // a hold past its deadline is expired before anything else can touch it
  if (const HoldBook::Live* live = holds_.find(id)) {
    // The customer's shard decides, in order: a confirmation or release
    // ahead of it, or the expiry just dispatched, may end the hold first
    // (onOutcome then says how it ended).
    *customer = live->customer;
    *product = live->product;
    return std::nullopt;
  }
  return endedHold(id);
}

Rejection Engine::endedHold(HoldId id) const {
  if (const HoldBook::Ended* ended = holds_.ended(id)) {
    if (ended->how == HoldBook::End::expired) {
      return Rejection{RejectReason::holdExpired, "hold " + std::to_string(id) + " expired (seq " +
                                                      std::to_string(ended->seq) + ")"};
    }
    const char* how = ended->how == HoldBook::End::confirmed ? "confirmed" : "released";
    return Rejection{RejectReason::unknownHold, "hold " + std::to_string(id) + " was " + how +
                                                    " (seq " + std::to_string(ended->seq) + ")"};
  }
  return Rejection{RejectReason::unknownHold, "no live hold " + std::to_string(id)};
}

void Engine::expireDue() {
  if (holds_.liveCount() == 0) return;
  auto next = holds_.nextDeadline();
  if (!next) return;
  int64_t at = now();
  if (*next > at) return;
  // Within the in-flight bound, and a batch at a time: after a long stop
  // many holds may be due at once, and commands go on between batches.
  size_t room = inFlight_ < config_.maxInFlight ? config_.maxInFlight - inFlight_ : 0;
  room = std::min(room, kExpiriesPerCommit);
  holds_.takeDue(at, room, [this](HoldId id, HoldBook::Live& live) {
    // Sequenced like a command: it goes through the customer's shard, in
    // order with the commands about the hold, and only the event it
    // produces (HoldExpired) changes anything. No gate, no reply.
    start(Command{CommandId{}, ExpireHold{id, live.customer, live.product}}, 0, false, true);
  });
}

int Engine::msUntilNextExpiry() {
  auto next = holds_.nextDeadline();
  if (!next) return -1;
  int64_t left = *next - now();
  // Due but held back by the in-flight bound: outcomes wake the loop, and
  // this looks again soon after.
  if (left <= 0) return inFlight_ >= config_.maxInFlight ? 1 : 0;
  int64_t ms = (left + 999'999) / 1'000'000;
  return static_cast<int>(std::min<int64_t>(ms, 60'000));
}

void Engine::stage(unsigned shard, ShardTask task) {
  staged_[shard].push_back(std::move(task));
  anyStaged_ = true;
}

void Engine::dispatch(unsigned shard, ShardTask task) {
  if (!barrier_) {
    stage(shard, std::move(task));
    return;
  }
  deferred_[shard].push_back(std::move(task));
  ++deferredOps_;
}

void Engine::checkpoint() {
  // Nothing is in flight at a shard: every operation admitted before the
  // barrier has published its event, and the stock of failed buys and of
  // returns was staged back ahead of this task. So each shard's aggregates
  // at this task are the fold of the log up to its head.
  auto job = std::make_unique<SnapshotWriter::Job>();
  Seq seq = log_.headSeq();
  // The journal must keep what rebuilds the retention and the dedupe window
  // as they are now: what they hold, not what they could hold (a retention
  // raised across a restart holds no more than the journal had).
  Seq replayFrom = log_.oldestSeq();
  if (Seq oldest = dedupe_.oldestSeq(); oldest != 0) replayFrom = std::min(replayFrom, oldest);
  job->info = SnapshotInfo{
      .seq = seq, .serverId = serverId_, .replayFrom = replayFrom, .nextHoldId = holds_.nextId()};
  job->parts.resize(shards_.size());
  for (unsigned k = 0; k < shards_.size(); ++k) {
    job->futures.push_back(job->parts[k].get_future());
    stage(k, ShardTask{.step = Step::checkpoint, .partOut = &job->parts[k]});
  }
  for (unsigned k = 0; k < shards_.size(); ++k) {
    for (auto& task : deferred_[k]) stage(k, std::move(task));
    deferred_[k].clear();
  }
  deferredOps_ = 0;
  barrier_ = false;
  nextSnapshotAt_ = seq + config_.snapshots->config().every;
  config_.snapshots->submit(std::move(job));
}

void Engine::count(const EventBody& body, bool recovered) {
  if (std::holds_alternative<CustomerCreated>(body)) {
    ++customers_;
  } else if (const auto* rejected = std::get_if<OperationRejected>(&body); rejected && !recovered) {
    ++rejectedBy_[std::min<size_t>(static_cast<size_t>(rejected->reason), rejectedBy_.size() - 1)];
  }
}

void Engine::serveStats(const Command& command, uint64_t tag) {
  ShopStats& s = scratchStats_;
  s.version = config_.version;
  s.serverId = serverId_;
  s.uptimeMs = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - started_)
                                         .count());
  s.headSeq = log_.headSeq();
  s.customers = customers_;
  s.products = stockBySeq_.size();
  s.inFlight = inFlight_;
  s.commandsPerSecond = 0;
  if (!receivedBySecond_.empty()) {
    auto [since, before] = receivedBySecond_.front();
    int64_t seconds = coarseSeconds() - since;
    if (seconds > 0) {
      s.commandsPerSecond =
          static_cast<double>(commandsReceived_ - before) / static_cast<double>(seconds);
    }
  }
  s.rejections.clear();
  for (size_t r = 0; r < rejectedBy_.size(); ++r) {
    if (rejectedBy_[r] != 0)
      s.rejections.emplace_back(static_cast<RejectReason>(r), rejectedBy_[r]);
  }
  s.dedupeSize = dedupe_.size();
  s.dedupeCapacity = dedupe_.capacity();
  s.logSize = log_.size();
  s.logCapacity = log_.retention();
  s.rssBytes = residentBytes();
  s.liveHolds = holds_.liveCount();
  replies_.reply(tag,
                 ReplyView{.commandId = command.id, .status = ReplyStatus::stats, .stats = &s});
}

void Engine::commit() {
  // Once a second: where the count of commands received stood, for the rate.
  if (int64_t now = coarseSeconds();
      receivedBySecond_.empty() || receivedBySecond_.back().first != now) {
    receivedBySecond_.emplace_back(now, commandsReceived_);
    while (receivedBySecond_.size() > 11) receivedBySecond_.pop_front();
  }
  expireDue();
  if (barrier_ && inFlight_ == deferredOps_) checkpoint();
  if (anyStaged_) {
    for (size_t k = 0; k < staged_.size(); ++k) {
      if (!staged_[k].empty()) shards_[k]->submitBulk(staged_[k]);
    }
    anyStaged_ = false;
  }
  events_.commit();
}

size_t Engine::poll() {
  assertOwner();
  size_t total = history_ && history_->pending() > 0 ? serveHistory() : 0;
  for (;;) {
    size_t n = outbox_.try_dequeue_bulk(outboxToken_, drained_.begin(), drained_.size());
    // Completions insert into the dedupe index: start those loads together.
    for (size_t i = 0; i < n; ++i) prefetch(ops_[drained_[i].op]->command);
    for (size_t i = 0; i < n; ++i) {
      onOutcome(drained_[i]);
      drained_[i].result = std::monostate{};  // free its strings now, not at the next reuse
    }
    total += n;
    if (n < drained_.size()) return total;
  }
}

bool Engine::prepareToSleep() {
  commit();
  wakeup_.arm();
  // Outcomes enqueued before the arm took effect did not notify: look.
  if (outbox_.size_approx() == 0 && (!history_ || !history_->ready())) return true;
  wakeup_.disarm();
  return false;
}

void Engine::wokeUp(bool wakeFdReadable) {
  wakeup_.disarm();
  if (wakeFdReadable) wakeup_.clear();
}

size_t Engine::wait(int timeoutMs) {
  commit();
  size_t n = poll();
  if (n == 0) {
    bool readable = prepareToSleep() && wakeup_.wait(timeoutMs);
    wokeUp(readable);
    n = poll();
  }
  commit();
  return n;
}

void Engine::drain() {
  while ((inFlight_ > 0 || (history_ && history_->pending() > 0)) && failure().empty()) wait(-1);
  commit();
}

std::string Engine::failure() const {
  for (const auto& shard : shards_) {
    if (shard->failed()) return "shard " + std::to_string(shard->index()) + ": " + shard->failure();
  }
  return {};
}

void Engine::onOutcome(ShardOutcome& outcome) {
  Op& op = *ops_[outcome.op];
  const Command& cmd = op.command;
  saga::Next next = saga::next(op.step, outcome);
  switch (next) {
    case saga::Next::debit:
      op.step = Step::debit;
      stage(shardOfCustomer(cmd.customer()), ShardTask{.step = Step::debit,
                                                       .op = outcome.op,
                                                       .command = &cmd,
                                                       .unitPrice = outcome.unitPrice});
      return;
    case saga::Next::releaseThenFinish: {
      // The product shard sees this before any task the ingress sends it later.
      if (const auto* hold = std::get_if<HoldProduct>(&cmd.body)) {
        stage(shardOfProduct(hold->product),
              ShardTask{.step = Step::unhold, .key = hold->product, .quantity = hold->quantity});
        break;
      }
      const auto& buy = std::get<BuyProduct>(cmd.body);
      stage(shardOfProduct(buy.product),
            ShardTask{.step = Step::release, .key = buy.product, .quantity = buy.quantity});
      break;
    }
    case saga::Next::unholdThenFinish:
    case saga::Next::holdSoldThenFinish: {
      // HoldConfirmed, HoldReleased or HoldExpired: each names the product
      // and the units.
      auto [product, quantity] = std::visit(
          [](const auto& e) -> std::pair<std::string, Quantity> {
            if constexpr (requires { e.holdId; }) {
              return {e.product, e.quantity};
            } else {
              return {};
            }
          },
          std::get<EventBody>(outcome.result));
      unsigned shard = shardOfProduct(product);
      stage(shard,
            ShardTask{.step = next == saga::Next::unholdThenFinish ? Step::unhold : Step::holdSold,
                      .key = std::move(product),
                      .quantity = quantity});
      break;
    }
    case saga::Next::stockBackThenFinish: {
      const auto& returned = std::get<ProductReturned>(std::get<EventBody>(outcome.result));
      stage(shardOfProduct(returned.product),
            ShardTask{
                .step = Step::stockBack, .key = returned.product, .quantity = returned.quantity});
      break;
    }
    case saga::Next::finish:
      break;
  }

  if (op.internal) {
    // An expiry: its event is published like any other; one that found the
    // hold already ended has nothing to say; one that failed is tried again.
    if (auto* body = std::get_if<EventBody>(&outcome.result)) {
      publish(cmd.id, std::move(*body), outcome.encoded);
    } else if (auto* rejection = std::get_if<Rejection>(&outcome.result)) {
      HoldId id = std::get<ExpireHold>(cmd.body).holdId;
      logLine("engine", "expiring hold %llu failed (%s); it is tried again in 1 s",
              static_cast<unsigned long long>(id), rejection->detail.c_str());
      holds_.retryExpiry(id, now() + 1'000'000'000);
    }
    finish(outcome.op, ReplyView{}, {});
    return;
  }
  if (auto* rejection = std::get_if<Rejection>(&outcome.result)) {
    if (rejection->reason == RejectReason::unknownHold) {
      // The hold ended while this command was on its way (the events that
      // ended it are published by now): say how.
      HoldId id = 0;
      if (const auto* c = std::get_if<ConfirmHold>(&cmd.body)) id = c->holdId;
      if (const auto* r = std::get_if<ReleaseHold>(&cmd.body)) id = r->holdId;
      if (id != 0 && holds_.ended(id)) *rejection = endedHold(id);
    }
    ReplyView reply = reject(cmd, rejection->reason, std::move(rejection->detail));
    finish(outcome.op, reply, {reply.seq, ReplyStatus::rejected, reply.reason});
  } else if (auto* body = std::get_if<EventBody>(&outcome.result)) {
    ReplyView reply{.commandId = cmd.id, .status = ReplyStatus::accepted};
    reply.event = publish(cmd.id, std::move(*body), outcome.encoded);
    reply.seq = scratchEvent_.seq;
    finish(outcome.op, reply, {reply.seq, ReplyStatus::accepted});
  } else if (auto* view = std::get_if<CustomerView>(&outcome.result)) {
    finish(outcome.op,
           ReplyView{.commandId = cmd.id, .status = ReplyStatus::customer, .customer = view}, {});
  } else {
    SHOP_CHECK(false, "shard outcome without a result for op %u", outcome.op);
  }
}

void Engine::finish(uint32_t index, const ReplyView& reply, const DedupeOutcome& outcome) {
  Op& op = *ops_[index];
  if (op.gated) gate_.release(op.command.customer());
  if (!isQuery(op.command.kind()) && !op.internal) {
    if (reply.status == ReplyStatus::rejected && !remembered(reply.reason)) {
      dedupe_.forget(op.command.id);
    } else {
      dedupe_.complete(op.command.id, outcome);
    }
  }
  --inFlight_;
  for (uint64_t tag : op.tags) replies_.reply(tag, reply);
  op.tags.clear();
  freeOps_.push_back(index);
}

void Engine::recover(kj::ArrayPtr<const capnp::word> message) {
  assertOwner();
  Event event = decodeEvent(message);
  Seq expected = log_.headSeq() + 1;
  if (event.seq != expected) {
    throw std::runtime_error("the record holds seq " + std::to_string(event.seq) + " where seq " +
                             std::to_string(expected) + " belongs");
  }
  auto stored = log_.append(message.size());
  std::copy(message.begin(), message.end(), stored.begin());
  // Up to the snapshot's seq, its aggregates already hold the event. The
  // hold book takes every event in order: a hold that ended by the cut ends
  // here too, and one live at the cut is live in the snapshot as well.
  const bool folded = event.seq <= restoredSeq_;
  holds_.onEvent(event.seq, event.body);
  if (!folded) {
    foldStock(event.body);
    count(event.body, true);
  }

  // The window as the live run left it: the same outcomes, remembered in
  // the same (seq) order, so the same ones were evicted. A forbidden
  // rejection came from refuse(), which remembers nothing.
  if (const auto* rejected = std::get_if<OperationRejected>(&event.body)) {
    if (remembered(rejected->reason) && rejected->reason != RejectReason::forbidden &&
        dedupe_.find(event.commandId).kind == DedupeWindow::Hit::Kind::absent) {
      dedupe_.remember(event.commandId, {event.seq, ReplyStatus::rejected, rejected->reason});
    }
    return;  // changes no aggregate
  }
  // An expiry was no client's command: the live run remembered nothing.
  if (!std::holds_alternative<HoldExpired>(event.body) &&
      dedupe_.find(event.commandId).kind == DedupeWindow::Hit::Kind::absent) {
    dedupe_.remember(event.commandId, {event.seq, ReplyStatus::accepted});
  }

  if (folded) return;
  if (recovering_.empty()) recovering_.resize(shards_.size());
  if (auto c = event.customer(); !c.empty()) {
    auto& customers = recovering_[shardOfCustomer(c)].customers;
    auto it = customers.find(c);
    if (it == customers.end()) it = customers.emplace(std::string(c), Customer{}).first;
    applyToCustomer(it->second, event.body);
  }
  if (auto p = event.product(); !p.empty()) {
    auto& products = recovering_[shardOfProduct(p)].products;
    auto it = products.find(p);
    if (it == products.end()) it = products.emplace(std::string(p), Product{}).first;
    applyToProduct(it->second, event.body);
  }
}

SnapshotInfo Engine::restoreSnapshot(const std::string& path) {
  assertOwner();
  SHOP_CHECK(log_.headSeq() == 0 && recovering_.empty(), "restoreSnapshot after recover()");
  // Into a copy first: a snapshot that fails to read leaves nothing behind.
  struct Into : SnapshotVisitor {
    Engine& engine;
    std::vector<ShardState> shards;
    decltype(Engine::stockBySeq_) stock;
    HoldBook holds;
    explicit Into(Engine& e) : engine(e), shards(e.shards_.size()) {}
    void customer(std::string_view id, Customer&& c) override {
      for (const auto& h : c.holds) holds.addLive(h.holdId, id, h.product, h.expiresAtNs);
      auto& map = shards[engine.shardOfCustomer(id)].customers;
      if (!map.emplace(std::string(id), std::move(c)).second) {
        throw SnapshotCorrupt("customer " + displayId(id) + " appears twice");
      }
    }
    void product(std::string_view id, Product&& p) override {
      if (!stock.emplace(std::string(id), p.stock).second) {
        throw SnapshotCorrupt("product " + displayId(id) + " appears twice");
      }
      shards[engine.shardOfProduct(id)].products.emplace(std::string(id), std::move(p));
    }
  } into(*this);
  SnapshotInfo info = readSnapshotFile(path, &into);
  recovering_ = std::move(into.shards);
  stockBySeq_ = std::move(into.stock);
  holds_ = std::move(into.holds);
  holds_.reserveBelow(info.nextHoldId);
  restoredSeq_ = info.seq;
  customers_ = info.customers;
  log_.startAfter(info.replayFrom - 1);
  if (nextSnapshotAt_ != 0) nextSnapshotAt_ = info.seq + config_.snapshots->config().every;
  return info;
}

void Engine::finishRecovery(uint64_t serverId) {
  assertOwner();
  if (serverId != 0) serverId_ = serverId;
  if (recovering_.empty()) return;
  std::vector<std::promise<void>> installed(shards_.size());
  for (unsigned k = 0; k < shards_.size(); ++k) {
    stage(k,
          ShardTask{.step = Step::install, .install = &recovering_[k], .installed = &installed[k]});
  }
  commit();
  for (auto& done : installed) done.get_future().get();
  recovering_.clear();
  recovering_.shrink_to_fit();
}

void Engine::holdShard(unsigned k) {
  SHOP_CHECK(k < shards_.size(), "no shard %u", k);
  stage(k, ShardTask{.step = Step::hold});
  commit();
}

void Engine::injectShardFailure(unsigned k) {
  SHOP_CHECK(k < shards_.size(), "no shard %u", k);
  stage(k, ShardTask{.step = Step::fail});
  commit();
}

void Engine::resumeShard(unsigned k) {
  shards_.at(k)->resume();
}

void Engine::injectCustomerFault(std::string_view customer) {
  stage(shardOfCustomer(customer),
        ShardTask{.step = Step::armFault, .key = aggregateKey(AggregateKind::customer, customer)});
  commit();
}

void Engine::injectProductFault(std::string_view product) {
  stage(shardOfProduct(product),
        ShardTask{.step = Step::armFault, .key = aggregateKey(AggregateKind::product, product)});
  commit();
}

ShopState Engine::snapshot() {
  assertOwner();
  std::vector<std::promise<ShopState>> promises(shards_.size());
  for (unsigned k = 0; k < shards_.size(); ++k) {
    stage(k, ShardTask{.step = Step::snapshot, .snapshotOut = &promises[k]});
  }
  commit();
  ShopState all;
  for (auto& p : promises) {
    ShopState part = p.get_future().get();
    all.customers.merge(part.customers);
    all.products.merge(part.products);
  }
  return all;
}

}  // namespace shop
