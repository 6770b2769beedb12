// Which shard owns an aggregate. Pure; safe on any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace shop {

enum class AggregateKind : uint8_t { customer, product };

class ShardRouter {
 public:
  explicit ShardRouter(unsigned shards);
  unsigned shardOf(AggregateKind kind, std::string_view id) const;
  unsigned shards() const { return shards_; }

 private:
  unsigned shards_;
};

// The key of an aggregate for fault injection and logs: "c/<id>" or
// "p/<id>". Ids never contain '/', so keys of different kinds never collide.
std::string aggregateKey(AggregateKind kind, std::string_view id);

}  // namespace shop
