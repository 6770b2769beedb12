// The catch-up subscriber against a server that restarts on the same
// endpoints, and against one that sends events it cannot read. Real sockets
// over TCP loopback; waits are on deliveries and callbacks, never on sleeps.
#include <doctest/doctest.h>

#include <atomic>
#include <limits>
#include <memory>
#include <thread>

#include "bus/client.h"
#include "bus/subscriber.h"
#include "tests/testkit/embedded_server.h"
#include "tests/testkit/fake_server.h"
#include "tests/testkit/wire_patch.h"

using namespace shop;
using namespace shop::bus;
using shop::testkit::EmbeddedServer;
using shop::testkit::FakeServer;
using shop::testkit::FakeServerConfig;

namespace {

Command cmd(CommandBody body) {
  return Command{CommandId::random(), std::move(body)};
}

EventPage pageOf(Client& client, Seq from, uint32_t maxCount) {
  CallResult r = client.call(cmd(ReadEvents{from, maxCount}));
  REQUIRE(r.ok());
  REQUIRE(r.reply->reply.status == ReplyStatus::events);
  return r.reply->reply.page;
}

uint64_t serverIdOf(EmbeddedServer& server) {
  return server.withEngine([](Engine& engine) { return engine.serverId(); });
}

// Every event the server holds.
std::vector<Event> logOf(EmbeddedServer& server) {
  Client client(server.context(), server.commands());
  std::vector<Event> events;
  for (;;) {
    EventPage page = pageOf(client, events.size() + 1, 0);
    if (page.events.empty()) return events;
    events.insert(events.end(), page.events.begin(), page.events.end());
  }
}

void create(Client& client, const std::string& customer) {
  CallResult r = client.call(cmd(CreateCustomer{customer, 1}));
  REQUIRE(r.ok());
  REQUIRE(r.reply->reply.status == ReplyStatus::accepted);
}

// What a subscriber handed out, and its callbacks.
struct Recorder {
  std::vector<Event> events;
  std::vector<StreamReset> resets;
  size_t atReset = 0;  // events.size() when the last reset was announced
  std::vector<std::pair<Seq, std::string>> skipped;

  SubscriberOptions options(SubscriberOptions o) {
    o.onReset = [this](const StreamReset& r) {
      resets.push_back(r);
      atReset = events.size();
    };
    o.onSkipped = [this](Seq seq, const std::string& why) { skipped.emplace_back(seq, why); };
    return o;
  }
  std::vector<Event> sinceReset() const {
    return {events.begin() + static_cast<std::ptrdiff_t>(atReset), events.end()};
  }
};

// Polls until done(); fails after 30 s of polls that delivered nothing.
template <typename Done>
void pollUntil(CatchUpSubscriber& subscriber, Recorder& recorder, Done done) {
  auto deliver = [&recorder](const Event& e) { recorder.events.push_back(e); };
  for (int idle = 0; !done();) {
    if (subscriber.poll(100, deliver) == 0) REQUIRE(++idle < 300);
  }
}

// The endpoints of `server`, for a new server that takes its place.
bus::ServerConfig sameEndpointsAs(const EmbeddedServer& server) {
  bus::ServerConfig config = EmbeddedServer::defaultConfig();
  config.commandsEndpoint = server.commands();
  config.eventsEndpoint = server.events();
  return config;
}

}  // namespace

TEST_CASE("every ReadEvents page carries its server's id, the same on every page of one server") {
  EmbeddedServer first;
  EmbeddedServer second;
  Client a(first.context(), first.commands());
  Client b(second.context(), second.commands());
  for (int i = 0; i < 3; ++i) create(a, "c" + std::to_string(i));

  uint64_t id = serverIdOf(first);
  CHECK(id != 0);
  CHECK(pageOf(a, 1, 1).serverId == id);
  CHECK(pageOf(a, 2, 1).serverId == id);
  CHECK(pageOf(a, std::numeric_limits<Seq>::max(), 1).serverId == id);  // an empty page too
  uint64_t other = pageOf(b, 1, 0).serverId;
  CHECK(other == serverIdOf(second));
  CHECK(other != 0);
  CHECK(other != id);

  // A configured id is the one pages carry.
  EngineConfig fixedId = EmbeddedServer::defaultEngineConfig();
  fixedId.serverId = 0x0123456789ABCDEF;
  EmbeddedServer fixed(EmbeddedServer::defaultConfig(), fixedId);
  Client c(fixed.context(), fixed.commands());
  CHECK(pageOf(c, 1, 0).serverId == 0x0123456789ABCDEF);
}

TEST_CASE("a server restarted with fewer events: one reset, then exactly its events from seq 1") {
  auto first = std::make_unique<EmbeddedServer>();
  bus::ServerConfig sameEndpoints = sameEndpointsAs(*first);
  zmq::context_t context(1);  // the subscriber's own: it outlives both servers
  Recorder seen;
  CatchUpSubscriber subscriber(context, first->events(), first->commands(),
                               seen.options({.from = 1}));
  {
    Client client(first->context(), first->commands());
    for (int i = 0; i < 10; ++i) create(client, "old" + std::to_string(i));
  }
  pollUntil(subscriber, seen, [&] { return subscriber.checkpoint() == 10; });
  uint64_t oldId = serverIdOf(*first);
  CHECK(subscriber.serverId() == oldId);
  first.reset();

  EmbeddedServer second(sameEndpoints);
  uint64_t newId = serverIdOf(second);
  REQUIRE(newId != oldId);
  Client client(second.context(), second.commands());
  // Three events against the old ten: by seq alone, nothing new.
  for (int i = 0; i < 3; ++i) create(client, "new" + std::to_string(i));
  pollUntil(subscriber, seen, [&] { return !seen.resets.empty() && subscriber.checkpoint() == 3; });

  REQUIRE(seen.resets.size() == 1);
  const StreamReset& reset = seen.resets[0];
  CHECK(reset.oldServerId == oldId);
  CHECK(reset.newServerId == newId);
  CHECK(reset.oldCheckpoint == 10);
  CHECK(reset.from == 1);
  CHECK(reset.reason == "server id " + serverIdHex(oldId) + " -> " + serverIdHex(newId));
  CHECK(seen.atReset == 10);
  CHECK(subscriber.serverId() == newId);

  // It follows the new server live from there, with no second reset.
  create(client, "new3");
  pollUntil(subscriber, seen, [&] { return subscriber.checkpoint() == 4; });
  std::vector<Event> log = logOf(second);
  std::vector<Event> after = seen.sinceReset();
  REQUIRE(log.size() == 4);
  REQUIRE(after.size() == 4);
  for (size_t i = 0; i < after.size(); ++i) {
    CHECK(after[i].seq == i + 1);
    CHECK(after[i].commandId == log[i].commandId);
  }
  CHECK(subscriber.stats().resets == 1);
  CHECK(seen.resets.size() == 1);
}

TEST_CASE(
    "a server restarted past the old checkpoint while events flow: reset at once, and none of its "
    "events is taken for the old stream's") {
  auto first = std::make_unique<EmbeddedServer>();
  bus::ServerConfig sameEndpoints = sameEndpointsAs(*first);
  zmq::context_t context(1);
  Recorder seen;
  CatchUpSubscriber subscriber(context, first->events(), first->commands(),
                               seen.options({.from = 1}));
  {
    Client client(first->context(), first->commands());
    for (int i = 0; i < 5; ++i) create(client, "old" + std::to_string(i));
  }
  pollUntil(subscriber, seen, [&] { return subscriber.checkpoint() == 5; });
  uint64_t oldId = serverIdOf(*first);
  first.reset();

  EmbeddedServer second(sameEndpoints);
  {
    // Past the old checkpoint before the subscriber looks again: the new
    // server's seq 6 onwards would carry on where the old stream stopped.
    Client client(second.context(), second.commands());
    for (int i = 0; i < 10; ++i) create(client, "new" + std::to_string(i));
  }
  // And a stream that does not pause, so the subscriber is never idle.
  constexpr int kCap = 20'000;
  std::atomic<bool> stop{false};
  std::atomic<int> sent{10};
  std::atomic<bool> failed{false};
  std::thread writer([&] {
    Client client(second.context(), second.commands());
    while (!stop && sent < kCap) {
      if (!client.call(cmd(CreateCustomer{"flow" + std::to_string(sent.load()), 1})).ok()) {
        failed = true;
        return;
      }
      ++sent;
    }
  });
  pollUntil(subscriber, seen, [&] { return !seen.resets.empty(); });
  int sentAtReset = sent;
  stop = true;
  writer.join();
  CHECK_FALSE(failed);
  CHECK(sentAtReset < kCap);  // noticed while the traffic flowed, not once it stopped

  Client client(second.context(), second.commands());
  Seq head = pageOf(client, std::numeric_limits<Seq>::max(), 1).headSeq;
  pollUntil(subscriber, seen, [&] { return subscriber.checkpoint() == head; });

  REQUIRE(seen.resets.size() == 1);
  CHECK(seen.resets[0].oldServerId == oldId);
  CHECK(seen.resets[0].newServerId == serverIdOf(second));
  CHECK(seen.resets[0].oldCheckpoint == 5);
  CHECK(seen.resets[0].from == 1);
  // Before the reset: the old server's five, and nothing of the new one's.
  CHECK(seen.atReset == 5);
  for (size_t i = 0; i < seen.atReset; ++i) CHECK(seen.events[i].customer().starts_with("old"));
  // After it: exactly the new server's log, in order.
  std::vector<Event> log = logOf(second);
  std::vector<Event> after = seen.sinceReset();
  REQUIRE(log.size() == head);
  REQUIRE(after.size() == head);
  for (size_t i = 0; i < after.size(); ++i) {
    REQUIRE(after[i].seq == i + 1);
    REQUIRE(after[i].commandId == log[i].commandId);
  }
  CHECK(subscriber.stats().resets == 1);
}

namespace {

// Events 1..n, creations of prefix + seq; event `unknown` (if any) of a
// kind this build does not know.
std::vector<kj::Array<capnp::word>> creations(Seq n, const std::string& prefix, Seq unknown = 0) {
  std::vector<kj::Array<capnp::word>> events;
  for (Seq seq = 1; seq <= n; ++seq) {
    Event e{seq, 1, CommandId::fromNumber(prefix.size(), seq),
            CustomerCreated{prefix + std::to_string(seq), 1}};
    events.push_back(testkit::eventMessage(e, seq == unknown));
  }
  return events;
}

}  // namespace

TEST_CASE(
    "live events over a new connection wait for a page: a new server's seqs that carry on where "
    "the "
    "old ones stopped are not taken for the old stream's") {
  // Both servers are stand-ins, so that the new one publishes only once the
  // subscription is in place: its seq 6 is sure to arrive right after the
  // old stream's 5, live.
  auto old = std::make_unique<FakeServer>(
      FakeServerConfig{.events = creations(5, "old"), .serverId = 0x01D0000000000001});
  zmq::context_t context(1);
  Recorder seen;
  // No periodic read here: only the new connection can give the new server away.
  CatchUpSubscriber subscriber(context, old->events(), old->commands(),
                               seen.options({.from = 1, .idleCheckMs = 3'600'000}));
  pollUntil(subscriber, seen, [&] { return subscriber.checkpoint() == 5; });
  FakeServerConfig fresh{.events = creations(20, "new"),
                         .serverId = 0x2E00000000000002,
                         .commandsEndpoint = old->commands(),
                         .eventsEndpoint = old->events()};
  old.reset();

  std::vector<std::string> frames;
  for (const auto& message : fresh.events) frames.push_back(FakeServer::bytesOf(message));
  FakeServer server(std::move(fresh));
  // The SUB socket subscribes again on its new connection only when its
  // owner uses it: poll (nothing comes yet) until the subscription arrives.
  auto none = [](const Event&) { FAIL("nothing is published yet"); };
  for (int polls = 0; !server.waitForSubscriber(std::chrono::milliseconds(0)); ++polls) {
    REQUIRE(polls < 3000);
    subscriber.poll(10, none);
  }
  server.publish(frames);
  pollUntil(subscriber, seen, [&] { return subscriber.checkpoint() == 20; });

  REQUIRE(seen.resets.size() == 1);
  CHECK(seen.resets[0].oldServerId == 0x01D0000000000001);
  CHECK(seen.resets[0].newServerId == 0x2E00000000000002);
  CHECK(seen.resets[0].oldCheckpoint == 5);
  CHECK(seen.atReset == 5);
  std::vector<Event> after = seen.sinceReset();
  REQUIRE(after.size() == 20);
  for (size_t i = 0; i < after.size(); ++i) {
    CHECK(after[i].seq == i + 1);
    CHECK(after[i].customer() == "new" + std::to_string(i + 1));
  }
}

TEST_CASE("an event in a page that cannot be decoded is reported once and skipped, not fatal") {
  FakeServer fake({.events = creations(3, "c", 2)});
  zmq::context_t context(1);
  Recorder seen;
  CatchUpSubscriber subscriber(context, fake.events(), fake.commands(), seen.options({.from = 1}));
  pollUntil(subscriber, seen, [&] { return subscriber.checkpoint() == 3; });

  REQUIRE(seen.events.size() == 2);
  CHECK(seen.events[0].seq == 1);
  CHECK(seen.events[1].seq == 3);
  REQUIRE(seen.skipped.size() == 1);
  CHECK(seen.skipped[0].first == 2);
  CHECK(seen.skipped[0].second.find("unknown event kind 100") != std::string::npos);
  CHECK(subscriber.stats().skipped == 1);
  CHECK(subscriber.serverId() == fake.serverId());
  CHECK(seen.resets.empty());
}

TEST_CASE(
    "a live event that cannot be decoded is reported once and skipped, and a frame with no "
    "readable seq is counted") {
  // Pages say the head is 3 but hold no event: only the live frames carry
  // them. Each read publishes them all again, after a frame that is not even
  // a message.
  FakeServerConfig config{.events = creations(3, "c", 2), .live = {"junk!"}, .emptyPages = true};
  for (const auto& message : config.events) config.live.push_back(FakeServer::bytesOf(message));
  FakeServer fake(std::move(config));
  zmq::context_t context(1);
  Recorder seen;
  CatchUpSubscriber subscriber(context, fake.events(), fake.commands(), seen.options({.from = 1}));
  pollUntil(subscriber, seen, [&] { return subscriber.checkpoint() == 3; });

  REQUIRE(seen.events.size() == 2);
  CHECK(seen.events[0].seq == 1);
  CHECK(seen.events[1].seq == 3);
  REQUIRE(seen.skipped.size() == 1);
  CHECK(seen.skipped[0].first == 2);
  CHECK(seen.skipped[0].second.find("unknown event kind 100") != std::string::npos);
  CHECK(subscriber.stats().malformedFrames >= 1);

  // The frames come again at the next reads: duplicates now, and seq 2 is
  // not reported a second time.
  uint64_t duplicates = subscriber.stats().duplicatesDropped;
  pollUntil(subscriber, seen,
            [&] { return subscriber.stats().duplicatesDropped >= duplicates + 3; });
  CHECK(seen.skipped.size() == 1);
  CHECK(subscriber.stats().skipped == 1);
  CHECK(seen.events.size() == 2);
}

TEST_CASE(
    "another server behind the same connections, while live events never pause, is noticed by the "
    "periodic read") {
  // Frames of seqs 1..3 stream about every millisecond: duplicates once
  // the subscriber is past them, so the socket is never idle, no seq shows a
  // gap, and no connection is made. Only a page can tell.
  FakeServerConfig config{
      .events = creations(10, "old"), .streamLive = true, .serverId = 0x01D0000000000001};
  for (const auto& message : creations(3, "any"))
    config.live.push_back(FakeServer::bytesOf(message));
  FakeServer server(std::move(config));
  zmq::context_t context(1);
  Recorder seen;
  CatchUpSubscriber subscriber(context, server.events(), server.commands(),
                               seen.options({.from = 1, .idleCheckMs = 200}));
  pollUntil(subscriber, seen, [&] { return subscriber.checkpoint() == 10; });
  // Live frames arrive: the socket is busy.
  uint64_t duplicates = subscriber.stats().duplicatesDropped;
  pollUntil(subscriber, seen,
            [&] { return subscriber.stats().duplicatesDropped > duplicates + 100; });

  std::string reason;
  SUBCASE("with another id") {
    server.replace(creations(3, "new"), 0x2E00000000000002);
    reason = "server id 01d0000000000001 -> 2e00000000000002";
  }
  SUBCASE("with the same id, and a head below the checkpoint") {
    server.replace(creations(3, "new"), 0x01D0000000000001);
    reason = "server id 01d0000000000001, whose head 3 is below the checkpoint 10";
  }
  duplicates = subscriber.stats().duplicatesDropped;
  pollUntil(subscriber, seen, [&] { return !seen.resets.empty() && subscriber.checkpoint() == 3; });
  CHECK(subscriber.stats().duplicatesDropped > duplicates);  // the stream flowed meanwhile
  REQUIRE(seen.resets.size() == 1);
  CHECK(seen.resets[0].reason == reason);
  CHECK(seen.resets[0].oldCheckpoint == 10);
  CHECK(seen.atReset == 10);
  std::vector<Event> after = seen.sinceReset();
  REQUIRE(after.size() == 3);
  for (size_t i = 0; i < after.size(); ++i) {
    CHECK(after[i].seq == i + 1);
    CHECK(after[i].customer() == "new" + std::to_string(i + 1));
  }
}
