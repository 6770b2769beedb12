#include "core/shard_router.h"

#include <functional>
#include <stdexcept>

namespace shop {

ShardRouter::ShardRouter(unsigned shards) : shards_(shards) {
  if (shards_ == 0) throw std::invalid_argument("the shard count must be >= 1");
}

unsigned ShardRouter::shardOf(AggregateKind kind, std::string_view id) const {
  size_t h = std::hash<std::string_view>{}(id);
  // Products are mixed differently, so a customer and a product with the
  // same id do not always share a shard.
  if (kind == AggregateKind::product) h = (h ^ 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
  return static_cast<unsigned>((h ^ (h >> 31)) % shards_);
}

std::string aggregateKey(AggregateKind kind, std::string_view id) {
  return (kind == AggregateKind::customer ? "c/" : "p/") + std::string(id);
}

}  // namespace shop
