// The steps of an operation across shards, as an explicit state machine.
// The ingress thread drives it: it sends each step to a shard and feeds the
// shard's outcome back here to learn the next one.
//
//   execute (one shard) ────────────────────────────────▶ finish
//
//   cross-shard buy:
//   reserve (product shard) ──reserved──▶ debit (customer shard) ──event──▶ finish
//        └──rejected──▶ finish                    └──rejected──▶ release at the product, finish
//
//   return: execute on the customer's shard; its ProductReturned sends the
//   units back to the product's shard (stockBack) as it finishes.
//
//   cross-shard hold: as a buy, but the debit step records the hold
//   (ProductHeld) instead of paying, and a refused one gives the units back
//   with unhold. Confirm, release and the timer's expiry execute on the
//   customer's shard; HoldConfirmed moves the held units to sold (holdSold),
//   HoldReleased and HoldExpired back to the stock (unhold).
//
// Every hop passes through the ingress, which is the only producer of each
// shard's inbox: a release or stockBack reaches the product shard before any
// later command does. Pure functions; safe on any thread.
#pragma once

#include "core/shard.h"
#include "core/shard_router.h"

namespace shop::saga {

enum class Next : uint8_t {
  finish,               // the outcome is final
  debit,                // reserved: send the debit to the customer's shard
  releaseThenFinish,    // the debit was refused: give the reserved units back
  stockBackThenFinish,  // a return succeeded: its units go back to the product
  unholdThenFinish,     // held units go back to the stock (a hold refused, released, expired)
  holdSoldThenFinish,   // a confirmed hold: its units become sold at the product
};

// The first step of an admitted command.
Step first(const Command& command, const ShardRouter& router);
// What follows `outcome` of `step`.
Next next(Step step, const ShardOutcome& outcome);

}  // namespace shop::saga
