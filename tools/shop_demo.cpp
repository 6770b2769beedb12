// shop-demo: drives the engine in-process through the seed scenario and
// prints every event.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "core/engine.h"
#include "tools/cli.h"

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
  CLI::App app{
      "shop-demo: runs the seed scenario (create, buy, return, overdraft, unknown product,\n"
      "duplicate customer, six operations at once) through the in-process engine and\n"
      "prints every event, one per line.",
      "shop-demo"};
  app.set_version_flag("--version", std::string("shop-demo ") + SHOP_VERSION);
  app.add_option("--shards", config.shards, "shard threads")
      ->type_name("N")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::string hint = cli::didYouMean(app, argc, argv);
    std::fprintf(stderr, "shop-demo: %s%s (see shop-demo --help)\n", e.what(),
                 hint.empty() ? "" : ("; " + hint).c_str());
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
  run(BuyProduct{"alice", "tv", 1});      // insufficientFunds
  run(BuyProduct{"alice", "durian", 1});  // unknownProduct
  run(CreateCustomer{"alice", 5});        // customerExists
  // Six at once: the gate admits five and rejects the sixth.
  engine.holdShard(engine.shardOfCustomer("alice"));
  for (int i = 0; i < 6; ++i)
    engine.submit(Command{CommandId::random(), Deposit{"alice", 100}}, ++tag);
  engine.resumeShard(engine.shardOfCustomer("alice"));
  engine.drain();
  std::fprintf(stderr, "shop-demo: %zu replies, head seq %llu\n", printer.replies,
               static_cast<unsigned long long>(engine.log().headSeq()));
  return printer.replies == tag ? 0 : 1;
}
