// End to end over real TCP loopback: a real server, real DEALER/REQ/SUB
// sockets, real Cap'n Proto frames. Waits are on replies and events, never
// on sleeps; the gate is held still through the engine's test seam.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <capnp/serialize.h>

#include <climits>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "bus/client.h"
#include "bus/codec.h"
#include "bus/subscriber.h"
#include "bus/topic.h"
#include "tests/testkit/embedded_server.h"
#include "tests/testkit/event_probe.h"
#include "tests/testkit/test_log.h"

using namespace shop;
using namespace shop::bus;
using namespace shop::testkit;
namespace m = shop::testkit::match;

namespace {

Command cmd(CommandBody body) {
  return Command{CommandId::random(), std::move(body)};
}

// A copy: callers pass the temporary that call() returns.
Reply accepted(const CallResult& r) {
  REQUIRE(r.ok());
  INFO((r.reply->reply.rejection() ? r.reply->reply.rejection()->detail : std::string()));
  REQUIRE((r.reply->reply.status == ReplyStatus::accepted ||
           r.reply->reply.status == ReplyStatus::customer));
  return r.reply->reply;
}

RejectReason rejectionOf(const CallResult& r) {
  REQUIRE(r.ok());
  REQUIRE(r.reply->reply.status == ReplyStatus::rejected);
  return r.reply->reply.rejection()->reason;
}

struct Fixture {
  EmbeddedServer server;
  Client client{server.context(), server.commands()};
  EventProbe probe{server.context(), server.events(), server.commands()};

  explicit Fixture(bus::ServerConfig config = EmbeddedServer::defaultConfig())
      : server(std::move(config)) {}
};

// A raw DEALER for hand-made frames.
struct RawDealer {
  zmq::socket_t socket;
  explicit RawDealer(EmbeddedServer& s) : socket(s.context(), zmq::socket_type::dealer) {
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::rcvtimeo, 5000);
    socket.connect(s.commands());
  }
  void sendFrames(std::vector<zmq::message_t> frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      socket.send(frames[i],
                  i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  ClientReply receive() {
    zmq::message_t frame;
    // rcvtimeo bounds the wait. An empty first frame is the delimiter the
    // server adds when the request looked like a REQ envelope.
    do {
      REQUIRE(socket.recv(frame).has_value());
    } while (frame.size() == 0 && frame.more());
    return readFrame<wire::Reply>(frame, [](wire::Reply::Reader r) { return fromWire(r); });
  }
};

zmq::message_t frameOf(const Command& c) {
  capnp::MallocMessageBuilder message;
  toWire(c, message.initRoot<wire::Command>());
  return toFrame(message);
}

}  // namespace

TEST_CASE("the seed scenario over the wire: create, buy, return, overdraft, unknown, duplicate") {
  Fixture f;
  accepted(f.client.call(cmd(AddProduct{"apple", 150, 10})));
  accepted(f.client.call(cmd(AddProduct{"tv", 49'900, 1})));
  accepted(f.client.call(cmd(CreateCustomer{"alice", 10'000})));
  f.probe.expect(m::event<CustomerCreated>("alice"));

  Reply bought = accepted(f.client.call(cmd(BuyProduct{"alice", "apple", 2})));
  CHECK(std::get<ProductBought>(bought.event->body).balance == 9'700);
  Event e = f.probe.expect(m::event<ProductBought>("alice"));
  CHECK(e.seq == bought.event->seq);

  Reply returned = accepted(f.client.call(cmd(ReturnProduct{"alice", "apple", 1})));
  CHECK(std::get<ProductReturned>(returned.event->body).refund == 150);
  f.probe.expect(m::event<ProductReturned>("alice"));
  CHECK(f.server.withEngine(
            [](Engine& engine) { return engine.snapshot().products.at("apple").stock; }) == 9);

  CHECK(rejectionOf(f.client.call(cmd(BuyProduct{"alice", "tv", 1}))) ==
        RejectReason::insufficientFunds);
  f.probe.expect(m::rejected(RejectReason::insufficientFunds, "alice"));
  CHECK(rejectionOf(f.client.call(cmd(BuyProduct{"alice", "durian", 1}))) ==
        RejectReason::unknownProduct);
  f.probe.expect(m::rejected(RejectReason::unknownProduct, "alice"));
  CHECK(rejectionOf(f.client.call(cmd(CreateCustomer{"alice", 1}))) ==
        RejectReason::customerExists);
  f.probe.expect(m::rejected(RejectReason::customerExists, "alice"));

  Reply view = accepted(f.client.call(cmd(GetCustomer{"alice"})));
  CHECK(view.customer->balance == 9'850);
  f.probe.expectNone(m::event<FundsDeposited>());
}

TEST_CASE("the gate over the wire: the sixth of six pending is rejected, then five are accepted") {
  Fixture f;
  accepted(f.client.call(cmd(CreateCustomer{"alice", 0})));
  unsigned shard = f.server.holdShardOfCustomer("alice");

  std::vector<std::optional<CallResult>> results(6);
  for (size_t i = 0; i < 6; ++i) {
    f.client.send(cmd(Deposit{"alice", 100}),
                  [&results, i](const CallResult& r) { results[i] = r; });
  }
  // The shard is held, so the only reply that can come is the rejection.
  while (!results[5]) f.client.poll(-1);
  for (size_t i = 0; i < 5; ++i) CHECK_FALSE(results[i].has_value());
  CHECK(rejectionOf(*results[5]) == RejectReason::tooManyPending);
  f.probe.expect(m::rejected(RejectReason::tooManyPending, "alice"));

  f.server.resumeShard(shard);
  while (f.client.inFlight() > 0) f.client.poll(-1);
  for (size_t i = 0; i < 5; ++i) accepted(*results[i]);
  f.probe.expectInOrder({m::event<FundsDeposited>("alice"), m::event<FundsDeposited>("alice"),
                         m::event<FundsDeposited>("alice"), m::event<FundsDeposited>("alice"),
                         m::event<FundsDeposited>("alice")});
  CHECK(accepted(f.client.call(cmd(GetCustomer{"alice"}))).customer->balance == 500);
}

TEST_CASE(
    "a connection past its in-flight bound is rejected 'overloaded', and other connections are "
    "not") {
  auto config = EmbeddedServer::defaultConfig();
  config.maxInFlightPerConnection = 8;
  Fixture f(config);
  // Four customers, two deposits each: eight in flight, within every
  // customer's gate. The shards are held, so none of them can finish.
  std::vector<std::string> customers = {"c0", "c1", "c2", "c3", "c4"};
  for (const auto& c : customers) accepted(f.client.call(cmd(CreateCustomer{c, 0})));
  unsigned shards = f.server.withEngine([](Engine& engine) {
    for (unsigned k = 0; k < engine.config().shards; ++k) engine.holdShard(k);
    return engine.config().shards;
  });

  Client flood(f.server.context(), f.server.commands());
  std::vector<std::optional<CallResult>> results(10);
  for (size_t i = 0; i < 10; ++i) {
    // The 9th and 10th go to c4, whose gate is empty: only the connection's bound stops them.
    const std::string& customer = i < 8 ? customers[i / 2] : customers[4];
    flood.send(cmd(Deposit{customer, 10}), [&results, i](const CallResult& r) { results[i] = r; });
  }
  while (!results[8] || !results[9]) flood.poll(-1);
  for (size_t i = 0; i < 8; ++i) CHECK_FALSE(results[i].has_value());
  CHECK(rejectionOf(*results[8]) == RejectReason::overloaded);
  CHECK(rejectionOf(*results[9]) == RejectReason::overloaded);
  CHECK(results[8]->reply->reply.rejection()->detail.find("per connection") != std::string::npos);
  f.probe.expect(m::rejected(RejectReason::overloaded, "c4"));

  // Another connection is not touched by this one's bound: a read, answered
  // on the socket thread while the shards are held, comes back.
  CallResult page = f.client.call(cmd(ReadEvents{1, 1}));
  REQUIRE(page.ok());
  CHECK(page.reply->reply.status == ReplyStatus::events);
  CHECK(f.server.stats().connectionOverloaded == 2);

  for (unsigned k = 0; k < shards; ++k) f.server.resumeShard(k);
  while (flood.inFlight() > 0) flood.poll(-1);
  for (size_t i = 0; i < 8; ++i) accepted(*results[i]);
  // Its replies came back, so the connection may send again.
  accepted(flood.call(cmd(Deposit{"c4", 10})));
  CHECK(accepted(f.client.call(cmd(GetCustomer{"c4"}))).customer->balance == 10);
}

TEST_CASE("two clients on two customers concurrently: one reply each, and events match replies") {
  Fixture f;
  accepted(f.client.call(cmd(AddProduct{"apple", 10, 1'000'000})));
  constexpr int kPerClient = 400;
  std::vector<std::vector<Reply>> replies(2);
  auto work = [&](int who) {
    Client client(f.server.context(), f.server.commands());
    std::string customer = who == 0 ? "ann" : "ben";
    REQUIRE(client.call(cmd(CreateCustomer{customer, 1'000'000})).ok());
    int replied = 0, sent = 0;
    std::set<CommandId,
             decltype([](const CommandId& a, const CommandId& b) { return a.bytes < b.bytes; })>
        seen;
    while (replied < kPerClient) {
      while (sent < kPerClient && client.inFlight() < 5) {  // the gate's limit
        CommandBody body = sent % 3 == 0 ? CommandBody{Deposit{customer, 5}}
                                         : CommandBody{BuyProduct{customer, "apple", 1}};
        client.send(cmd(std::move(body)), [&, who](const CallResult& r) {
          REQUIRE(r.ok());
          CHECK(seen.insert(r.reply->reply.commandId).second);  // exactly one reply per id
          replies[who].push_back(r.reply->reply);
          ++replied;
        });
        ++sent;
      }
      client.poll(-1);
    }
  };
  std::thread other(work, 1);
  work(0);
  other.join();

  // Every accepted reply's event was published with the same seq and command.
  Client reader(f.server.context(), f.server.commands());
  CallResult page = reader.call(cmd(ReadEvents{1, 0}));
  REQUIRE(page.ok());
  std::map<Seq, Event> bySeq;
  for (auto& e : page.reply->reply.page.events) bySeq.emplace(e.seq, e);
  size_t checked = 0;
  for (const auto& list : replies) {
    CHECK(list.size() == kPerClient);
    for (const Reply& r : list) {
      REQUIRE(r.status == ReplyStatus::accepted);
      const Event& published = bySeq.at(r.event->seq);
      CHECK(published.commandId == r.commandId);
      CHECK(eventName(published.body) == eventName(r.event->body));
      ++checked;
    }
  }
  CHECK(checked == 2 * kPerClient);
}

TEST_CASE("a late joiner from seq 1 sees every event exactly once, in order, while commands flow") {
  Fixture f;
  for (int i = 0; i < 300; ++i)
    accepted(f.client.call(cmd(CreateCustomer{"early" + std::to_string(i), 1})));

  std::atomic<bool> writing{true};
  std::thread writer([&] {
    Client client(f.server.context(), f.server.commands());
    for (int i = 0; i < 300; ++i) {
      REQUIRE(client.call(cmd(CreateCustomer{"late" + std::to_string(i), 1})).ok());
    }
    writing = false;
  });
  CatchUpSubscriber subscriber(f.server.context(), f.server.events(), f.server.commands(),
                               SubscriberOptions{.from = 1});
  std::vector<Seq> seen;
  auto collect = [&seen](const Event& e) { seen.push_back(e.seq); };
  while (writing) subscriber.poll(100, collect);
  writer.join();
  // Catch up to the final head: 600 creations, seq 1..600.
  while (subscriber.checkpoint() < 600) subscriber.poll(1000, collect);
  REQUIRE(seen.size() == 600);
  for (size_t i = 0; i < seen.size(); ++i) CHECK(seen[i] == i + 1);
}

TEST_CASE("a forced gap (tiny high-water marks and a burst) is detected and repaired") {
  auto config = EmbeddedServer::defaultConfig();
  config.eventsSendHwm = 2;
  config.eventsSendBuffer = 4096;
  Fixture f(config);
  SubscriberOptions options{.from = 1, .rcvHwm = 2};
  CatchUpSubscriber subscriber(f.server.context(), f.server.events(), f.server.commands(), options);
  std::vector<Seq> seen;
  auto collect = [&seen](const Event& e) { seen.push_back(e.seq); };
  accepted(f.client.call(cmd(CreateCustomer{"first", 1})));
  while (seen.empty()) subscriber.poll(1000, collect);  // subscribed and caught up

  // A burst while the subscriber does not read: PUB must drop.
  constexpr int kBurst = 3000;
  int replied = 0;
  for (int i = 0; i < kBurst; ++i) {
    f.client.send(cmd(CreateCustomer{"c" + std::to_string(i), 1}), [&replied](const CallResult& r) {
      REQUIRE(r.ok());
      ++replied;
    });
    if (f.client.inFlight() >= 100) f.client.poll(-1);
  }
  while (replied < kBurst) f.client.poll(-1);

  while (subscriber.checkpoint() < kBurst + 1) subscriber.poll(1000, collect);
  REQUIRE(seen.size() == kBurst + 1);
  for (size_t i = 0; i < seen.size(); ++i) REQUIRE(seen[i] == i + 1);
  CHECK(subscriber.stats().gapsDetected + subscriber.stats().eventsReread > 0);
  MESSAGE("gaps detected " << subscriber.stats().gapsDetected << ", events re-read "
                           << subscriber.stats().eventsReread);
}

TEST_CASE("bad input gets a clear reply and the server keeps serving") {
  Fixture f;
  RawDealer raw(f.server);
  auto expectMalformed = [&](std::vector<zmq::message_t> frames, const std::string& fragment) {
    raw.sendFrames(std::move(frames));
    ClientReply reply = raw.receive();
    REQUIRE(reply.malformed.has_value());
    INFO(*reply.malformed);
    CHECK(reply.malformed->find(fragment) != std::string::npos);
  };
  std::vector<zmq::message_t> frames;

  SUBCASE("random bytes") {
    std::mt19937_64 rng(7);
    for (int i = 0; i < 50; ++i) {
      std::vector<uint8_t> junk(1 + rng() % 300);
      for (auto& b : junk) b = static_cast<uint8_t>(rng());
      frames.clear();
      frames.emplace_back(junk.data(), junk.size());
      raw.sendFrames(std::move(frames));
      ClientReply reply = raw.receive();
      CHECK((reply.malformed.has_value() || reply.reply.status == ReplyStatus::rejected));
    }
  }
  SUBCASE("truncated Cap'n Proto") {
    zmq::message_t good = frameOf(cmd(CreateCustomer{"t", 1}));
    frames.emplace_back(good.data(), good.size() - 8);
    expectMalformed(std::move(frames), "not a valid Command");
  }
  SUBCASE("a frame over the size limit") {
    std::vector<uint8_t> big(kMaxFrameBytes + 64, 0);
    frames.emplace_back(big.data(), big.size());
    expectMalformed(std::move(frames), "exceeds the limit");
  }
  SUBCASE("extra frames") {
    frames.push_back(frameOf(cmd(CreateCustomer{"x", 1})));
    frames.push_back(frameOf(cmd(CreateCustomer{"y", 1})));
    expectMalformed(std::move(frames), "got 2 frames");
  }
  SUBCASE("a missing body after the delimiter") {
    frames.emplace_back();
    expectMalformed(std::move(frames), "got 1 frames");
  }
  SUBCASE("huge text inside the limit is a rejected id, not a crash") {
    raw.sendFrames([] {
      std::vector<zmq::message_t> v;
      v.push_back(frameOf(cmd(CreateCustomer{std::string(12'000, 'x'), 1})));
      return v;
    }());
    ClientReply reply = raw.receive();
    REQUIRE(reply.reply.rejection());
    CHECK(reply.reply.rejection()->reason == RejectReason::invalidId);
  }
  SUBCASE("ids with control characters or '/' and bad amounts are rejected with reasons") {
    CHECK(rejectionOf(f.client.call(cmd(CreateCustomer{"bad\x01id", 1}))) ==
          RejectReason::invalidId);
    CHECK(rejectionOf(f.client.call(cmd(CreateCustomer{"a/b", 1}))) == RejectReason::invalidId);
    CHECK(rejectionOf(f.client.call(cmd(CreateCustomer{"neg", -5}))) ==
          RejectReason::invalidAmount);
    accepted(f.client.call(cmd(CreateCustomer{"rich", LLONG_MAX - 1})));
    CHECK(rejectionOf(f.client.call(cmd(Deposit{"rich", 2}))) == RejectReason::overflow);
    CHECK(rejectionOf(f.client.call(cmd(Deposit{"rich", LLONG_MIN}))) ==
          RejectReason::invalidAmount);
    f.probe.expect(m::rejected(RejectReason::overflow, "rich"));
  }

  // Whatever came before, valid commands are still served.
  accepted(f.client.call(cmd(CreateCustomer{"after", 5})));
  f.probe.expect(m::event<CustomerCreated>("after"));
}

TEST_CASE("a REQ client works as well as a DEALER") {
  Fixture f;
  zmq::socket_t req(f.server.context(), zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.set(zmq::sockopt::rcvtimeo, 5000);
  req.connect(f.server.commands());
  Command create = cmd(CreateCustomer{"req-user", 700});
  zmq::message_t frame = frameOf(create);
  req.send(frame, zmq::send_flags::none);
  zmq::message_t replyFrame;
  REQUIRE(req.recv(replyFrame).has_value());
  ClientReply reply =
      readFrame<wire::Reply>(replyFrame, [](wire::Reply::Reader r) { return fromWire(r); });
  CHECK(reply.reply.commandId == create.id);
  REQUIRE(reply.reply.status == ReplyStatus::accepted);
  CHECK(std::get<CustomerCreated>(reply.reply.event->body).initialBalance == 700);
  f.probe.expect(m::commandId(create.id));
}

TEST_CASE("a customer's topic prefix delivers exactly that customer's events") {
  Fixture f;
  zmq::socket_t sub(f.server.context(), zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::rcvtimeo, 5000);
  sub.set(zmq::sockopt::subscribe, customerTopicPrefix("al"));
  sub.connect(f.server.events());
  // Wait until the subscription is live: publish until alice's first event arrives.
  accepted(f.client.call(cmd(CreateCustomer{"al", 0})));
  accepted(f.client.call(cmd(CreateCustomer{"alice", 0})));
  zmq::message_t topic, body;
  std::vector<Event> got;
  for (int i = 0; got.empty() && i < 200; ++i) {
    accepted(f.client.call(cmd(Deposit{"alice", 1})));
    accepted(f.client.call(cmd(Deposit{"al", 1})));
    if (sub.recv(topic, zmq::recv_flags::dontwait)) {
      (void)sub.recv(body);
      got.push_back(
          readFrame<wire::Event>(body, [](wire::Event::Reader r) { return fromWire(r); }));
    }
  }
  REQUIRE_FALSE(got.empty());
  CHECK(topic.to_string().starts_with("c/al/"));
  CHECK(got[0].customer() == "al");
  while (sub.recv(topic, zmq::recv_flags::dontwait)) {
    (void)sub.recv(body);
    CHECK(readFrame<wire::Event>(body, [](wire::Event::Reader r) {
            return fromWire(r);
          }).customer() == "al");
  }
}

TEST_CASE("a client retry after a timeout reuses the commandId and is applied once") {
  Fixture f;
  accepted(f.client.call(cmd(CreateCustomer{"retry", 0})));
  Client impatient(f.server.context(), f.server.commands(), {.timeoutMs = 50, .retries = 50});
  unsigned shard = f.server.holdShardOfCustomer("retry");

  std::optional<CallResult> result;
  Command deposit = cmd(Deposit{"retry", 25});
  impatient.send(deposit, [&result](const CallResult& r) { result = r; });
  // The held shard cannot answer, so the attempt times out and is resent.
  while (impatient.retriesSent() < 2) impatient.poll(100);
  CHECK_FALSE(result.has_value());
  f.server.resumeShard(shard);
  while (!result) impatient.poll(-1);

  REQUIRE(result->ok());
  CHECK(result->reply->reply.commandId == deposit.id);
  CHECK(result->reply->reply.status == ReplyStatus::accepted);
  CHECK(accepted(f.client.call(cmd(GetCustomer{"retry"}))).customer->balance == 25);
  CallResult page = f.client.call(cmd(ReadEvents{1, 0}));
  REQUIRE(page.ok());
  int deposits = 0;
  for (const auto& e : page.reply->reply.page.events) {
    deposits += std::holds_alternative<FundsDeposited>(e.body) && e.commandId == deposit.id;
  }
  CHECK(deposits == 1);
}

TEST_CASE("a TCP connection that never finishes the handshake is closed by the server") {
  auto config = EmbeddedServer::defaultConfig();
  config.handshakeMs = 200;
  EmbeddedServer server(config);
  const std::string& endpoint = server.commands();  // tcp://127.0.0.1:PORT
  int port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  // Send nothing. The server's greeting arrives; then, at the handshake
  // deadline, end of stream. Wait for that event (10 s at most), not a time.
  char buf[256];
  ssize_t n = 1;
  for (int reads = 0; n > 0 && reads < 100; ++reads) {
    pollfd p{fd, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 10'000) == 1);
    n = ::read(fd, buf, sizeof buf);
  }
  CHECK(n <= 0);  // closed by the server (0) or reset (-1)
  ::close(fd);
  // And the server keeps serving.
  Client client(server.context(), server.commands());
  CHECK(client.call(cmd(CreateCustomer{"after", 1})).ok());
}

namespace {

// A DEALER whose receive side holds as little as ZeroMQ and the kernel allow,
// so that the server's pipe to it fills after a few hundred replies.
struct TightDealer : RawDealer {
  explicit TightDealer(EmbeddedServer& s) : RawDealer(s) {
    socket.close();
    socket = zmq::socket_t(s.context(), zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::rcvtimeo, 5000);
    socket.set(zmq::sockopt::rcvhwm, 8);
    socket.set(zmq::sockopt::rcvbuf, 4096);
    socket.connect(s.commands());
  }
};

bus::ServerConfig tightRepliesConfig() {
  auto config = EmbeddedServer::defaultConfig();
  config.repliesSendHwm = 8;
  config.repliesSendBuffer = 4096;
  config.maxInFlightPerConnection = 1'000'000;  // these clients pipeline thousands on purpose
  return config;
}

// Waits (on the server's own counters) until it has read `n` requests.
void awaitRequests(EmbeddedServer& server, uint64_t n) {
  for (int polls = 0; server.stats().requests < n; ++polls) REQUIRE(polls < 1'000'000);
}

}  // namespace

TEST_CASE("a client with thousands of requests outstanding gets every reply once its pipe drains") {
  EmbeddedServer server(tightRepliesConfig());
  TightDealer dealer(server);
  constexpr int kRequests = 3000;
  std::set<std::string> sent;
  for (int i = 0; i < kRequests; ++i) {
    Command c{CommandId::fromNumber(7, static_cast<uint64_t>(i)),
              CreateCustomer{"p" + std::to_string(i), 1}};
    sent.insert(c.id.toHex());
    dealer.socket.send(frameOf(c), zmq::send_flags::none);
  }
  awaitRequests(server, kRequests);
  // The pipe filled: without a backlog, ROUTER would have dropped these.
  CHECK(server.stats().repliesDeferred > 0);
  std::set<std::string> received;
  for (int i = 0; i < kRequests; ++i) {
    ClientReply r = dealer.receive();
    CHECK(r.reply.status == ReplyStatus::accepted);
    received.insert(r.reply.commandId.toHex());
  }
  CHECK(received == sent);
  auto stats = server.stats();
  CHECK(stats.backlogBytes == 0);
  CHECK(stats.requestsRefused == 0);
  CHECK(stats.repliesToClosed == 0);
}

TEST_CASE("a client that never reads is held to its backlog cap, and others are still served") {
  auto config = tightRepliesConfig();
  config.backlogBytesPerPeer = 16 << 10;
  EmbeddedServer server(config);
  TightDealer silent(server);
  constexpr int kRequests = 3000;
  for (int i = 0; i < kRequests; ++i) {
    Command c{CommandId::fromNumber(8, static_cast<uint64_t>(i)),
              CreateCustomer{"q" + std::to_string(i), 1}};
    silent.socket.send(frameOf(c), zmq::send_flags::none);
  }
  awaitRequests(server, kRequests);
  auto stats = server.stats();
  CHECK(stats.requestsRefused > 0);
  CHECK(stats.backlogPeers == 1);
  // The cap, plus what was already in flight when the backlog crossed it.
  CHECK(stats.backlogBytes <= config.backlogBytesPerPeer + (256u << 10));

  Client other(server.context(), server.commands());
  CHECK(other.call(cmd(CreateCustomer{"other", 1})).ok());

  // Reading at last: exactly one reply per request that was not refused,
  // then nothing else: the next reply is for the next request.
  auto answered = static_cast<int>(kRequests - stats.requestsRefused);
  for (int i = 0; i < answered; ++i) CHECK(silent.receive().reply.status == ReplyStatus::accepted);
  Command last = cmd(CreateCustomer{"last", 1});
  silent.socket.send(frameOf(last), zmq::send_flags::none);
  CHECK(silent.receive().reply.commandId == last.id);
  CHECK(server.stats().backlogBytes == 0);
}

TEST_CASE("a shard that fails outside any command stops the server cleanly, and says why") {
  EmbeddedServer server;
  Client client(server.context(), server.commands());
  REQUIRE(client.call(cmd(CreateCustomer{"before", 10})).ok());
  unsigned broken = server.withEngine([](Engine& engine) {
    unsigned shard = engine.shardOfCustomer("victim");
    engine.injectShardFailure(shard);
    // Queued behind the failure: it never finishes, and the stop must not wait for it.
    engine.submit(cmd(CreateCustomer{"victim", 1}), bus::Server::kLocalTag);
    return shard;
  });
  // The server notices at once, with no request needed, and stops.
  std::string error = server.waitStopped();
  CHECK(error.find("shard " + std::to_string(broken)) != std::string::npos);
  CHECK(error.find("failure injected by a test") != std::string::npos);
  CHECK(server.finalStats().replies == 1);
}

TEST_CASE(
    "a subscriber stalled past retention is told it was truncated, and commands kept flowing") {
  auto config = EmbeddedServer::defaultConfig();
  config.eventsSendHwm = 2;
  config.eventsSendBuffer = 4096;
  auto engineConfig = EmbeddedServer::defaultEngineConfig();
  engineConfig.retention = 100;
  EmbeddedServer server(config, engineConfig);
  Client client(server.context(), server.commands());
  CatchUpSubscriber subscriber(server.context(), server.events(), server.commands(),
                               SubscriberOptions{.from = 1, .rcvHwm = 2});
  std::vector<Seq> seen;
  auto collect = [&seen](const Event& e) { seen.push_back(e.seq); };
  REQUIRE(client.call(cmd(CreateCustomer{"first", 1})).ok());
  while (seen.empty()) subscriber.poll(1000, collect);

  // The subscriber stops reading; every command is still answered.
  constexpr int kBurst = 1000;
  for (int i = 0; i < kBurst; ++i) {
    REQUIRE(client.call(cmd(CreateCustomer{"s" + std::to_string(i), 1})).ok());
  }
  // On resume it delivers what it still holds, then cannot read on: the
  // events after that have left retention, and it says so.
  Seq oldest = 0;
  try {
    for (;;) subscriber.poll(1000, collect);
  } catch (const TruncatedError& e) {
    oldest = e.oldest;
    CHECK(e.wanted == seen.back() + 1);
    CHECK(std::string(e.what()).find("truncated") != std::string::npos);
  }
  CHECK(oldest == kBurst + 1 - 100 + 1);  // head kBurst + 1, 100 retained
  for (size_t i = 0; i < seen.size(); ++i) CHECK(seen[i] == i + 1);  // nothing skipped
}

namespace {

size_t openFds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}

}  // namespace

TEST_CASE("waves of connections that send and vanish leave no fds or backlogs behind") {
  // The access thread counts connections (socket monitor events), which is
  // what the test waits on.
  EmbeddedServer server(EmbeddedServer::defaultConfig(), EmbeddedServer::defaultEngineConfig(),
                        bus::AccessConfig{});
  Client client(server.context(), server.commands());
  REQUIRE(client.call(cmd(CreateCustomer{"steady", 1})).ok());
  size_t baseline = openFds();
  for (int wave = 0; wave < 5; ++wave) {
    for (int i = 0; i < 100; ++i) {
      zmq::socket_t dealer(server.context(), zmq::socket_type::dealer);
      dealer.set(zmq::sockopt::linger, 0);
      dealer.connect(server.commands());
      dealer.send(frameOf(cmd(CreateCustomer{"w" + std::to_string(wave * 100 + i), 1})),
                  zmq::send_flags::none);
    }  // closed without reading
    {
      // Served after the wave: connections are accepted in order, so the
      // server has accepted every one of the wave that reached it.
      Client marker(server.context(), server.commands());
      CHECK(marker.call(cmd(Deposit{"steady", 1})).ok());
    }
    // Then it sees each of them (and the marker) go, and closes its end.
    for (int polls = 0; server.access().stats().liveCommands > 1; ++polls) {
      REQUIRE(polls < 100'000'000);
    }
    // A margin of a few descriptors (the sanitizers open some of their
    // own); a leak would be 100 per wave.
    CHECK(openFds() <= baseline + 10);
  }
  auto stats = server.stats();
  CHECK(stats.backlogPeers == 0);
  CHECK(stats.backlogBytes == 0);
}

namespace {
// Sends stderr to a pipe until destroyed, then restores it; `printed()`
// reads what was written meanwhile.
class StderrCapture {
 public:
  StderrCapture() {
    REQUIRE(::pipe2(fds_, O_NONBLOCK) == 0);
    saved_ = ::dup(STDERR_FILENO);
    REQUIRE(saved_ >= 0);
    REQUIRE(::dup2(fds_[1], STDERR_FILENO) >= 0);
  }
  ~StderrCapture() {
    restore();
    if (fds_[0] >= 0) ::close(fds_[0]);
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  std::string printed() {
    restore();
    std::string out;
    char buffer[4096];
    for (ssize_t n; (n = ::read(fds_[0], buffer, sizeof buffer)) > 0;) {
      out.append(buffer, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    ::close(fds_[1]);
    saved_ = -1;
  }
  int fds_[2] = {-1, -1};
  int saved_ = -1;
};
}  // namespace

TEST_CASE("the test kit's server is quiet: its log lines are kept for the test, not printed") {
  TestLog::echo(false);  // as by default, whatever SHOP_TEST_LOG says
  TestLog::clear();
  std::string commands;
  std::string printed;
  {
    StderrCapture capture;
    {
      EmbeddedServer server;
      commands = server.commands();
      server.stop();
    }
    printed = capture.printed();
  }
  CHECK(printed.find("serving commands on") == std::string::npos);
  CHECK(TestLog::contains("serving commands on " + commands));
  CHECK(TestLog::contains("stopped after"));
}
