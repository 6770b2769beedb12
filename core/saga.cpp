#include "core/saga.h"

namespace shop::saga {

Step first(const Command& command, const ShardRouter& router) {
  // A buy needs two steps only when its product and customer live on
  // different shards; on one shard it is decided in a single step.
  CommandKind kind = command.kind();
  if ((kind == CommandKind::buyProduct || kind == CommandKind::holdProduct) &&
      router.shardOf(AggregateKind::product, command.product()) !=
          router.shardOf(AggregateKind::customer, command.customer())) {
    return Step::reserve;
  }
  return Step::execute;
}

Next next(Step step, const ShardOutcome& outcome) {
  if (outcome.reserved) return Next::debit;
  if (step == Step::debit && std::holds_alternative<Rejection>(outcome.result)) {
    return Next::releaseThenFinish;  // the engine knows whether a buy or a hold reserved them
  }
  if (const auto* body = std::get_if<EventBody>(&outcome.result)) {
    if (std::holds_alternative<ProductReturned>(*body)) return Next::stockBackThenFinish;
    if (std::holds_alternative<HoldReleased>(*body) || std::holds_alternative<HoldExpired>(*body)) {
      return Next::unholdThenFinish;
    }
    if (std::holds_alternative<HoldConfirmed>(*body)) return Next::holdSoldThenFinish;
  }
  return Next::finish;
}

}  // namespace shop::saga
