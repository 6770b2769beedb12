#include "core/shard.h"

#include <pthread.h>

#include <stdexcept>
#include "core/check.h"
#include "core/log.h"

namespace shop {

namespace {
constexpr size_t kBatch = 64;

template <typename T>
T* findIn(auto& map, std::string_view id) {
  auto it = map.find(id);
  return it == map.end() ? nullptr : &it->second;
}
}  // namespace

Shard::Shard(unsigned index, OutcomeQueue& outbox, Wakeup& wakeup, size_t checkpointSlice,
             size_t maxHolds)
    : index_(index),
      checkpointSlice_(checkpointSlice),
      maxHolds_(maxHolds),
      outbox_(outbox),
      wakeup_(wakeup),
      inboxToken_(inbox_),
      outboxToken_(outbox_),
      thread_([this] { run(); }) {}

Shard::~Shard() {
  if (thread_.joinable()) {
    submit(ShardTask{.step = Step::stop});
    resume();  // in case a test left the shard held
    thread_.join();
  }
}

void Shard::submit(ShardTask task) {
  inbox_.enqueue(inboxToken_, std::move(task));
}

void Shard::submitBulk(std::vector<ShardTask>& tasks) {
  inbox_.enqueue_bulk(inboxToken_, std::make_move_iterator(tasks.begin()), tasks.size());
  tasks.clear();
}

void Shard::resume() {
  resume_.signal();
}

void Shard::run() {
  pthread_setname_np(pthread_self(), ("shop-shard-" + std::to_string(index_)).c_str());
  moodycamel::ConsumerToken token(inbox_);
  ShardTask batch[kBatch];
  pendingOut_.reserve(kBatch);
  try {
    for (;;) {
      // While a checkpoint is open the shard does not block: it encodes a
      // slice whenever no task waits.
      size_t n = checkpoint_ ? inbox_.try_dequeue_bulk(token, batch, kBatch)
                             : inbox_.wait_dequeue_bulk(token, batch, kBatch);
      bool stop = false;
      for (size_t i = 0; i < n; ++i) {
        if (!stop) stop = handle(batch[i]);
        batch[i] = ShardTask{};  // drop borrowed pointers and strings now
      }
      flush();
      if (stop) {
        if (checkpoint_) checkpointSlice(SIZE_MAX);  // the writer is waiting for it
        return;
      }
      if (checkpoint_) checkpointSlice(checkpointSlice_);
    }
  } catch (const std::exception& e) {
    fail(e.what());
  } catch (...) {
    fail("an exception that is not a std::exception");
  }
}

void Shard::fail(const char* what) {
  // Outside a command's supervision nothing says the aggregates are intact,
  // so the shard stops deciding. What it decided before the failure is
  // delivered; the engine sees failed() and the server stops.
  logLine("shard", "%u: fatal: %s; this shard stops", index_, what);
  try {
    flush();
  } catch (...) {  // the outbox could not take them: they are lost with the shard
  }
  failure_ = what;
  failed_.store(true, std::memory_order_release);
  wakeup_.notify();
}

// GCC 12 reports a false -Wstringop-overflow inside moodycamel's bulk enqueue
// (an atomic load it cannot prove in bounds after inlining); GCC 13 does not.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
void Shard::flush() {
  if (pendingOut_.empty()) return;
  outbox_.enqueue_bulk(outboxToken_, std::make_move_iterator(pendingOut_.begin()),
                       pendingOut_.size());
  pendingOut_.clear();
  wakeup_.notifyIfArmed();
}
#pragma GCC diagnostic pop

bool Shard::handle(ShardTask& task) {
  switch (task.step) {
    case Step::stop:
      return true;
    case Step::hold:
      flush();  // what was decided before the hold goes out now
      resume_.wait();
      return false;
    case Step::armFault:
      armedFaults_.insert(std::move(task.key));
      return false;
    case Step::fail:
      SHOP_CHECK(false, "shard %u: failure injected by a test", index_);
    case Step::snapshot: {
      ShopState state;
      for (const auto& [id, c] : customers_) state.customers.emplace(id, c);
      for (const auto& [id, p] : products_) state.products.emplace(id, p);
      task.snapshotOut->set_value(std::move(state));
      return false;
    }
    case Step::checkpoint:
      beginCheckpoint(task.partOut);
      return false;
    case Step::install:
      customers_ = std::move(task.install->customers);
      products_ = std::move(task.install->products);
      indexAll();
      task.installed->set_value();
      return false;
    case Step::release:
    case Step::stockBack:
    case Step::unhold:
    case Step::holdSold: {
      // Each moves units of a product that reserved, sold or held them, so
      // it exists: a missing one is a bug, and it is reported, not skipped.
      auto* p = findIn<Product>(products_, task.key);
      SHOP_CHECK(p != nullptr, "shard %u: units back to a missing product (%zu-byte id)", index_,
                 task.key.size());
      keep(task.key, *p);
      if (task.step == Step::unhold) {
        p->held -= task.quantity;
        p->stock += task.quantity;
      } else if (task.step == Step::holdSold) {
        p->held -= task.quantity;
        p->sold += task.quantity;
      } else {
        p->stock += task.quantity;
        p->sold -= task.quantity;
      }
      return false;
    }
    case Step::execute:
    case Step::reserve:
    case Step::debit:
      break;
  }

  ShardOutcome& out = pendingOut_.emplace_back();
  out.op = task.op;
  try {
    decide(task, out);
  } catch (const std::exception& e) {
    // Supervision: decide() changes nothing until it applies the event, and
    // apply gives the strong exception guarantee. So the aggregate still
    // holds the fold of its committed events, and only this command fails.
    logLine("shard", "%u: internal error in %s, command %s: %s", index_,
            std::string(name(task.command->kind())).c_str(), task.command->id.toHex().c_str(),
            e.what());
    out.reserved = false;
    out.result = Rejection{RejectReason::internalError, std::string("internal error: ") + e.what()};
  }
  if (const auto* body = std::get_if<EventBody>(&out.result)) {
    // After the change is applied, so nothing here may fail the command: an
    // event not encoded here is encoded by the ingress (size 0).
    try {
      encoder_.preEncode(task.command->id, *body, out.encoded);
    } catch (const std::exception&) {
      out.encoded.size = 0;
    }
  }
  return false;
}

void Shard::throwIfArmed(AggregateKind kind, std::string_view id) {
  if (armedFaults_.empty()) return;  // the common case builds no key
  std::string key = aggregateKey(kind, id);
  if (armedFaults_.erase(key)) throw std::runtime_error("injected fault on " + key);
}

// The product a buy or hold can take its units from, or null after putting
// the rejection in `out`.
Product* Shard::reservable(std::string_view id, Quantity quantity, ShardOutcome& out) {
  auto* product = findIn<Product>(products_, id);
  throwIfArmed(AggregateKind::product, id);
  if (auto rejection = checkReserve(product, id, quantity)) {
    out.result = std::move(*rejection);
    return nullptr;
  }
  return product;
}

// Decides one command step and, when it succeeds, applies its event to a copy
// of the aggregate that then replaces the live one.
void Shard::decide(const ShardTask& task, ShardOutcome& out) {
  const Command& cmd = *task.command;

  // Applies `decision` to the aggregate `live` (null: create it in `map`).
  auto commit = [&](auto& map, auto* live, std::string_view id, Decision decision, auto applyFn,
                    AggregateKind kind) {
    if (auto* rejection = std::get_if<Rejection>(&decision)) {
      out.result = std::move(*rejection);
      return;
    }
    auto& event = std::get<EventBody>(decision);
    throwIfArmed(kind, id);  // test seam: a fault between deciding and applying
    // apply gives the strong exception guarantee (it allocates before it
    // changes anything), so the live aggregate is changed in place: no copy.
    if (live) {
      keep(id, *live);
      applyFn(*live, event);
    } else {
      typename std::decay_t<decltype(map)>::mapped_type created{};
      applyFn(created, event);
      if constexpr (std::is_same_v<decltype(created), Customer>) {
        addCustomer(std::string(id), std::move(created));
      } else {
        addProduct(std::string(id), std::move(created));
      }
    }
    out.result = std::move(event);
  };

  switch (cmd.kind()) {
    case CommandKind::createCustomer: {
      auto& c = std::get<CreateCustomer>(cmd.body);
      auto* live = findIn<Customer>(customers_, c.customer);
      commit(customers_, live, c.customer, decideCreate(live, c), applyToCustomer,
             AggregateKind::customer);
      return;
    }
    case CommandKind::deposit: {
      auto& c = std::get<Deposit>(cmd.body);
      auto* live = findIn<Customer>(customers_, c.customer);
      commit(customers_, live, c.customer, decideDeposit(live, c), applyToCustomer,
             AggregateKind::customer);
      return;
    }
    case CommandKind::returnProduct: {
      auto& c = std::get<ReturnProduct>(cmd.body);
      auto* live = findIn<Customer>(customers_, c.customer);
      commit(customers_, live, c.customer, decideReturn(live, c), applyToCustomer,
             AggregateKind::customer);
      return;
    }
    case CommandKind::getCustomer: {
      auto& c = std::get<GetCustomer>(cmd.body);
      throwIfArmed(AggregateKind::customer, c.customer);
      if (auto* live = findIn<Customer>(customers_, c.customer)) {
        out.result = live->view(c.customer);
      } else {
        out.result = Rejection{RejectReason::unknownCustomer, "no customer '" + c.customer + "'"};
      }
      return;
    }
    case CommandKind::buyProduct: {
      auto& c = std::get<BuyProduct>(cmd.body);
      if (task.step == Step::execute) {
        // Product and customer both live on this shard: reserve and debit in
        // one step. Stock moves only once the customer's change committed.
        Product* product = reservable(c.product, c.quantity, out);
        if (!product) return;
        keep(c.product, *product);  // may allocate: before the customer changes
        auto* live = findIn<Customer>(customers_, c.customer);
        commit(customers_, live, c.customer, decideDebit(live, c, product->price), applyToCustomer,
               AggregateKind::customer);
        if (std::holds_alternative<EventBody>(out.result)) {
          product->stock -= c.quantity;
          product->sold += c.quantity;
        }
        return;
      }
      if (task.step == Step::reserve) {
        Product* product = reservable(c.product, c.quantity, out);
        if (!product) return;
        keep(c.product, *product);
        product->stock -= c.quantity;
        product->sold += c.quantity;  // until released
        out.reserved = true;
        out.unitPrice = product->price;
        return;
      }
      auto* live = findIn<Customer>(customers_, c.customer);
      commit(customers_, live, c.customer, decideDebit(live, c, task.unitPrice), applyToCustomer,
             AggregateKind::customer);
      return;
    }
    case CommandKind::addProduct: {
      auto& c = std::get<AddProduct>(cmd.body);
      auto* live = findIn<Product>(products_, c.product);
      commit(products_, live, c.product, decideAdd(live, c), applyToProduct,
             AggregateKind::product);
      return;
    }
    case CommandKind::restock: {
      auto& c = std::get<Restock>(cmd.body);
      auto* live = findIn<Product>(products_, c.product);
      commit(products_, live, c.product, decideRestock(live, c), applyToProduct,
             AggregateKind::product);
      return;
    }
    case CommandKind::holdProduct: {
      auto& c = std::get<HoldProduct>(cmd.body);
      if (task.step != Step::debit) {
        // Reserve: the units leave the stock for the hold at once.
        Product* product = reservable(c.product, c.quantity, out);
        if (!product) return;
        if (task.step == Step::reserve) {
          keep(c.product, *product);
          product->stock -= c.quantity;
          product->held += c.quantity;  // until the hold ends, or its placing fails
          out.reserved = true;
          out.unitPrice = product->price;
          return;
        }
        // Both here: the units move once the customer's change committed.
        keep(c.product, *product);  // may allocate: before the customer changes
        auto* live = findIn<Customer>(customers_, c.customer);
        commit(customers_, live, c.customer, decidePlaceHold(live, c, product->price, maxHolds_),
               applyToCustomer, AggregateKind::customer);
        if (std::holds_alternative<EventBody>(out.result)) {
          product->stock -= c.quantity;
          product->held += c.quantity;
        }
        return;
      }
      auto* live = findIn<Customer>(customers_, c.customer);
      commit(customers_, live, c.customer, decidePlaceHold(live, c, task.unitPrice, maxHolds_),
             applyToCustomer, AggregateKind::customer);
      return;
    }
    case CommandKind::confirmHold: {
      auto& c = std::get<ConfirmHold>(cmd.body);
      auto* live = findIn<Customer>(customers_, c.customer);
      commit(customers_, live, c.customer, decideConfirm(live, c), applyToCustomer,
             AggregateKind::customer);
      return;
    }
    case CommandKind::releaseHold: {
      auto& c = std::get<ReleaseHold>(cmd.body);
      auto* live = findIn<Customer>(customers_, c.customer);
      commit(customers_, live, c.customer, decideRelease(live, c), applyToCustomer,
             AggregateKind::customer);
      return;
    }
    case CommandKind::expireHold: {
      auto& c = std::get<ExpireHold>(cmd.body);
      auto* live = findIn<Customer>(customers_, c.customer);
      // Nothing to do when the hold already ended: the result stays empty.
      if (auto expired = decideExpire(live, c)) {
        commit(customers_, live, c.customer, Decision{std::move(*expired)}, applyToCustomer,
               AggregateKind::customer);
      }
      return;
    }
    case CommandKind::readEvents:
    case CommandKind::getStats:
      break;
  }
  throw std::logic_error("command kind not handled by a shard");
}

Customer& Shard::addCustomer(std::string id, Customer customer) {
  // Created after the newest cut: no snapshot open now includes it.
  customer.snapshotEpoch = epoch_;
  auto it = customers_.emplace(std::move(id), std::move(customer)).first;
  customerOrder_.emplace_back(&it->first, &it->second);
  return it->second;
}

Product& Shard::addProduct(std::string id, Product product) {
  product.snapshotEpoch = epoch_;
  auto it = products_.emplace(std::move(id), std::move(product)).first;
  productOrder_.emplace_back(&it->first, &it->second);
  return it->second;
}

void Shard::indexAll() {
  customerOrder_.clear();
  productOrder_.clear();
  for (auto& [id, c] : customers_) {
    c.snapshotEpoch = epoch_;
    customerOrder_.emplace_back(&id, &c);
  }
  for (auto& [id, p] : products_) {
    p.snapshotEpoch = epoch_;
    productOrder_.emplace_back(&id, &p);
  }
}

void Shard::beginCheckpoint(std::promise<SnapshotPart>* out) {
  // Every operation before this task has finished (the engine saw to it),
  // so the aggregates now are the fold of the log up to the cut.
  SHOP_CHECK(!checkpoint_, "shard %u: a checkpoint while one is open", index_);
  checkpoint_ = std::make_unique<Checkpoint>();
  checkpoint_->out = out;
  checkpoint_->epoch = ++epoch_;
  checkpoint_->customers = customerOrder_.size();
  checkpoint_->products = productOrder_.size();
}

void Shard::keep(std::string_view id, Customer& customer) {
  if (!checkpoint_ || customer.snapshotEpoch == checkpoint_->epoch) return;
  auto& copy = checkpoint_->customerCopies.emplace_back(std::string(id), customer);
  checkpoint_->encoder.customer(copy.first, copy.second);
  customer.snapshotEpoch = checkpoint_->epoch;
}

void Shard::keep(std::string_view id, Product& product) {
  if (!checkpoint_ || product.snapshotEpoch == checkpoint_->epoch) return;
  auto& copy = checkpoint_->productCopies.emplace_back(std::string(id), product);
  checkpoint_->encoder.product(copy.first, copy.second);
  product.snapshotEpoch = checkpoint_->epoch;
}

void Shard::checkpointSlice(size_t budget) {
  Checkpoint& cp = *checkpoint_;
  for (; cp.customerAt < cp.customers && budget > 0; ++cp.customerAt, --budget) {
    auto [id, c] = customerOrder_[cp.customerAt];
    if (c->snapshotEpoch == cp.epoch) continue;  // kept before it changed
    cp.encoder.customer(*id, *c);
    c->snapshotEpoch = cp.epoch;
  }
  for (; cp.productAt < cp.products && budget > 0; ++cp.productAt, --budget) {
    auto [id, p] = productOrder_[cp.productAt];
    if (p->snapshotEpoch == cp.epoch) continue;
    cp.encoder.product(*id, *p);
    p->snapshotEpoch = cp.epoch;
  }
  // The encoder holds references: encode them before any task changes one.
  cp.encoder.endChunk();
  cp.customerCopies.clear();
  cp.productCopies.clear();
  if (cp.customerAt < cp.customers || cp.productAt < cp.products) return;
  cp.out->set_value(cp.encoder.finish());
  checkpoint_.reset();
}

}  // namespace shop
