#include "core/engine.h"

#include <cassert>
#include <chrono>
#include <future>
#include <stdexcept>

#include "core/validation.h"

namespace shop {

unsigned defaultShardCount() {
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 1 ? hw - 1 : 1;
}

// One admitted operation, from admission to final outcome.
struct Engine::Op {
  Command command;
  std::vector<uint64_t> tags;  // the request and any retries attached to it
  bool gated = false;          // holds a slot of command.customer()
  bool reserved = false;       // buy: stock is reserved at the product
};

namespace {
constexpr size_t kDrainBatch = 256;

size_t shardIndex(char kind, std::string_view id, size_t shards) {
  size_t h = std::hash<std::string_view>{}(id);
  if (kind == 'p') h = (h ^ 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
  return (h ^ (h >> 31)) % shards;
}

// Transient outcomes are not remembered: the command was not applied, so a
// retry is a new attempt rather than a duplicate.
bool rememberedByDedupe(const Reply& reply) {
  const auto* r = reply.rejection();
  return !r || (r->reason != RejectReason::tooManyPending &&
                r->reason != RejectReason::internalError);
}

bool isQuery(CommandKind kind) {
  return kind == CommandKind::getCustomer || kind == CommandKind::readEvents;
}
}  // namespace

Engine::Engine(const EngineConfig& config, EngineListener& listener)
    : config_(config),
      listener_(listener),
      owner_(std::this_thread::get_id()),
      gate_(config.maxPending),
      dedupe_(config.dedupeWindow),
      log_(config.retention),
      outboxToken_(outbox_) {
  if (config_.shards == 0) throw std::invalid_argument("EngineConfig.shards must be >= 1");
  drained_.resize(kDrainBatch);
  shards_.reserve(config_.shards);
  for (unsigned k = 0; k < config_.shards; ++k) {
    shards_.push_back(std::make_unique<Shard>(k, outbox_, wakeup_));
  }
}

Engine::~Engine() { shards_.clear(); }

void Engine::assertOwner() const {
  assert(std::this_thread::get_id() == owner_ && "Engine used off its ingress thread");
}

unsigned Engine::shardOfCustomer(std::string_view id) const {
  return static_cast<unsigned>(shardIndex('c', id, shards_.size()));
}
unsigned Engine::shardOfProduct(std::string_view id) const {
  return static_cast<unsigned>(shardIndex('p', id, shards_.size()));
}

const Event& Engine::publish(const CommandId& id, EventBody body) {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  const Event& stored = log_.append(
      Event{0, std::chrono::duration_cast<std::chrono::nanoseconds>(now).count(), id,
            std::move(body)});
  listener_.onEvent(stored);
  return stored;
}

Reply Engine::rejectNow(const Command& command, Rejection rejection) {
  OperationRejected event{rejection.reason, command.kind(), std::string(command.customer()),
                          std::string(command.product()), std::move(rejection.detail)};
  Reply reply{command.id, ReplyStatus::rejected, publish(command.id, std::move(event))};
  return reply;
}

void Engine::serveRead(const Command& command, uint64_t tag) {
  const auto& read = std::get<ReadEvents>(command.body);
  Seq oldest = log_.oldestSeq();
  if (read.fromSeq != 0 && read.fromSeq < oldest) {
    Reply reply = rejectNow(command, {RejectReason::retentionExceeded,
                                      "seq " + std::to_string(read.fromSeq) +
                                          " is no longer retained; the oldest is " +
                                          std::to_string(oldest)});
    reply.oldestSeq = log_.oldestSeq();
    listener_.onReply(tag, reply);
    return;
  }
  uint32_t limit = config_.readPageLimit;
  if (read.maxCount != 0 && read.maxCount < limit) limit = read.maxCount;
  Reply reply{command.id, ReplyStatus::events};
  reply.page.events = log_.read(read.fromSeq == 0 ? oldest : read.fromSeq, limit);
  reply.page.headSeq = log_.headSeq();
  listener_.onReply(tag, reply);
}

void Engine::submit(Command command, uint64_t tag) {
  assertOwner();
  CommandKind kind = command.kind();
  if (kind == CommandKind::readEvents) {
    serveRead(command, tag);
    return;
  }
  // Queries are answered fresh each time; only mutations are deduplicated.
  if (!isQuery(kind)) {
    if (const auto* seen = dedupe_.find(command.id)) {
      if (seen->op != DedupeWindow::kNoOp) {
        ops_[seen->op]->tags.push_back(tag);  // a retry of a command in flight
      } else {
        listener_.onReply(tag, seen->reply);
      }
      return;
    }
  }
  if (auto invalid = validate(command)) {
    Reply reply = rejectNow(command, std::move(*invalid));
    if (!isQuery(kind)) {
      dedupe_.begin(command.id, DedupeWindow::kNoOp);
      dedupe_.complete(command.id, reply, true);
    }
    listener_.onReply(tag, reply);
    return;
  }
  std::string_view customer = command.customer();
  if (!customer.empty() && !gate_.tryAdmit(customer)) {
    listener_.onReply(
        tag, rejectNow(command, {RejectReason::tooManyPending,
                                 "customer '" + std::string(customer) + "' already has " +
                                     std::to_string(gate_.maxPending()) +
                                     " operations pending"}));
    return;
  }

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
  op.tags.assign(1, tag);
  op.gated = !customer.empty();
  op.reserved = false;
  ++inFlight_;
  if (!isQuery(kind)) dedupe_.begin(op.command.id, index);
  // A buy needs two steps only when its product and customer live on
  // different shards; on one shard it is decided in a single step.
  bool crossShard = kind == CommandKind::buyProduct &&
                    shardOfProduct(op.command.product()) != shardOfCustomer(op.command.customer());
  dispatch(index, crossShard ? Step::reserve : Step::execute);
}

void Engine::dispatch(uint32_t index, Step step) {
  const Command& cmd = ops_[index]->command;
  CommandKind kind = cmd.kind();
  bool atProduct =
      step == Step::reserve || kind == CommandKind::addProduct || kind == CommandKind::restock;
  unsigned shard = atProduct ? shardOfProduct(cmd.product()) : shardOfCustomer(cmd.customer());
  shards_[shard]->submit(ShardTask{.step = step, .op = index, .command = &cmd});
}

size_t Engine::poll() {
  assertOwner();
  size_t total = 0;
  for (;;) {
    size_t n = outbox_.try_dequeue_bulk(outboxToken_, drained_.begin(), drained_.size());
    for (size_t i = 0; i < n; ++i) onOutcome(drained_[i]);
    total += n;
    if (n < drained_.size()) return total;
  }
}

bool Engine::prepareToSleep() {
  wakeup_.arm();
  // Outcomes enqueued before the arm took effect did not notify: look.
  if (outbox_.size_approx() == 0) return true;
  wakeup_.disarm();
  return false;
}

void Engine::wokeUp(bool wakeFdReadable) {
  wakeup_.disarm();
  if (wakeFdReadable) wakeup_.clear();
}

size_t Engine::wait(int timeoutMs) {
  size_t n = poll();
  if (n > 0) return n;
  bool readable = prepareToSleep() && wakeup_.wait(timeoutMs);
  wokeUp(readable);
  return poll();
}

void Engine::drain() {
  while (inFlight_ > 0) wait(-1);
}

void Engine::onOutcome(ShardOutcome& outcome) {
  Op& op = *ops_[outcome.op];
  if (outcome.reserved) {
    op.reserved = true;
    shards_[shardOfCustomer(op.command.customer())]->submit(ShardTask{
        .step = Step::debit, .op = outcome.op, .command = &op.command,
        .unitPrice = outcome.unitPrice});
    return;
  }
  const Command& cmd = op.command;
  Reply reply{cmd.id, ReplyStatus::accepted};
  if (auto* rejection = std::get_if<Rejection>(&outcome.result)) {
    if (op.reserved) {
      // The debit failed: the reserved units go back. The product shard sees
      // this before any task the ingress sends it later.
      const auto& buy = std::get<BuyProduct>(cmd.body);
      shards_[shardOfProduct(buy.product)]->submit(
          ShardTask{.step = Step::release, .key = buy.product, .quantity = buy.quantity});
    }
    reply = rejectNow(cmd, std::move(*rejection));
  } else if (auto* body = std::get_if<EventBody>(&outcome.result)) {
    if (auto* returned = std::get_if<ProductReturned>(body)) {
      shards_[shardOfProduct(returned->product)]->submit(ShardTask{
          .step = Step::stockBack, .key = returned->product, .quantity = returned->quantity});
    }
    reply.event = publish(cmd.id, std::move(*body));
  } else if (auto* view = std::get_if<CustomerView>(&outcome.result)) {
    reply.status = ReplyStatus::customer;
    reply.customer = std::move(*view);
  } else {
    throw std::logic_error("shard outcome without a result");
  }
  finish(op, std::move(reply));
  freeOps_.push_back(outcome.op);
}

void Engine::finish(Op& op, Reply reply) {
  if (op.gated) gate_.release(op.command.customer());
  if (!isQuery(op.command.kind())) {
    dedupe_.complete(op.command.id, reply, rememberedByDedupe(reply));
  }
  --inFlight_;
  for (uint64_t tag : op.tags) listener_.onReply(tag, reply);
  op.tags.clear();
}

void Engine::holdShard(unsigned k) { shards_.at(k)->submit(ShardTask{.step = Step::hold}); }

void Engine::resumeShard(unsigned k) { shards_.at(k)->resume(); }

void Engine::injectCustomerFault(std::string_view customer) {
  shards_[shardOfCustomer(customer)]->submit(
      ShardTask{.step = Step::armFault, .key = customerKey(customer)});
}

void Engine::injectProductFault(std::string_view product) {
  shards_[shardOfProduct(product)]->submit(
      ShardTask{.step = Step::armFault, .key = productKey(product)});
}

ShopState Engine::snapshot() {
  assertOwner();
  std::vector<std::promise<ShopState>> promises(shards_.size());
  for (size_t k = 0; k < shards_.size(); ++k) {
    shards_[k]->submit(ShardTask{.step = Step::snapshot, .snapshotOut = &promises[k]});
  }
  ShopState all;
  for (auto& p : promises) {
    ShopState part = p.get_future().get();
    all.customers.merge(part.customers);
    all.products.merge(part.products);
  }
  return all;
}

}  // namespace shop
