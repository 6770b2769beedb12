// shopd --journal as an operator meets it: restarts, a torn tail, a damaged
// file, a directory already in use, and flags that need a journal.
#include <doctest/doctest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "bus/client.h"
#include "bus/subscriber.h"
#include "tests/testkit/process.h"
#include "tests/testkit/temp_dir.h"
#include "tests/tools/shopd_process.h"

using namespace shop;
using shop::testkit::Process;
using shop::testkit::TempDir;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> shopdArgs(const TempDir& dir, std::vector<std::string> more = {}) {
  std::vector<std::string> argv = {SHOPD_PATH,         "--journal",         dir.str(),
                                   "--commands",       "tcp://127.0.0.1:*", "--events",
                                   "tcp://127.0.0.1:*"};
  argv.insert(argv.end(), more.begin(), more.end());
  return argv;
}

std::vector<fs::path> segmentsOf(const TempDir& dir) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    if (entry.path().extension() == ".journal") out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Starts shopd on `dir`, creates `customers` customers, and stops it cleanly.
void populate(const TempDir& dir, int customers) {
  Process shopd(shopdArgs(dir));
  zmq::context_t context(1);
  bus::Client client(context, testkit::endpointOf(shopd), {.timeoutMs = 5000, .retries = 0});
  for (int c = 0; c < customers; ++c) {
    REQUIRE(
        client.call(Command{CommandId::random(), CreateCustomer{"c" + std::to_string(c), c}}).ok());
  }
  shopd.signal(SIGTERM);
  REQUIRE(shopd.wait() == 0);
}

}  // namespace

TEST_CASE("shopd --journal: a restart keeps the customers, the seqs and the server id") {
  TempDir dir;
  uint64_t serverId = 0;
  Seq head = 0;
  {
    Process shopd(shopdArgs(dir));
    std::string log = shopd.waitForStderrLine("recovered 0 events", 30'000);
    CHECK(log.find("fsync always") != std::string::npos);
    zmq::context_t context(1);
    bus::Client client(context, testkit::endpointOf(shopd), {.timeoutMs = 5000, .retries = 0});
    REQUIRE(client.call(Command{CommandId::random(), CreateCustomer{"alice", 500}}).ok());
    auto page = client.call(Command{CommandId::random(), ReadEvents{1, 0}});
    REQUIRE(page.ok());
    serverId = page.reply->reply.page.serverId;
    head = page.reply->reply.page.headSeq;
    shopd.signal(SIGTERM);
    REQUIRE(shopd.wait() == 0);
  }
  Process shopd(shopdArgs(dir));
  std::string log = shopd.waitForStderrLine("recovered", 30'000);
  CHECK(log.find("recovered " + std::to_string(head) + " events") != std::string::npos);
  // The starter catalog stocks a new shop only.
  CHECK(shopd.waitForStderrLine("not loaded: the journal brought the shop back", 30'000) != "");
  zmq::context_t context(1);
  bus::Client client(context, testkit::endpointOf(shopd), {.timeoutMs = 5000, .retries = 0});
  auto alice = client.call(Command{CommandId::random(), GetCustomer{"alice"}});
  REQUIRE(alice.ok());
  REQUIRE(alice.reply->reply.customer);
  CHECK(alice.reply->reply.customer->balance == 500);
  auto page = client.call(Command{CommandId::random(), ReadEvents{1, 0}});
  REQUIRE(page.ok());
  CHECK(page.reply->reply.page.serverId == serverId);
  CHECK(page.reply->reply.page.headSeq == head);
  auto bob = client.call(Command{CommandId::random(), CreateCustomer{"bob", 1}});
  REQUIRE(bob.ok());
  CHECK(bob.reply->reply.event->seq == head + 1);
}

TEST_CASE("shopd --journal: a torn tail is cut off with a log line, and shopd starts") {
  TempDir dir;
  populate(dir, 5);
  fs::path newest = segmentsOf(dir).back();
  auto whole = fs::file_size(newest);
  {
    std::ofstream out(newest, std::ios::binary | std::ios::app);
    out.write("\x40\0\0\0garbage", 11);  // a record that says 64 bytes and stops
  }
  Process shopd(shopdArgs(dir, {"--no-catalog"}));
  std::string line = shopd.waitForStderrLine("torn tail", 30'000);
  CHECK(line.find(newest.string() + " at offset " + std::to_string(whole)) != std::string::npos);
  CHECK(shopd.waitForStderrLine("recovered 11 events", 30'000) != "");  // 6 products, 5 customers
  testkit::endpointOf(shopd);
  CHECK(fs::file_size(newest) == whole);
}

TEST_CASE("shopd --journal: a damaged record refuses to start, with the file, the offset and 65") {
  TempDir dir;
  populate(dir, 5);
  fs::path segment = segmentsOf(dir).front();
  {
    // The second record's message: well inside the file, with records after it.
    std::fstream f(segment, std::ios::binary | std::ios::in | std::ios::out);
    uint32_t first = 0;
    f.seekg(32);
    f.read(reinterpret_cast<char*>(&first), 4);
    f.seekp(32 + 8 + first + 8 + 4);
    f.write("X", 1);
  }
  std::string err;
  int code = Process::run(shopdArgs(dir), nullptr, &err);
  CHECK(code == 65);
  CHECK(err.find("is damaged at offset") != std::string::npos);
  CHECK(err.find(segment.string()) != std::string::npos);
  CHECK(err.find("Recovering a damaged journal") != std::string::npos);
}

TEST_CASE("shopd --journal: a second shopd on the same directory refuses with 75") {
  TempDir dir;
  Process first(shopdArgs(dir));
  testkit::endpointOf(first);
  std::string err;
  CHECK(Process::run(shopdArgs(dir), nullptr, &err) == 75);
  CHECK(err.find("is in use by another process") != std::string::npos);
  first.signal(SIGTERM);
  CHECK(first.wait() == 0);
}

TEST_CASE("shopd: journal flags without --journal, or with bad values, are usage errors") {
  std::string err;
  CHECK(Process::run({SHOPD_PATH, "--fsync", "never"}, nullptr, &err) == 2);
  CHECK(err.find("need --journal DIR") != std::string::npos);
  CHECK(Process::run({SHOPD_PATH, "--journal", "/tmp/x", "--fsync", "sometimes"}, nullptr, &err) ==
        2);
  CHECK(err.find("--fsync must be always, interval or never, got 'sometimes'") !=
        std::string::npos);
  CHECK(Process::run({SHOPD_PATH, "--journal", "/tmp/x", "--segment-size", "12Q"}, nullptr, &err) ==
        2);
  CHECK(err.find("--segment-size must be a size") != std::string::npos);
  std::string out;
  CHECK(Process::run({SHOPD_PATH, "--help"}, &out, nullptr) == 0);
  CHECK(out.find("a crash or a restart loses every customer and event") != std::string::npos);
  CHECK(out.find("--fsync-interval-ms") != std::string::npos);
}

TEST_CASE("shopd --journal: a subscriber far past the in-memory retention catches up from disk") {
  TempDir dir;
  // 100 events in memory, 8 KiB segments: nearly all history is on disk,
  // over dozens of segments.
  Process shopd(shopdArgs(dir, {"--no-catalog", "--retention", "100", "--segment-size", "8K"}));
  auto [commands, events] = testkit::endpointsOf(shopd);
  zmq::context_t context(1);
  bus::Client client(context, commands, {.timeoutMs = 10'000, .retries = 0});
  REQUIRE(client.call(Command{CommandId::random(), CreateCustomer{"alice", 0}}).ok());
  int acked = 0;
  for (int i = 0; i < 3000; ++i) {
    client.send(Command{CommandId::random(), Deposit{"alice", 1}},
                [&acked](const bus::CallResult& r) { acked += r.ok() ? 1 : 0; });
    if (client.inFlight() >= 64) client.poll(-1);
  }
  while (client.inFlight() > 0) client.poll(-1);
  REQUIRE(acked == 3000);
  REQUIRE(segmentsOf(dir).size() > 10);

  // One page, from seq 1: read from the journal, not refused.
  auto page = client.call(Command{CommandId::random(), ReadEvents{1, 500}});
  REQUIRE(page.ok());
  REQUIRE(page.reply->reply.status == ReplyStatus::events);
  const EventPage& first = page.reply->reply.page;
  CHECK(first.headSeq == 3001);
  REQUIRE(first.events.size() == 500);
  for (size_t i = 0; i < first.events.size(); ++i) CHECK(first.events[i].seq == i + 1);

  // A subscriber from seq 1 gets every event, in order, the last in memory.
  bus::SubscriberOptions options;
  options.from = 1;
  bus::CatchUpSubscriber subscriber(context, events, commands, options);
  std::vector<Event> seen;
  while (subscriber.checkpoint() < 3001) {
    subscriber.poll(10'000, [&seen](const Event& e) { seen.push_back(e); });
  }
  REQUIRE(seen.size() == 3001);
  for (size_t i = 0; i < seen.size(); ++i) REQUIRE(seen[i].seq == i + 1);
  // The gate turns some deposits away: the balance is the deposits seen.
  Money deposited = 0;
  for (const Event& e : seen) {
    if (const auto* d = std::get_if<FundsDeposited>(&e.body)) {
      deposited += d->amount;
      CHECK(d->balance == deposited);
    }
  }
  CHECK(deposited > 0);
  CHECK(subscriber.stats().gapsDetected == 0);
}

TEST_CASE("shopd --journal: snapshots bound the replay, and the segments they cover go") {
  TempDir dir;
  const std::vector<std::string> flags = {
      "--no-catalog", "--snapshot-every", "500", "--retention", "100", "--dedupe-window",
      "100",          "--segment-size",   "8K"};
  Money balance = 0;
  Seq head = 0;
  {
    Process shopd(shopdArgs(dir, flags));
    zmq::context_t context(1);
    bus::Client client(context, testkit::endpointOf(shopd), {.timeoutMs = 10'000, .retries = 0});
    REQUIRE(client.call(Command{CommandId::random(), CreateCustomer{"alice", 0}}).ok());
    for (int i = 0; i < 3000; ++i) {
      client.send(Command{CommandId::random(), Deposit{"alice", 1}}, [](const bus::CallResult&) {});
      if (client.inFlight() >= 64) client.poll(-1);
    }
    while (client.inFlight() > 0) client.poll(-1);
    auto alice = client.call(Command{CommandId::random(), GetCustomer{"alice"}});
    REQUIRE(alice.ok());
    balance = alice.reply->reply.customer->balance;
    head = client.call(Command{CommandId::random(), ReadEvents{0, 1}}).reply->reply.page.headSeq;
    CHECK(shopd.waitForStderrLine("journal segments before seq", 30'000) != "");
    shopd.signal(SIGTERM);
    REQUIRE(shopd.wait() == 0);
    CHECK(shopd.err().find("0 failed") != std::string::npos);
  }
  REQUIRE(balance > 0);
  std::vector<fs::path> segments = segmentsOf(dir);
  const Seq oldest = std::stoull(segments.front().filename().string().substr(0, 20));
  CHECK(oldest > 1);

  Process shopd(shopdArgs(dir, flags));
  std::string line = shopd.waitForStderrLine("recovered", 30'000);
  CHECK(line.find("recovered " + std::to_string(head) + " events (snapshot at seq") !=
        std::string::npos);
  zmq::context_t context(1);
  bus::Client client(context, testkit::endpointOf(shopd), {.timeoutMs = 10'000, .retries = 0});
  auto alice = client.call(Command{CommandId::random(), GetCustomer{"alice"}});
  REQUIRE(alice.ok());
  CHECK(alice.reply->reply.customer->balance == balance);
  // History the snapshots let go is refused with where it now starts.
  auto gone = client.call(Command{CommandId::random(), ReadEvents{1, 10}});
  REQUIRE(gone.ok());
  REQUIRE(gone.reply->reply.status == ReplyStatus::rejected);
  CHECK(gone.reply->reply.oldestSeq == oldest);
  auto page = client.call(Command{CommandId::random(), ReadEvents{oldest, 10}});
  REQUIRE(page.ok());
  REQUIRE(page.reply->reply.status == ReplyStatus::events);
  CHECK(page.reply->reply.page.events.front().seq == oldest);
}

TEST_CASE("shopd: snapshot flags without --journal, or with bad values, are usage errors") {
  std::string err;
  CHECK(Process::run({SHOPD_PATH, "--snapshot-every", "10"}, nullptr, &err) == 2);
  CHECK(err.find("need --journal DIR") != std::string::npos);
  CHECK(Process::run({SHOPD_PATH, "--keep-segments"}, nullptr, &err) == 2);
  CHECK(err.find("need --journal DIR") != std::string::npos);
  CHECK(Process::run({SHOPD_PATH, "--journal", "/tmp/x", "--snapshot-every", "often"}, nullptr,
                     &err) == 2);
  CHECK(err.find("--snapshot-every") != std::string::npos);
}
