# shop wire contract: commands in (ROUTER), replies back, events out (PUB).
#
# Compatibility rules (this file is public):
# - fields and union members are only ever added, with new ordinals;
# - a reader that meets a union member it does not know sees `which()` outside
#   its enum and must answer `malformed`, never crash;
# - money is an Int64 count of minor units (cents); never floating point;
# - quantities and amounts are signed so that a negative value from a buggy
#   client arrives as itself and is rejected with a reason, not wrapped.
#
# Every frame is one standard (unpacked) Cap'n Proto message, so
#   capnp decode schemas/shop.capnp Event < frame
# reads any event frame.

@0xb4ef06b0735ec39f;

using Cxx = import "/capnp/c++.capnp";
using Json = import "/capnp/compat/json.capnp";
$Cxx.namespace("shop::wire");

# Client-chosen idempotency key: exactly 16 bytes (a UUID).
using CommandId = Data;

struct Command {
  commandId @0 :CommandId $Json.hex;
  union {
    createCustomer @1 :CreateCustomer;
    deposit        @2 :Deposit;
    buyProduct     @3 :BuyProduct;
    returnProduct  @4 :ReturnProduct;
    addProduct     @5 :AddProduct;
    restock        @6 :Restock;
    getCustomer    @7 :GetCustomer;
    readEvents     @8 :ReadEvents;
    getStats       @9 :GetStats;
    holdProduct    @10 :HoldProduct;
    confirmHold    @11 :ConfirmHold;
    releaseHold    @12 :ReleaseHold;
  }
}

struct CreateCustomer {
  customer       @0 :Text;
  initialBalance @1 :Int64;   # minor units, >= 0
}

struct Deposit {
  customer @0 :Text;
  amount   @1 :Int64;         # minor units, > 0
}

struct BuyProduct {
  customer @0 :Text;
  product  @1 :Text;
  quantity @2 :Int64;         # >= 1
}

struct ReturnProduct {
  customer @0 :Text;
  product  @1 :Text;
  quantity @2 :Int64;         # >= 1
}

struct AddProduct {
  product @0 :Text;
  price   @1 :Int64;          # minor units per unit, > 0
  stock   @2 :Int64;          # >= 0
}

struct Restock {
  product  @0 :Text;
  quantity @1 :Int64;         # >= 1
}

struct GetCustomer {
  customer @0 :Text;
}

struct ReadEvents {
  fromSeq  @0 :UInt64;        # inclusive; 0 means "the oldest retained"
  maxCount @1 :UInt32;        # 0 means the server's page limit
}

# The server's figures (ShopStats). A query: nothing is published.
struct GetStats {}

# Reserves `quantity` units of `product` for `customer` until the hold is
# confirmed, released, or `ttlMs` passes; the reply's ProductHeld carries the
# holdId. The units leave the available stock at once, at today's price.
struct HoldProduct {
  customer @0 :Text;
  product  @1 :Text;
  quantity @2 :Int64;         # >= 1
  ttlMs    @3 :Int64;         # 1 .. the server's maximum (shopd --max-hold-ttl-ms)
}

# Turns a live hold into a purchase at the held price: the customer pays,
# the units become theirs (HoldConfirmed). Refused with insufficientFunds,
# the hold stays live until it expires.
struct ConfirmHold {
  holdId @0 :UInt64;
}

# Gives a live hold's units back to the stock (HoldReleased).
struct ReleaseHold {
  holdId @0 :UInt64;
}

# The kind of a command, carried in OperationRejected.
enum CommandKind {
  createCustomer @0;
  deposit        @1;
  buyProduct     @2;
  returnProduct  @3;
  addProduct     @4;
  restock        @5;
  getCustomer    @6;
  readEvents     @7;
  getStats       @8;
  holdProduct    @9;
  confirmHold    @10;
  releaseHold    @11;
}

enum RejectReason {
  invalidId          @0;    # empty, > 64 bytes, control character, '/', or not UTF-8
  invalidAmount      @1;    # money outside its allowed range
  invalidQuantity    @2;    # quantity outside its allowed range
  customerExists     @3;
  unknownCustomer    @4;
  productExists      @5;
  unknownProduct     @6;
  outOfStock         @7;
  insufficientFunds  @8;
  notOwned           @9;    # the customer holds fewer units than it returns
  overflow           @10;   # the result would not fit in Int64
  tooManyPending     @11;   # the customer already has maxPending operations pending
  internalError      @12;   # a fault while handling; the aggregate was restored
  retentionExceeded  @13;   # ReadEvents fromSeq is older than the retained log
  overloaded         @14;   # the server's global in-flight bound was reached; nothing was
                            # applied, retry later (the same commandId is safe)
  forbidden          @15;   # the client's key may not use this command (the catalog
                            # commands need an admin key)
  unknownHold        @16;   # no live hold has this id: never issued, or already confirmed
                            # or released
  holdExpired        @17;   # the hold's time ran out; its units went back to the stock
  tooManyHolds       @18;   # the customer already has the server's maximum of live holds
  invalidTtl         @19;   # ttlMs outside 1 .. the server's maximum
}

struct Event {
  seq         @0 :UInt64;   # global, gap-free, strictly increasing; starts at 1
  timestampNs @1 :Int64;    # publication time, ns since the Unix epoch
  commandId   @2 :CommandId $Json.hex;  # the command that caused it
  union {
    customerCreated   @3 :CustomerCreated;
    fundsDeposited    @4 :FundsDeposited;
    productBought     @5 :ProductBought;
    productReturned   @6 :ProductReturned;
    productAdded      @7 :ProductAdded;
    productRestocked  @8 :ProductRestocked;
    operationRejected @9 :OperationRejected;
    productHeld       @10 :ProductHeld;
    holdConfirmed     @11 :HoldConfirmed;
    holdReleased      @12 :HoldReleased;
    holdExpired       @13 :HoldExpired;
  }
}

struct CustomerCreated {
  customer       @0 :Text;
  initialBalance @1 :Int64;
}

struct FundsDeposited {
  customer @0 :Text;
  amount   @1 :Int64;
  balance  @2 :Int64;       # after the deposit
}

struct ProductBought {
  customer  @0 :Text;
  product   @1 :Text;
  quantity  @2 :Int64;
  unitPrice @3 :Int64;
  balance   @4 :Int64;      # the customer's balance after paying
}

struct ProductReturned {
  customer @0 :Text;
  product  @1 :Text;
  quantity @2 :Int64;
  refund   @3 :Int64;       # what was paid for these units, most recent purchase first
  balance  @4 :Int64;       # after the refund
}

struct ProductAdded {
  product @0 :Text;
  price   @1 :Int64;
  stock   @2 :Int64;
}

struct ProductRestocked {
  product  @0 :Text;
  quantity @1 :Int64;
  stock    @2 :Int64;       # after the restock
}

# Units reserved for a customer: they left the available stock and are
# nobody else's until the hold ends, exactly once, as HoldConfirmed,
# HoldReleased or HoldExpired.
struct ProductHeld {
  holdId      @0 :UInt64;   # the server's id for the hold, never 0
  customer    @1 :Text;
  product     @2 :Text;
  quantity    @3 :Int64;
  unitPrice   @4 :Int64;    # the price a confirmation pays
  expiresAtNs @5 :Int64;    # when the hold expires, ns since the Unix epoch
}

# A hold became a purchase: for the customer and the product, the same as a
# ProductBought of the held units at the held price.
struct HoldConfirmed {
  holdId    @0 :UInt64;
  customer  @1 :Text;
  product   @2 :Text;
  quantity  @3 :Int64;
  unitPrice @4 :Int64;
  balance   @5 :Int64;      # the customer's balance after paying
}

# The customer gave a hold up: its units are back in the stock.
struct HoldReleased {
  holdId   @0 :UInt64;
  customer @1 :Text;
  product  @2 :Text;
  quantity @3 :Int64;
}

# A hold's time ran out: its units are back in the stock. Caused by the
# server's clock, not by a command: the event's commandId is 16 zero bytes.
struct HoldExpired {
  holdId   @0 :UInt64;
  customer @1 :Text;
  product  @2 :Text;
  quantity @3 :Int64;
}

struct OperationRejected {
  reason   @0 :RejectReason;
  command  @1 :CommandKind;
  customer @2 :Text;        # empty when the command names no customer
  product  @3 :Text;        # empty when the command names no product
  detail   @4 :Text;        # human-readable
}

struct Holding {
  product   @0 :Text;
  quantity  @1 :Int64;
  paid      @2 :Int64;      # total paid for the units still held
}

# A live hold, as GetCustomer shows it.
struct HoldView {
  holdId      @0 :UInt64;
  product     @1 :Text;
  quantity    @2 :Int64;
  unitPrice   @3 :Int64;
  expiresAtNs @4 :Int64;
}

struct CustomerView {
  customer @0 :Text;
  balance  @1 :Int64;
  holdings @2 :List(Holding);
  holds    @3 :List(HoldView);  # live holds, oldest first
}

struct EventPage {
  events  @0 :List(Event);  # seq >= fromSeq, ascending, at most maxCount
  headSeq @1 :UInt64;       # the newest seq published when the page was read
  capped  @2 :Bool;         # the page stopped at the server's byte cap (1 MiB by default)
                            # before maxCount: read on from the last seq + 1
  serverId @3 :UInt64;      # the server that sequenced these events: a random id (never 0)
                            # chosen when it started. Seqs are only comparable between pages
                            # with the same serverId; another one means the server restarted
                            # and its seqs began again at 1 (0: a server older than this field)
}

struct Rejection {
  reason    @0 :RejectReason;
  detail    @1 :Text;
  seq       @2 :UInt64;     # seq of the OperationRejected event; 0 for a query
                            # (GetCustomer, ReadEvents), whose rejections publish nothing
  oldestSeq @3 :UInt64;     # with retentionExceeded: the oldest seq still readable
}

struct Reply {
  commandId @0 :CommandId $Json.hex;
  union {
    accepted  @1 :Event;         # a mutation was applied; the event it produced
    rejected  @2 :Rejection;     # well-formed but refused; an OperationRejected was published
                                 # unless the command was a query
    malformed @3 :Text;          # could not be decoded; nothing was published
    customer  @4 :CustomerView;  # answer to GetCustomer
    events    @5 :EventPage;     # answer to ReadEvents
    retired   @6 :RetiredOutcome;  # a retry of a command accepted earlier whose event has
                                   # left retention: the outcome without the event
    stats     @7 :ShopStats;       # answer to GetStats
  }
}

# What the server says about itself (GetStats): a query, never published.
struct ShopStats {
  version           @0 :Text;    # the server's version and git describe
  serverId          @1 :UInt64;
  uptimeMs          @2 :UInt64;
  headSeq           @3 :UInt64;
  customers         @4 :UInt64;
  products          @5 :UInt64;
  inFlight          @6 :UInt64;  # operations admitted and not yet final
  commandsPerSecond @7 :Float64; # commands received, over the last 10 s
  rejections        @8 :List(RejectionCount);  # since this process started, by reason
  dedupeSize        @9 :UInt64;  # completed commandIds remembered
  dedupeCapacity    @10 :UInt64;
  logSize           @11 :UInt64; # events retained in memory
  logCapacity       @12 :UInt64;
  rssBytes          @13 :UInt64; # the server process's resident memory
  liveHolds         @14 :UInt64; # holds placed and not yet confirmed, released or expired
}

struct RejectionCount {
  reason @0 :RejectReason;
  count  @1 :UInt64;
}

# The compact outcome the dedupe window remembers, for a retry whose event
# the log no longer holds. Nothing was applied again.
struct RetiredOutcome {
  seq       @0 :UInt64;     # seq of the event the original command produced
  oldestSeq @1 :UInt64;     # the oldest seq still readable when the retry was answered
}

# A starter catalog, read as JSON by `shopd --catalog FILE`, e.g.
#   {"products": [{"product": "apple", "price": "150", "stock": "100"}]}
# (capnp-json writes Int64 as strings; plain numbers are accepted too.)
struct Catalog {
  products @0 :List(AddProduct);
}
