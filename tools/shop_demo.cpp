// shop-demo: drives the engine in-process through the seed scenario and
// prints every event. A stand-in for the server until shopd exists.
#include <cstdio>
#include <cstring>

#include "core/engine.h"

namespace {

class Printer : public shop::EngineListener {
 public:
  void onEvent(const shop::Event& event) override {
    std::printf("%s\n", shop::describe(event).c_str());
  }
  void onReply(uint64_t, const shop::Reply&) override { ++replies; }
  size_t replies = 0;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace shop;
  EngineConfig config;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::printf(
          "usage: shop-demo [--shards N]\n\n"
          "Runs the seed scenario (create, buy, return, overdraft, unknown product,\n"
          "duplicate customer, six operations at once) through the in-process engine\n"
          "and prints every event, one per line.\n");
      return 0;
    }
    if (std::strcmp(argv[i], "--shards") == 0 && i + 1 < argc) {
      config.shards = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
      if (config.shards == 0) {
        std::fprintf(stderr, "shop-demo: --shards must be >= 1\n");
        return 2;
      }
      continue;
    }
    std::fprintf(stderr, "shop-demo: unknown argument '%s' (see --help)\n", argv[i]);
    return 2;
  }

  Printer printer;
  Engine engine(config, printer);
  std::fprintf(stderr, "shop-demo: engine with %u shard(s), max %u pending per customer\n",
               config.shards, config.maxPending);
  uint64_t tag = 0;
  auto run = [&](CommandBody body) {
    engine.submit(Command{CommandId::random(), std::move(body)}, ++tag);
    engine.drain();
  };
  run(AddProduct{"apple", 150, 10});
  run(AddProduct{"tv", 49'900, 2});
  run(CreateCustomer{"alice", 10'000});
  run(BuyProduct{"alice", "apple", 2});
  run(ReturnProduct{"alice", "apple", 1});
  run(BuyProduct{"alice", "tv", 1});       // insufficientFunds
  run(BuyProduct{"alice", "durian", 1});   // unknownProduct
  run(CreateCustomer{"alice", 5});         // customerExists
  // Six at once: the gate admits five and rejects the sixth.
  engine.holdShard(engine.shardOfCustomer("alice"));
  for (int i = 0; i < 6; ++i) engine.submit(Command{CommandId::random(), Deposit{"alice", 100}}, ++tag);
  engine.resumeShard(engine.shardOfCustomer("alice"));
  engine.drain();
  std::fprintf(stderr, "shop-demo: %zu replies, head seq %llu\n", printer.replies,
               static_cast<unsigned long long>(engine.log().headSeq()));
  return printer.replies == tag ? 0 : 1;
}
