// The crash test: a real shopd with a journal takes a concurrent workload
// and is killed with SIGKILL, again and again. After every restart each
// acknowledged command's event is there, nothing is half-applied, seqs run
// on without a gap, and a command retried across the crash is applied once.
//
// The seed is printed; SHOP_SEED replays one, SHOP_KILLS changes how many
// kills (default 20).
#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include "bus/client.h"
#include "tests/testkit/engine_harness.h"
#include "tests/testkit/process.h"
#include "tests/testkit/temp_dir.h"
#include "tests/tools/shopd_process.h"

using namespace shop;
using shop::testkit::Process;
using shop::testkit::TempDir;

namespace {

constexpr int kWorkers = 4;
constexpr int kCustomersPerWorker = 25;
constexpr int kProducts = 4;
constexpr size_t kWindow = 8;  // commands in flight per worker

std::string customerOf(int worker, int i) {
  return "w" + std::to_string(worker) + "-c" + std::to_string(i);
}
std::string productOf(int p) {
  return "p" + std::to_string(p);
}

uint64_t envOr(const char* name, uint64_t fallback) {
  const char* text = std::getenv(name);
  return text ? std::stoull(text) : fallback;
}

// What shopd answered for a command: its event's seq.
struct Acked {
  Seq seq = 0;
  bool rejected = false;
};

bool transient(RejectReason reason) {
  return reason == RejectReason::tooManyPending || reason == RejectReason::overloaded ||
         reason == RejectReason::internalError;
}

struct Ledger {
  std::mutex mutex;
  std::unordered_map<CommandId, Acked, CommandIdHash> acked;      // every acknowledged command
  std::unordered_map<CommandId, Command, CommandIdHash> unknown;  // no answer: the kill came first
  size_t ackedThisRun = 0;
  std::condition_variable progress;
};

// Records a reply: acknowledged with its seq, or unknown (no answer).
void record(Ledger& ledger, const Command& command, const bus::CallResult& result) {
  std::lock_guard lock(ledger.mutex);
  if (!result.ok()) {
    ledger.unknown.emplace(command.id, command);
    return;
  }
  const Reply& reply = result.reply->reply;
  CHECK(reply.event);  // on a client thread: no REQUIRE
  if (!reply.event) return;
  const auto* rejection = reply.rejection();
  if (rejection && transient(rejection->reason)) return;  // nothing applied, nothing remembered
  ledger.acked[command.id] = Acked{reply.event->seq, rejection != nullptr};
  ledger.unknown.erase(command.id);
  ++ledger.ackedThisRun;
  ledger.progress.notify_all();
}

Command randomCommand(std::mt19937_64& rng, int worker) {
  std::string customer = customerOf(worker, static_cast<int>(rng() % kCustomersPerWorker));
  std::string product = productOf(static_cast<int>(rng() % kProducts));
  auto quantity = static_cast<Quantity>(1 + rng() % 3);
  switch (rng() % 4) {
    case 0:
      return Command{CommandId::random(), Deposit{customer, static_cast<Money>(1 + rng() % 500)}};
    case 1:
    case 2:
      return Command{CommandId::random(), BuyProduct{customer, product, quantity}};
    default:
      return Command{CommandId::random(), ReturnProduct{customer, product, 1}};
  }
}

// The whole history, page by page, checked to run from seq 1 with no gap.
std::vector<Event> history(bus::Client& client, uint64_t* serverId) {
  std::vector<Event> events;
  for (;;) {
    auto result = client.call(Command{CommandId::random(), ReadEvents{events.size() + 1, 0}});
    REQUIRE(result.ok());
    const EventPage& page = result.reply->reply.page;
    *serverId = page.serverId;
    for (auto& e : page.events) {
      REQUIRE(e.seq == events.size() + 1);
      events.push_back(e);
    }
    if (page.events.empty() || events.size() >= page.headSeq) {
      CHECK(events.size() == page.headSeq);
      return events;
    }
  }
}

// After a restart: everything acknowledged is there, as it was answered.
void verify(bus::Client& client, Ledger& ledger, uint64_t& serverId) {
  uint64_t pageServer = 0;
  std::vector<Event> events = history(client, &pageServer);
  if (serverId == 0) serverId = pageServer;
  CHECK(pageServer == serverId);

  std::unordered_map<CommandId, Seq, CommandIdHash> seen;
  for (const Event& e : events) {
    const auto* rejection = std::get_if<OperationRejected>(&e.body);
    if (rejection && transient(rejection->reason)) continue;
    auto [it, fresh] = seen.emplace(e.commandId, e.seq);
    CHECK_MESSAGE(fresh, "command applied twice: seqs " << it->second << " and " << e.seq);
  }
  for (const auto& [id, acked] : ledger.acked) {
    REQUIRE_MESSAGE(acked.seq <= events.size(),
                    "acknowledged seq " << acked.seq << " is gone; head " << events.size());
    const Event& e = events[acked.seq - 1];
    CHECK(e.commandId == id);
    CHECK(std::holds_alternative<OperationRejected>(e.body) == acked.rejected);
  }
  // Nothing half-applied: every balance and stock an event states is what
  // the events before it give, and the live balances are the replay's.
  CHECK(testkit::firstStatedMismatch(events) == "");
  ShopState replayed = replay(events);
  for (const auto& [customer, state] : replayed.customers) {
    auto result = client.call(Command{CommandId::random(), GetCustomer{customer}});
    REQUIRE(result.ok());
    REQUIRE(result.reply->reply.customer);
    CHECK(result.reply->reply.customer->balance == state.balance);
  }
}

// A client thread: random commands on its own customers, kWindow in flight,
// until told to stop; then it waits out what is in flight.
void work(const std::string& endpoint, int worker, uint64_t seed, Ledger& ledger,
          const std::atomic<bool>& stop) {
  zmq::context_t context(1);
  bus::Client client(context, endpoint, {.timeoutMs = 500, .retries = 0});
  std::mt19937_64 rng(seed);
  while (!stop.load()) {
    while (client.inFlight() < kWindow) {
      Command command = randomCommand(rng, worker);
      client.send(command,
                  [&ledger, command](const bus::CallResult& r) { record(ledger, command, r); });
    }
    client.poll(50);
  }
  while (client.inFlight() > 0) client.poll(-1);
}

}  // namespace

TEST_CASE("crash test: shopd --journal --fsync always, killed with SIGKILL, loses nothing acked") {
  const uint64_t seed = envOr("SHOP_SEED", std::random_device{}());
  const uint64_t kills = envOr("SHOP_KILLS", 20);
  std::printf("crash test: seed %llu, %llu kills (SHOP_SEED=%llu replays it)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(kills),
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  std::mt19937_64 rng(seed);
  TempDir dir;
  Ledger ledger;
  uint64_t serverId = 0;
  auto start = [&dir] {
    // Small segments and frequent snapshots, so that kills also land around
    // roll-overs and snapshot writes, and restarts start from snapshots.
    return std::make_unique<Process>(std::vector<std::string>{
        SHOPD_PATH, "--journal", dir.str(), "--fsync", "always", "--segment-size", "16K",
        "--snapshot-every", "500", "--commands", "tcp://127.0.0.1:*", "--events",
        "tcp://127.0.0.1:*", "--no-catalog", "--shards", "2"});
  };

  uint64_t fromSnapshot = 0;  // restarts that began from a snapshot
  for (uint64_t run = 0; run <= kills; ++run) {
    CAPTURE(run);
    auto shopd = start();
    std::string recovered = shopd->waitForStderrLine("recovered", 30'000);
    if (recovered.find("snapshot at seq") != std::string::npos) ++fromSnapshot;
    std::string endpoint = testkit::endpointOf(*shopd);
    zmq::context_t context(1);
    bus::Client client(context, endpoint, {.timeoutMs = 10'000, .retries = 0});
    verify(client, ledger, serverId);

    // Commands whose answer the kill took: retried with the same id, as a
    // client would. The history check above and the next one catch any
    // that is applied twice.
    std::unordered_map<CommandId, Command, CommandIdHash> retry;
    {
      std::lock_guard lock(ledger.mutex);
      retry.swap(ledger.unknown);
    }
    for (const auto& [id, command] : retry) {
      auto result = client.call(command);
      record(ledger, command, result);
    }

    if (run == 0) {
      for (int p = 0; p < kProducts; ++p) {
        REQUIRE(client.call(Command{CommandId::random(), AddProduct{productOf(p), 100, 1'000'000}})
                    .ok());
      }
      for (int w = 0; w < kWorkers; ++w) {
        for (int c = 0; c < kCustomersPerWorker; ++c) {
          REQUIRE(
              client.call(Command{CommandId::random(), CreateCustomer{customerOf(w, c), 100'000}})
                  .ok());
        }
      }
    }
    if (run == kills) {
      verify(client, ledger, serverId);
      shopd->signal(SIGTERM);
      CHECK(shopd->wait() == 0);
      break;
    }

    // Load, and a kill after a random number of acknowledgements.
    const size_t killAfter = 20 + rng() % 300;
    {
      std::lock_guard lock(ledger.mutex);
      ledger.ackedThisRun = 0;
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> workers;
    for (int w = 0; w < kWorkers; ++w) {
      workers.emplace_back(work, endpoint, w, rng(), std::ref(ledger), std::cref(stop));
    }
    {
      std::unique_lock lock(ledger.mutex);
      bool reached = ledger.progress.wait_for(lock, std::chrono::seconds(60),
                                              [&] { return ledger.ackedThisRun >= killAfter; });
      CHECK_MESSAGE(reached, "only " << ledger.ackedThisRun << " acknowledged in 60 s");
    }
    shopd->signal(SIGKILL);
    CHECK(shopd->wait() == 128 + SIGKILL);
    stop = true;
    for (auto& t : workers) t.join();
  }
  MESSAGE(ledger.acked.size() << " commands acknowledged over " << kills
                              << " kills; every one found after each restart");
  CHECK(ledger.acked.size() > kills * 20);
  MESSAGE(fromSnapshot << " of " << kills << " restarts began from a snapshot");
  // A snapshot is due every 500 events, and each run sees hundreds.
  if (kills >= 10) CHECK(fromSnapshot > 0);
}
