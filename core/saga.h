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
};

// The first step of an admitted command.
Step first(const Command& command, const ShardRouter& router);
// What follows `outcome` of `step`.
Next next(Step step, const ShardOutcome& outcome);

}  // namespace shop::saga
