// CURVE, ZAP, roles and the connection cap, over real TCP loopback. Each
// wait is on a handshake event from a socket monitor or on a reply, never on
// a sleep.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "bus/access.h"
#include "bus/client.h"
#include "bus/subscriber.h"
#include "tests/testkit/embedded_server.h"

using namespace shop;
using namespace shop::bus;
using namespace shop::testkit;

namespace {

// A temporary directory with a server key pair and three client pairs:
// alice (client), bob (not listed at first) and root (admin).
struct Keys {
  std::filesystem::path dir;
  ClientCurve alice, bob, root;

  Keys() {
    char pattern[] = "/tmp/shop-keys-XXXXXX";
    dir = ::mkdtemp(pattern);
    for (const char* name : {"server", "alice", "bob", "root"}) {
      writeKeyFiles((dir / name).string(), generateKeyPair());
    }
    writeList("clients", {"alice"});
    writeList("admins", {"root"});
    auto client = [&](const char* name) {
      return ClientCurve::fromFiles(path("server.pub"), path(std::string(name) + ".key"));
    };
    alice = client("alice");
    bob = client("bob");
    root = client("root");
  }
  ~Keys() { std::filesystem::remove_all(dir); }

  std::string path(const std::string& name) const { return (dir / name).string(); }
  // An authorized-keys file listing these clients' public keys.
  void writeList(const std::string& file, std::initializer_list<const char*> names) const {
    std::ofstream out(path(file));
    for (const char* name : names) {
      out << readKeyFile(path(std::string(name) + ".pub")).publicKey << " " << name << "\n";
    }
  }
  AccessConfig config() const {
    return AccessConfig{.secretKeyFile = path("server.key"),
                        .authorizedKeysFile = path("clients"),
                        .adminKeysFile = path("admins")};
  }
};

// Connects `socket` and returns its first handshake event: succeeded, a
// failure, or a disconnect (the server closed it unanswered).
int firstHandshakeEvent(zmq::context_t& context, zmq::socket_t& socket,
                        const std::string& endpoint) {
  static int monitors = 0;
  std::string monitor = "inproc://access-test-monitor-" + std::to_string(monitors++);
  REQUIRE(zmq_socket_monitor(socket.handle(), monitor.c_str(),
                             ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_DISCONNECTED) == 0);
  zmq::socket_t events(context, zmq::socket_type::pair);
  events.set(zmq::sockopt::rcvtimeo, 10'000);
  events.set(zmq::sockopt::linger, 0);
  events.connect(monitor);
  socket.connect(endpoint);
  zmq::message_t event, address;
  REQUIRE(events.recv(event).has_value());
  (void)events.recv(address);
  uint16_t kind = 0;
  std::memcpy(&kind, event.data(), sizeof kind);
  // Stop monitoring before `events` closes: ZeroMQ's I/O thread (shared
  // with the server here) would block sending the next event to nobody.
  zmq_socket_monitor(socket.handle(), nullptr, 0);
  return kind;
}

int handshakeAs(EmbeddedServer& server, const ClientCurve& curve) {
  zmq::socket_t dealer(server.context(), zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  secureClient(dealer, curve);
  return firstHandshakeEvent(server.context(), dealer, server.commands());
}

Command cmd(CommandBody body) {
  return Command{CommandId::random(), std::move(body)};
}

bus::ServerConfig quickHandshakes() {
  auto config = EmbeddedServer::defaultConfig();
  config.handshakeMs = 300;  // a handshake the ZAP handler never answers ends here
  return config;
}

}  // namespace

TEST_CASE("CURVE: an authorized client is served on both sockets") {
  Keys keys;
  EmbeddedServer server(EmbeddedServer::defaultConfig(), EmbeddedServer::defaultEngineConfig(),
                        keys.config());
  Client alice(server.context(), server.commands(), ClientOptions{.curve = keys.alice});
  auto created = alice.call(cmd(CreateCustomer{"alice", 100}));
  REQUIRE(created.ok());
  CHECK(created.reply->reply.status == ReplyStatus::accepted);

  SubscriberOptions options;
  options.client.curve = keys.alice;
  CatchUpSubscriber subscriber(server.context(), server.events(), server.commands(), options);
  std::vector<Event> seen;
  while (seen.empty()) subscriber.poll(5000, [&](const Event& e) { seen.push_back(e); });
  CHECK(std::holds_alternative<CustomerCreated>(seen.front().body));
}

TEST_CASE("CURVE: an unknown key and a plain client get no connection") {
  Keys keys;
  EmbeddedServer server(EmbeddedServer::defaultConfig(), EmbeddedServer::defaultEngineConfig(),
                        keys.config());
  CHECK(handshakeAs(server, keys.bob) == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
  CHECK(handshakeAs(server, ClientCurve{}) != ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
  CHECK(server.access().stats().deniedKey >= 1);
  CHECK(handshakeAs(server, keys.alice) == ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
}

TEST_CASE("CURVE: catalog commands need an admin key, and others get forbidden") {
  Keys keys;
  EmbeddedServer server(EmbeddedServer::defaultConfig(), EmbeddedServer::defaultEngineConfig(),
                        keys.config());
  Client alice(server.context(), server.commands(), ClientOptions{.curve = keys.alice});
  Client root(server.context(), server.commands(), ClientOptions{.curve = keys.root});

  auto refused = alice.call(cmd(AddProduct{"lamp", 100, 5}));
  REQUIRE(refused.ok());
  REQUIRE(refused.reply->reply.rejection() != nullptr);
  CHECK(refused.reply->reply.rejection()->reason == RejectReason::forbidden);
  CHECK(alice.call(cmd(Restock{"lamp", 5})).reply->reply.rejection()->reason ==
        RejectReason::forbidden);

  CHECK(root.call(cmd(AddProduct{"lamp", 100, 5})).reply->reply.status == ReplyStatus::accepted);
  CHECK(root.call(cmd(Restock{"lamp", 5})).reply->reply.status == ReplyStatus::accepted);
  // Everything else is open to a client key.
  CHECK(alice.call(cmd(CreateCustomer{"alice", 500})).reply->reply.status == ReplyStatus::accepted);
  CHECK(alice.call(cmd(BuyProduct{"alice", "lamp", 2})).reply->reply.status ==
        ReplyStatus::accepted);
}

TEST_CASE("CURVE: a reload adds and removes keys for new connections") {
  Keys keys;
  EmbeddedServer server(EmbeddedServer::defaultConfig(), EmbeddedServer::defaultEngineConfig(),
                        keys.config());
  CHECK(handshakeAs(server, keys.bob) == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
  keys.writeList("clients", {"bob"});  // bob in, alice out
  uint64_t before = server.access().stats().reloads;
  server.access().reload();
  for (int polls = 0; server.access().stats().reloads == before; ++polls) {
    REQUIRE(polls < 100'000'000);
  }
  CHECK(handshakeAs(server, keys.bob) == ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
  CHECK(handshakeAs(server, keys.alice) == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
}

TEST_CASE("CURVE: with the ZAP handler stopped, nobody gets in") {
  Keys keys;
  EmbeddedServer server(quickHandshakes(), EmbeddedServer::defaultEngineConfig(), keys.config());
  server.access().pause();
  // The handshake waits for an answer that never comes; the server's
  // handshake deadline then closes the connection.
  CHECK(handshakeAs(server, keys.alice) != ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
  CHECK(handshakeAs(server, keys.root) != ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
}

TEST_CASE("past the connection cap a new connection is turned away, and let in once one closes") {
  AccessConfig access;
  access.maxConnections = 2;
  EmbeddedServer server(EmbeddedServer::defaultConfig(), EmbeddedServer::defaultEngineConfig(),
                        access);
  auto open = [&] {
    auto socket = std::make_unique<zmq::socket_t>(server.context(), zmq::socket_type::dealer);
    socket->set(zmq::sockopt::linger, 0);
    int event = firstHandshakeEvent(server.context(), *socket, server.commands());
    return std::make_pair(event, std::move(socket));
  };
  auto first = open();
  auto second = open();
  CHECK(first.first == ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
  CHECK(second.first == ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
  // The server counts a connection when its own monitor reports it, which
  // can come after the client's handshake event: wait for both to count.
  for (int polls = 0; server.access().stats().liveCommands < 2; ++polls) {
    REQUIRE(polls < 100'000'000);
  }
  auto third = open();
  CHECK(third.first == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
  CHECK(server.access().stats().deniedConnections >= 1);

  third.second.reset();
  first.second.reset();
  for (int polls = 0; server.access().stats().liveCommands > 1; ++polls) {
    REQUIRE(polls < 100'000'000);
  }
  CHECK(open().first == ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
}
