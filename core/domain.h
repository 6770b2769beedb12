// Domain values: commands, events, rejections and replies as plain C++ values.
//
// These mirror schemas/shop.capnp one to one; core/event_codec and bus/codec
// translate between the two. Shards decide on these values, so a command
// costs no Cap'n Proto arena on the shard threads; the ingress encodes each
// event once, when it is sequenced.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace shop {

// Money is always an integer count of minor units (e.g. cents).
using Money = int64_t;
using Quantity = int64_t;
using Seq = uint64_t;

// Client-chosen idempotency key (a UUID's 16 bytes).
struct CommandId {
  std::array<uint8_t, 16> bytes{};

  bool operator==(const CommandId&) const = default;
  std::string toHex() const;
  // A fresh random id (uses a thread-local PRNG seeded from random_device).
  static CommandId random();
  // A deterministic id for tests and tools: `n` in the low bytes.
  static CommandId fromNumber(uint64_t hi, uint64_t lo);
};

struct CommandIdHash {
  size_t operator()(const CommandId& id) const noexcept;
};

// ---- commands -------------------------------------------------------------

enum class CommandKind : uint8_t {
  createCustomer,
  deposit,
  buyProduct,
  returnProduct,
  addProduct,
  restock,
  getCustomer,
  readEvents,
  getStats,
  holdProduct,
  confirmHold,
  releaseHold,
  // Internal: the engine's timer expires a hold. Never on the wire and never
  // rejected, so it never appears in an OperationRejected.
  expireHold,
};
std::string_view name(CommandKind kind);

struct CreateCustomer {
  std::string customer;
  Money initialBalance = 0;
};
struct Deposit {
  std::string customer;
  Money amount = 0;
};
struct BuyProduct {
  std::string customer;
  std::string product;
  Quantity quantity = 0;
};
struct ReturnProduct {
  std::string customer;
  std::string product;
  Quantity quantity = 0;
};
struct AddProduct {
  std::string product;
  Money price = 0;
  Quantity stock = 0;
};
struct Restock {
  std::string product;
  Quantity quantity = 0;
};
struct GetCustomer {
  std::string customer;
};
struct ReadEvents {
  Seq fromSeq = 0;        // inclusive; 0 means the oldest retained
  uint32_t maxCount = 0;  // 0 means the engine's page limit
};

struct GetStats {};

// A hold's id: assigned by the engine, never 0.
using HoldId = uint64_t;

struct HoldProduct {
  std::string customer;
  std::string product;
  Quantity quantity = 0;
  int64_t ttlMs = 0;
  // Filled in by the engine when it admits the command (never on the wire).
  HoldId holdId = 0;
  int64_t expiresAtNs = 0;
};
// Confirm, release and expire name only the hold; the engine fills in whose
// it is, from the holds it has published, when it admits the command.
struct ConfirmHold {
  HoldId holdId = 0;
  std::string customer;  // engine-filled
  std::string product;   // engine-filled
};
struct ReleaseHold {
  HoldId holdId = 0;
  std::string customer;  // engine-filled
  std::string product;   // engine-filled
};
struct ExpireHold {
  HoldId holdId = 0;
  std::string customer;
  std::string product;
};

// Alternative order matches CommandKind.
using CommandBody = std::variant<CreateCustomer, Deposit, BuyProduct, ReturnProduct, AddProduct,
                                 Restock, GetCustomer, ReadEvents, GetStats, HoldProduct,
                                 ConfirmHold, ReleaseHold, ExpireHold>;

struct Command {
  CommandId id;
  CommandBody body;

  CommandKind kind() const { return static_cast<CommandKind>(body.index()); }
  // The customer the command is addressed to, or empty.
  std::string_view customer() const;
  // The product the command names, or empty.
  std::string_view product() const;
};

// ---- events ---------------------------------------------------------------

enum class RejectReason : uint8_t {
  invalidId,
  invalidAmount,
  invalidQuantity,
  customerExists,
  unknownCustomer,
  productExists,
  unknownProduct,
  outOfStock,
  insufficientFunds,
  notOwned,
  overflow,
  tooManyPending,
  internalError,
  retentionExceeded,
  overloaded,
  forbidden,
  unknownHold,
  holdExpired,
  tooManyHolds,
  invalidTtl,
};
std::string_view name(RejectReason reason);

struct CustomerCreated {
  std::string customer;
  Money initialBalance = 0;
  bool operator==(const CustomerCreated&) const = default;
};
struct FundsDeposited {
  std::string customer;
  Money amount = 0;
  Money balance = 0;
  bool operator==(const FundsDeposited&) const = default;
};
struct ProductBought {
  std::string customer;
  std::string product;
  Quantity quantity = 0;
  Money unitPrice = 0;
  Money balance = 0;
  bool operator==(const ProductBought&) const = default;
};
struct ProductReturned {
  std::string customer;
  std::string product;
  Quantity quantity = 0;
  Money refund = 0;
  Money balance = 0;
  bool operator==(const ProductReturned&) const = default;
};
struct ProductAdded {
  std::string product;
  Money price = 0;
  Quantity stock = 0;
  bool operator==(const ProductAdded&) const = default;
};
struct ProductRestocked {
  std::string product;
  Quantity quantity = 0;
  Quantity stock = 0;
  bool operator==(const ProductRestocked&) const = default;
};
struct OperationRejected {
  RejectReason reason = RejectReason::internalError;
  CommandKind command = CommandKind::createCustomer;
  std::string customer;
  std::string product;
  std::string detail;
  bool operator==(const OperationRejected&) const = default;
};

struct ProductHeld {
  HoldId holdId = 0;
  std::string customer;
  std::string product;
  Quantity quantity = 0;
  Money unitPrice = 0;
  int64_t expiresAtNs = 0;
  bool operator==(const ProductHeld&) const = default;
};
// A purchase of held units: for the aggregates, a ProductBought that also
// ends the hold.
struct HoldConfirmed {
  HoldId holdId = 0;
  std::string customer;
  std::string product;
  Quantity quantity = 0;
  Money unitPrice = 0;
  Money balance = 0;
  bool operator==(const HoldConfirmed&) const = default;
};
struct HoldReleased {
  HoldId holdId = 0;
  std::string customer;
  std::string product;
  Quantity quantity = 0;
  bool operator==(const HoldReleased&) const = default;
};
// Carries a zero commandId: the engine's timer caused it, not a command.
struct HoldExpired {
  HoldId holdId = 0;
  std::string customer;
  std::string product;
  Quantity quantity = 0;
  bool operator==(const HoldExpired&) const = default;
};

using EventBody = std::variant<CustomerCreated, FundsDeposited, ProductBought, ProductReturned,
                               ProductAdded, ProductRestocked, OperationRejected, ProductHeld,
                               HoldConfirmed, HoldReleased, HoldExpired>;

struct Event {
  Seq seq = 0;
  int64_t timestampNs = 0;  // publication time, ns since the Unix epoch
  CommandId commandId;
  EventBody body;

  // The customer the event is about, or empty.
  std::string_view customer() const;
  // The product the event is about, or empty.
  std::string_view product() const;
};
std::string_view eventName(const EventBody& body);

// ---- replies --------------------------------------------------------------

struct Rejection {
  RejectReason reason = RejectReason::internalError;
  std::string detail;
};

struct Holding {
  std::string product;
  Quantity quantity = 0;
  Money paid = 0;  // total paid for the units still held
  bool operator==(const Holding&) const = default;
};

struct HoldView {
  HoldId holdId = 0;
  std::string product;
  Quantity quantity = 0;
  Money unitPrice = 0;
  int64_t expiresAtNs = 0;
  bool operator==(const HoldView&) const = default;
};

struct CustomerView {
  std::string customer;
  Money balance = 0;
  std::vector<Holding> holdings;
  std::vector<HoldView> holds;  // live, oldest first
  bool operator==(const CustomerView&) const = default;
};

// An event of a page that could not be decoded: a union member from a newer
// server, or a broken struct. Its seq could still be read.
struct SkippedEvent {
  Seq seq = 0;
  std::string why;
  bool operator==(const SkippedEvent&) const = default;
};

struct EventPage {
  std::vector<Event> events;
  Seq headSeq = 0;
  bool capped = false;    // the page stopped at its byte cap; read on from the last seq + 1
  uint64_t serverId = 0;  // the server's random id, chosen at its start; never 0 from a server
                          // that sends it. Seqs of two different ids are two streams.
  // Events the client could not decode, in seq order; they are not in
  // `events`. Filled by bus::fromWire, never sent (a server has none).
  std::vector<SkippedEvent> skipped;
};

// A server id as people see it in logs and messages: 16 hex digits.
std::string serverIdHex(uint64_t id);

// `retired`: a retry of a mutation accepted earlier, whose event has left
// the log's retention; the reply carries its seq, not the event.
enum class ReplyStatus : uint8_t { accepted, rejected, customer, events, retired, stats };

// What a server says about itself (GetStats).
struct ShopStats {
  std::string version;
  uint64_t serverId = 0;
  uint64_t uptimeMs = 0;
  Seq headSeq = 0;
  uint64_t customers = 0;
  uint64_t products = 0;
  uint64_t inFlight = 0;
  double commandsPerSecond = 0;                               // received, over the last 10 s
  std::vector<std::pair<RejectReason, uint64_t>> rejections;  // since the process started
  uint64_t dedupeSize = 0;
  uint64_t dedupeCapacity = 0;
  uint64_t logSize = 0;
  uint64_t logCapacity = 0;
  uint64_t rssBytes = 0;
  uint64_t liveHolds = 0;
  bool operator==(const ShopStats&) const = default;
};

// The one answer to one command. Mutations carry their event (with its seq);
// rejections carry the OperationRejected event that was published for them.
struct Reply {
  CommandId commandId;
  ReplyStatus status = ReplyStatus::accepted;
  std::optional<Event> event;            // accepted and rejected
  std::optional<CustomerView> customer;  // status == customer
  std::optional<ShopStats> stats;        // status == stats
  EventPage page;                        // status == events
  Seq oldestSeq = 0;                     // rejected with retentionExceeded; retired
  Seq seq = 0;                           // retired: the seq of the original event

  const OperationRejected* rejection() const;
};

}  // namespace shop

namespace shop {
// One readable line, e.g. `#3 productBought customer=alice product=apple quantity=1 ...`.
std::string describe(const Event& event);
}  // namespace shop
