// Snapshots on real files: each is exactly the fold of the log up to its
// seq even when taken under concurrent cross-shard load, recovery from one
// plus the journal's tail is the engine that wrote them, segments they cover
// go, and a damaged or impossible snapshot is passed over, never trusted.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "core/journal.h"
#include "core/recovery.h"
#include "core/snapshot.h"
#include "tests/testkit/engine_harness.h"
#include "tests/testkit/temp_dir.h"

using namespace shop;
using shop::testkit::EngineHarness;
using shop::testkit::TempDir;
namespace fs = std::filesystem;

namespace {

// A journal, its snapshot writer and an engine on one directory, recovered
// and started as shopd starts them.
struct DurableShop {
  Journal journal;
  SnapshotWriter snapshots;
  EngineHarness h;
  RecoveryReport recovered;

  DurableShop(const JournalConfig& journalConfig, SnapshotConfig snapshotConfig,
              EngineConfig engineConfig)
      : journal(journalConfig),
        snapshots((snapshotConfig.dir = journalConfig.dir, snapshotConfig),
                  [this](Seq seq) { return journal.waitDurableSeq(seq); }),
        h((engineConfig.snapshots = &snapshots, engineConfig.historyDir = journalConfig.dir,
           engineConfig),
          &journal) {
    recovered = recoverEngine(journal, h.engine);
    journal.start(h.engine.serverId(), h.engine.log().headSeq() + 1);
  }
  // Everything in flight finished, and every snapshot due is on disk.
  void settle() {
    h.engine.drain();
    snapshots.waitIdle();
    journal.waitDurable(journal.committed());
  }
};

struct StateOf : SnapshotVisitor {
  ShopState state;
  void customer(std::string_view id, Customer&& c) override {
    state.customers.emplace(std::string(id), std::move(c));
  }
  void product(std::string_view id, Product&& p) override {
    state.products.emplace(std::string(id), std::move(p));
  }
};

ShopState stateIn(const std::string& path, SnapshotInfo* info = nullptr) {
  StateOf into;
  SnapshotInfo read = readSnapshotFile(path, &into);
  if (info) *info = read;
  return std::move(into.state);
}

// A mixed load with many operations in flight at once: cross-shard buys
// (stock reserved at one shard, paid at another), failed buys (stock
// released), returns (stock going back), deposits. `rounds` bursts, each
// sent whole before any reply is read; each round's replies are read only
// in part before the next is sent, so that operations overlap throughout.
// Holds too: placed (units held at one shard, recorded at another), and of
// those seen placed, a third confirmed and a third released while in flight.
void load(EngineHarness& h, int rounds, int customers = 40) {
  for (int round = 0; round < rounds; ++round) {
    size_t seen = h.listener.events.size();
    for (int c = 0; c < customers; ++c) {
      std::string id = "c" + std::to_string(c);
      std::string product = "p" + std::to_string((c + round) % 6);
      h.send(BuyProduct{id, product, 1 + (c + round) % 3});
      h.send(BuyProduct{id, "p" + std::to_string(c % 6), 400});  // mostly too dear: released
      if (round % 3 == 2) h.send(ReturnProduct{id, product, 1});
      if (c % 4 == round % 4) h.send(Deposit{id, 500});
      if (c % 3 == round % 3) h.send(HoldProduct{id, product, 1 + c % 2, 3'600'000});
    }
    h.engine.wait(-1);  // whatever outcomes are ready: the rest stay in flight
    for (size_t i = seen; i < h.listener.events.size(); ++i) {
      if (const auto* held = std::get_if<ProductHeld>(&h.listener.events[i].body)) {
        if (held->holdId % 3 == 0) h.send(ConfirmHold{.holdId = held->holdId});
        if (held->holdId % 3 == 1) h.send(ReleaseHold{.holdId = held->holdId});
      }
    }
  }
}

void open(EngineHarness& h, int customers = 40) {
  for (int p = 0; p < 6; ++p) {
    h.run(AddProduct{"p" + std::to_string(p), 100 + 10 * p, 5'000});
  }
  for (int c = 0; c < customers; ++c) h.run(CreateCustomer{"c" + std::to_string(c), 20'000});
}

// `phases` bursts of `rounds` rounds, each settled. A round holds at least
// 40 events, so a phase of more than `every` events passes at least one due
// point while the writer is idle: the number of snapshots written does not
// depend on how fast the writer is.
void loadInPhases(DurableShop& shop, int phases, int rounds) {
  for (int p = 0; p < phases; ++p) {
    load(shop.h, rounds);
    shop.settle();
  }
}

size_t filesEndingIn(const std::string& dir, std::string_view suffix) {
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().ends_with(suffix)) ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("snapshot files: what is encoded reads back, and damage is never read as a snapshot") {
  TempDir dir;
  SnapshotEncoder encoder;
  ShopState state;
  for (int c = 0; c < 10'000; ++c) {
    Customer customer{.balance = c * 7};
    if (c % 3 == 0) customer.holdings.push_back({"p1", {{100, 2}, {90, 1}}});
    state.customers.emplace("c" + std::to_string(c), customer);
  }
  state.products.emplace("p1", Product{.price = 100, .stock = 5, .sold = 3});
  state.products.emplace("p\xC3\xA9", Product{.price = 1, .stock = 0, .sold = 0});
  for (const auto& [id, c] : state.customers) encoder.customer(id, c);
  for (const auto& [id, p] : state.products) encoder.product(id, p);
  std::vector<SnapshotPart> parts;
  parts.push_back(encoder.finish());
  CHECK(parts[0].chunks.size() > 1);  // 10,000 aggregates: several chunks
  auto [path, bytes] =
      writeSnapshot(dir.str(), SnapshotInfo{.seq = 77, .serverId = 9, .replayFrom = 5}, parts);
  CHECK(fs::file_size(path) == bytes);
  CHECK(listSnapshots(dir.str()) == std::vector<std::pair<Seq, std::string>>{{77, path}});
  SnapshotInfo info;
  CHECK(stateIn(path, &info) == state);
  CHECK(info.seq == 77);
  CHECK(info.serverId == 9);
  CHECK(info.replayFrom == 5);
  CHECK(info.customers == 10'000);
  CHECK(info.products == 2);
  CHECK(filesEndingIn(dir.str(), ".tmp") == 0);

  std::string good;
  {
    std::ifstream in(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto damaged = [&](std::string bytes, const char* why) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    CHECK_THROWS_WITH_AS(readSnapshotFile(path, nullptr), doctest::Contains(why), SnapshotCorrupt);
  };
  SUBCASE("a flipped byte in a chunk") {
    std::string bytes = good;
    bytes[bytes.size() / 2] ^= 0x20;
    damaged(bytes, "checksum does not match");
  }
  SUBCASE("cut short") {
    damaged(good.substr(0, good.size() - 100), "cut short");
  }
  SUBCASE("a chunk missing at the end") {
    // The info record says how many chunks follow; fewer is not a snapshot.
    size_t at = 32;
    for (int r = 0; r < 2; ++r) {
      uint32_t length;
      std::memcpy(&length, good.data() + at, 4);
      at += 8 + length;
    }
    damaged(good.substr(0, at), "chunk 1 of");
  }
  SUBCASE("not a snapshot") {
    std::string bytes = good;
    bytes[0] = 'X';
    damaged(bytes, "bad magic");
  }
  SUBCASE("bytes after the last chunk") {
    damaged(good + std::string(16, '\0'), "after the last chunk");
  }
}

TEST_CASE("every snapshot taken under concurrent cross-shard load is the fold of its seqs") {
  TempDir dir;
  // Every 97 events, and every snapshot kept: each one is checked. Slices
  // of 3 aggregates: a snapshot's encoding runs across many batches, and
  // aggregates change before their slice comes (copy-on-write).
  DurableShop shop({.dir = dir.str()}, {.every = 97, .keepSnapshots = 1'000},
                   EngineConfig{.shards = 3, .checkpointSlice = 3});
  open(shop.h);
  loadInPhases(shop, 12, 3);
  const auto& events = shop.h.listener.events;
  auto snapshots = listSnapshots(dir.str());
  REQUIRE(snapshots.size() >= 10);
  CHECK(shop.snapshots.stats().written.load() == snapshots.size());
  CHECK(shop.snapshots.stats().failed.load() == 0);
  for (const auto& [seq, path] : snapshots) {
    CAPTURE(seq);
    REQUIRE(seq <= events.size());
    std::vector<Event> upTo(events.begin(), events.begin() + static_cast<ptrdiff_t>(seq));
    SnapshotInfo info;
    CHECK(stateIn(path, &info) == replay(upTo));
    CHECK(info.serverId == shop.h.engine.serverId());
  }
}

TEST_CASE("recovery from a snapshot and the journal's tail is the engine that wrote them") {
  TempDir dir;
  // Small segments, retention and dedupe window: the snapshot's replay
  // starts well into the journal, across roll-overs.
  const JournalConfig journalConfig{.dir = dir.str(), .segmentBytes = 16 * 1024};
  const SnapshotConfig snapshotConfig{.every = 500, .keepSegments = true};
  const EngineConfig engineConfig{.shards = 3, .retention = 200, .dedupeWindow = 300};
  ShopState before;
  Seq head = 0;
  uint64_t serverId = 0;
  size_t liveHolds = 0;
  CommandId deposit = CommandId::random();
  Reply depositReply;
  {
    DurableShop shop(journalConfig, snapshotConfig, engineConfig);
    CHECK_FALSE(shop.recovered.snapshot);
    open(shop.h);
    loadInPhases(shop, 4, 13);
    load(shop.h, 3);  // a tail after the newest snapshot
    shop.settle();
    depositReply = shop.h.run(Deposit{"c1", 250}, deposit);  // still retained at the restart
    REQUIRE(depositReply.status == ReplyStatus::accepted);
    before = shop.h.engine.snapshot();
    liveHolds = shop.h.engine.holds().liveCount();
    REQUIRE(liveHolds > 0);  // the snapshots and the tail carry live holds
    head = shop.h.engine.log().headSeq();
    serverId = shop.h.engine.serverId();
    REQUIRE(listSnapshots(dir.str()).size() == 2);  // the newest, and one to fall back on
    REQUIRE(shop.journal.stats().segments.load() > 3);
  }

  SUBCASE("from the newest snapshot") {
    DurableShop shop(journalConfig, snapshotConfig, engineConfig);
    REQUIRE(shop.recovered.snapshot);
    const SnapshotInfo& used = *shop.recovered.snapshot;
    CHECK(used.seq == listSnapshots(dir.str()).front().first);
    CHECK(used.replayFrom > 1);
    CHECK(shop.recovered.replayed == head - used.seq);
    CHECK(shop.recovered.skipped.empty());
    CHECK(shop.h.engine.snapshot() == before);
    CHECK(shop.h.engine.log().headSeq() == head);
    CHECK(shop.h.engine.serverId() == serverId);
    CHECK(shop.h.engine.log().oldestSeq() == head - 200 + 1);  // the retention, back in memory
    Reply stats = shop.h.run(GetStats{});
    REQUIRE(stats.stats);
    CHECK(stats.stats->customers == 40);  // from the snapshot's count
    CHECK(stats.stats->products == 6);
    CHECK(stats.stats->liveHolds == liveHolds);

    // Retried across the restart: the original outcome, nothing applied.
    Reply again = shop.h.run(Deposit{"c1", 250}, deposit);
    REQUIRE(again.status == ReplyStatus::accepted);
    CHECK(again.event->seq == depositReply.event->seq);
    CHECK(shop.h.listener.events.empty());

    // New work carries on the sequence with the stock the replay states.
    load(shop.h, 2);
    shop.settle();
    CHECK(shop.h.listener.events.front().seq == head + 1);
    std::vector<Event> all;
    readJournal(dir.str(),
                [&](Seq, kj::ArrayPtr<const capnp::word> m) { all.push_back(decodeEvent(m)); });
    CHECK(testkit::firstStatedMismatch(all).empty());
    CHECK(replay(all) == shop.h.engine.snapshot());
  }

  SUBCASE("the same state as a full replay of the journal") {
    for (const auto& [seq, path] : listSnapshots(dir.str())) fs::remove(path);
    DurableShop shop(journalConfig, snapshotConfig, engineConfig);
    CHECK_FALSE(shop.recovered.snapshot);
    CHECK(shop.recovered.replayed == head);
    CHECK(shop.h.engine.snapshot() == before);
  }

  SUBCASE("a damaged newest snapshot: the older one is used") {
    auto written = listSnapshots(dir.str());
    std::string newest = written.front().second;
    {
      std::fstream f(newest, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(fs::file_size(newest) / 2));
      f.put('\x55');
    }
    DurableShop shop(journalConfig, snapshotConfig, engineConfig);
    REQUIRE(shop.recovered.snapshot);
    CHECK(shop.recovered.snapshot->seq == written[1].first);
    REQUIRE(shop.recovered.skipped.size() == 1);
    CHECK(shop.recovered.skipped[0].find(newest) != std::string::npos);
    // Set aside, so that no later start or clean-up takes it for a snapshot.
    CHECK(fs::exists(newest + ".unused"));
    CHECK(listSnapshots(dir.str()).size() == 1);
    CHECK(shop.h.engine.snapshot() == before);
  }

  SUBCASE("a snapshot past the journal's end is not used") {
    // What a power loss under --fsync never can leave: a synced snapshot
    // whose events the journal lost.
    ShopState wrong = before;
    wrong.customers.at("c1").balance += 1;
    SnapshotEncoder encoder;
    for (const auto& [id, c] : wrong.customers) encoder.customer(id, c);
    for (const auto& [id, p] : wrong.products) encoder.product(id, p);
    std::vector<SnapshotPart> parts;
    parts.push_back(encoder.finish());
    writeSnapshot(dir.str(), {.seq = head + 10, .serverId = serverId, .replayFrom = head}, parts);
    DurableShop shop(journalConfig, snapshotConfig, engineConfig);
    REQUIRE(shop.recovered.skipped.size() == 1);
    CHECK(shop.recovered.skipped[0].find("past the journal's last seq") != std::string::npos);
    CHECK(listSnapshots(dir.str()).front().first < head + 10);  // set aside
    CHECK(shop.h.engine.snapshot() == before);
    CHECK(shop.h.engine.log().headSeq() == head);
  }
}

TEST_CASE("segments that snapshots cover go, and history before them is refused, after it served") {
  TempDir dir;
  const JournalConfig journalConfig{.dir = dir.str(), .segmentBytes = 8 * 1024};
  const EngineConfig engineConfig{.shards = 2, .retention = 100, .dedupeWindow = 100};
  ShopState before;
  Seq head = 0;
  {
    DurableShop shop(journalConfig, {.every = 300}, engineConfig);
    open(shop.h);
    loadInPhases(shop, 6, 8);
    before = shop.h.engine.snapshot();
    head = shop.h.engine.log().headSeq();
    CHECK(shop.snapshots.stats().segmentsDeleted.load() > 0);
    const Seq start = shop.snapshots.journalStart();
    CHECK(start == firstJournalSeq(dir.str()));
    REQUIRE(start > 1);
    REQUIRE(start < shop.h.engine.log().oldestSeq());  // some history only on disk

    Reply gone = shop.h.run(ReadEvents{.fromSeq = 1, .maxCount = 10});
    REQUIRE(gone.rejection());
    CHECK(gone.rejection()->reason == RejectReason::retentionExceeded);
    CHECK(gone.oldestSeq == start);
    Reply page = shop.h.run(ReadEvents{.fromSeq = start, .maxCount = 10});
    REQUIRE(page.status == ReplyStatus::events);
    REQUIRE(page.page.events.size() == 10);
    CHECK(page.page.events.front().seq == start);
  }
  // What is left still recovers the whole shop.
  DurableShop shop(journalConfig, {.every = 300}, engineConfig);
  REQUIRE(shop.recovered.snapshot);
  CHECK(shop.h.engine.snapshot() == before);
  CHECK(shop.h.engine.log().headSeq() == head);
}

TEST_CASE("snapshots: keepSegments keeps every segment, and every = 0 writes no snapshot") {
  TempDir dir;
  const JournalConfig journalConfig{.dir = dir.str(), .segmentBytes = 8 * 1024};
  const EngineConfig engineConfig{.shards = 2, .retention = 100, .dedupeWindow = 100};
  SUBCASE("keep") {
    DurableShop shop(journalConfig, {.every = 100, .keepSegments = true}, engineConfig);
    open(shop.h);
    loadInPhases(shop, 4, 3);
    CHECK(shop.snapshots.stats().written.load() >= 4);
    CHECK(shop.snapshots.stats().segmentsDeleted.load() == 0);
    CHECK(firstJournalSeq(dir.str()) == 1);
  }
  SUBCASE("never") {
    DurableShop shop(journalConfig, {.every = 0}, engineConfig);
    open(shop.h);
    load(shop.h, 30);
    shop.settle();
    CHECK(shop.snapshots.stats().written.load() == 0);
    CHECK(listSnapshots(dir.str()).empty());
    CHECK(firstJournalSeq(dir.str()) == 1);
  }
}

TEST_CASE("a retention raised across a restart still recovers: snapshots ask only what was held") {
  TempDir dir;
  const JournalConfig journalConfig{.dir = dir.str(), .segmentBytes = 8 * 1024};
  const EngineConfig small{.shards = 2, .retention = 100, .dedupeWindow = 100};
  const EngineConfig large{.shards = 2, .retention = 100'000, .dedupeWindow = 100'000};
  {
    DurableShop shop(journalConfig, {.every = 300}, small);
    open(shop.h);
    loadInPhases(shop, 6, 8);
    REQUIRE(firstJournalSeq(dir.str()) > 1);  // segments went
  }
  ShopState before;
  {
    // The journal no longer holds what this retention could: the snapshots
    // taken now must not ask recovery for seqs that are gone.
    DurableShop shop(journalConfig, {.every = 300}, large);
    REQUIRE(shop.recovered.snapshot);
    loadInPhases(shop, 3, 8);
    before = shop.h.engine.snapshot();
  }
  DurableShop shop(journalConfig, {.every = 300}, large);
  REQUIRE(shop.recovered.snapshot);
  CHECK(shop.recovered.snapshot->replayFrom >= firstJournalSeq(dir.str()));
  CHECK(shop.h.engine.snapshot() == before);
}
