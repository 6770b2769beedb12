// No heap allocation per command on the socket thread at steady state.
//
// This binary replaces malloc and friends with counting wrappers around
// glibc's own (__libc_malloc ...). Counting is per thread and switched on
// only around the measured window, on the thread under test. Under ASan or
// TSan the sanitizer owns malloc, so the cases only report that they skip.
#include <doctest/doctest.h>

#include <cstdlib>
#include <thread>

#include "bus/client.h"
#include "core/engine.h"
#include "tests/testkit/embedded_server.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SHOP_COUNTING_MALLOC 0
#else
#define SHOP_COUNTING_MALLOC 1
#endif

namespace {
thread_local bool counting = false;
thread_local uint64_t allocations = 0;
}  // namespace

#if SHOP_COUNTING_MALLOC
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);

void* malloc(size_t n) {
  if (counting) ++allocations;
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  if (counting) ++allocations;
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  if (counting) ++allocations;
  return __libc_realloc(p, n);
}
void* aligned_alloc(size_t alignment, size_t n) {
  if (counting) ++allocations;
  return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, size_t alignment, size_t n) {
  if (counting) ++allocations;
  *out = __libc_memalign(alignment, n);
  return *out ? 0 : ENOMEM;
}
}
#endif

using namespace shop;

namespace {

// Consumes events and replies as the socket thread does, minus the sockets:
// it reads every byte it is given and keeps nothing.
class DiscardingSinks : public EventSink, public ReplySink {
 public:
  void append(const PublishedEvent& event) override { bytes += event.message.size(); }
  void commit() override {}
  void reply(uint64_t, const ReplyView& reply) override {
    ++replies;
    bytes += reply.event.size();
  }
  uint64_t replies = 0;
  uint64_t bytes = 0;
};

// The bench's mix on 13-character ids: buys, returns and deposits.
std::vector<Command> mix(int customers) {
  std::vector<Command> out;
  for (int i = 0; i < customers; ++i) {
    std::string c = "customer-" + std::to_string(1000 + i);
    out.push_back({{}, BuyProduct{c, "apple", 1}});
    out.push_back({{}, ReturnProduct{c, "apple", 1}});
    out.push_back({{}, Deposit{c, 5}});
  }
  return out;
}

}  // namespace

TEST_CASE("the engine allocates nothing per command on its ingress thread at steady state") {
  if (!SHOP_COUNTING_MALLOC) {
    MESSAGE("skipped: the sanitizer owns malloc");
    return;
  }
  DiscardingSinks sinks;
  // Small windows so that steady state (full log, full dedupe window) comes quickly.
  Engine engine(EngineConfig{.shards = 1, .retention = 2000, .dedupeWindow = 2000}, sinks, sinks);
  uint64_t n = 0;
  auto next = [&n] { return CommandId::fromNumber(0xA11, n++); };
  engine.submit({next(), AddProduct{"apple", 100, 1'000'000'000}}, 1);
  auto commands = mix(200);
  for (int i = 0; i < 200; ++i) {
    engine.submit({next(), CreateCustomer{"customer-" + std::to_string(1000 + i), 1'000'000'000}},
                  1);
  }
  engine.drain();
  auto run = [&](size_t count) {
    for (size_t i = 0; i < count; ++i) {
      Command c = commands[i % commands.size()];  // copied outside the counted part below
      c.id = next();
      counting = true;
      engine.submit(std::move(c), 1);
      if (engine.inFlight() >= 64) engine.wait(-1);
      counting = false;
    }
    counting = true;
    engine.drain();
    counting = false;
  };
  run(20'000);  // warm up: fills the log and the window, grows every reused buffer
  REQUIRE(engine.log().size() == engine.log().retention());
  REQUIRE(engine.dedupe().size() == engine.dedupe().capacity());
  // The counter works: one malloc while counting is one allocation.
  allocations = 0;
  counting = true;
  void* probe = std::malloc(64);
  counting = false;
  std::free(probe);
  REQUIRE(allocations == 1);
  allocations = 0;
  uint64_t repliesBefore = sinks.replies;
  run(30'000);
  CHECK(sinks.replies - repliesBefore == 30'000);
  CHECK(allocations == 0);
}

TEST_CASE("shopd's socket thread allocates only the ZeroMQ frames it sends per command") {
  if (!SHOP_COUNTING_MALLOC) {
    MESSAGE("skipped: the sanitizer owns malloc");
    return;
  }
  testkit::EmbeddedServer server(
      testkit::EmbeddedServer::defaultConfig(),
      EngineConfig{.shards = 1, .retention = 2000, .dedupeWindow = 2000});
  bus::Client client(server.context(), server.commands(), {.timeoutMs = 10'000, .retries = 0});
  auto commands = mix(200);
  auto send = [&](const Command& c) {
    client.send(c, [](const bus::CallResult& r) { REQUIRE(r.ok()); });
    while (client.inFlight() >= 32) client.poll(-1);
  };
  send({CommandId::random(), AddProduct{"apple", 100, 1'000'000'000}});
  for (int i = 0; i < 200; ++i) {
    send({CommandId::random(),
          CreateCustomer{"customer-" + std::to_string(1000 + i), 1'000'000'000}});
  }
  auto run = [&](size_t count) {
    for (size_t i = 0; i < count; ++i) {
      Command c = commands[i % commands.size()];
      c.id = CommandId::random();
      send(c);
    }
    while (client.inFlight() > 0) client.poll(-1);
  };
  run(20'000);  // steady state: full log and window, every buffer grown
  server.withEngine([](Engine&) { allocations = 0, counting = true; });
  constexpr size_t kCommands = 30'000;
  run(kCommands);
  uint64_t counted = server.withEngine([](Engine&) {
    counting = false;
    return allocations;
  });
  // Each command sends a reply body and an event body of over 33 bytes, and
  // libzmq allocates each such message (zmq_msg_init_size). Anything of ours
  // would add at least one more per command.
  double perCommand = static_cast<double>(counted) / kCommands;
  MESSAGE("socket-thread allocations per command: " << perCommand);
  CHECK(perCommand <= 2.05);
}
