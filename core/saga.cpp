#include "core/saga.h"

namespace shop::saga {

Step first(const Command& command, const ShardRouter& router) {
  // A buy needs two steps only when its product and customer live on
  // different shards; on one shard it is decided in a single step.
  if (command.kind() == CommandKind::buyProduct &&
      router.shardOf(AggregateKind::product, command.product()) !=
          router.shardOf(AggregateKind::customer, command.customer())) {
    return Step::reserve;
  }
  return Step::execute;
}

Next next(Step step, const ShardOutcome& outcome) {
  if (outcome.reserved) return Next::debit;
  if (step == Step::debit && std::holds_alternative<Rejection>(outcome.result)) {
    return Next::releaseThenFinish;
  }
  if (const auto* body = std::get_if<EventBody>(&outcome.result);
      body && std::holds_alternative<ProductReturned>(*body)) {
    return Next::stockBackThenFinish;
  }
  return Next::finish;
}

}  // namespace shop::saga
