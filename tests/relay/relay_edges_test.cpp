// The relay's less travelled paths: a ZeroMQ destination, several messages
// in flight, a parked file that cannot be written, checkpoints of different
// streams, parked messages across a restart, a receiver that trickles its
// answer, events that left shopd's retention, an idle checkpoint that moves
// past events not selected, and a shopd with CURVE on. Real sockets
// throughout; each wait is on a delivery or a state the relay reports.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "bus/access.h"
#include "tests/relay/relay_fixture.h"
#include "tests/relay/test_receiver.h"
#include "tests/testkit/embedded_server.h"
#include "tests/testkit/temp_dir.h"

using namespace shop;
using namespace std::chrono_literals;
using shop::relay::Destination;
using shop::testkit::configFor;
using shop::testkit::createCustomers;
using shop::testkit::EmbeddedServer;
using shop::testkit::RelayThread;
using shop::testkit::seqsOf;
using shop::testkit::serverKeyPrefix;
using shop::testkit::TempDir;
using shop::testkit::TestReceiver;
using json = nlohmann::json;

namespace {

// A downstream system over ZeroMQ: a ROUTER that takes [key, kind, body]
// and answers [key, word], the word chosen per key and attempt ("": no
// answer at all).
class ZmqReceiver {
 public:
  using Behaviour = std::function<std::string(const std::string& key, int attempt)>;
  struct Delivery {
    std::string key, kind, body;
  };

  explicit ZmqReceiver(Behaviour behaviour)
      : behaviour_(std::move(behaviour)), socket_(context_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] { serve(); });
  }
  ~ZmqReceiver() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }
  bool waitForKeys(size_t n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 20s, [&] { return delivered_.size() >= n; });
  }
  std::vector<Delivery> deliveries() const {
    std::lock_guard lock(mutex_);
    return delivered_;
  }
  int attemptsOf(const std::string& key) const {
    std::lock_guard lock(mutex_);
    auto it = attempts_.find(key);
    return it == attempts_.end() ? 0 : it->second;
  }

 private:
  void serve() {
    while (!stop_) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 50ms);  // a look at stop_ now and then
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> frames;
      do {
        zmq::message_t frame;
        (void)socket_.recv(frame, zmq::recv_flags::none);
        frames.push_back(std::move(frame));
      } while (socket_.get(zmq::sockopt::rcvmore));
      CHECK(frames.size() == 4);  // identity, key, kind, body
      if (frames.size() != 4) continue;
      std::string key = frames[1].to_string();
      std::string word;
      {
        std::lock_guard lock(mutex_);
        word = behaviour_(key, ++attempts_[key]);
        if (word == "ok") {
          delivered_.push_back({key, frames[2].to_string(), frames[3].to_string()});
          changed_.notify_all();
        }
      }
      if (word.empty()) continue;
      socket_.send(frames[0], zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(key), zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(word), zmq::send_flags::none);
    }
  }

  Behaviour behaviour_;
  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, int> attempts_;
  std::vector<Delivery> delivered_;
  std::thread thread_;
};

// An HTTP receiver that reads the request, then answers one byte every
// 50 ms, for ever: each byte resets a per-read timeout, so only a deadline
// on the whole attempt ends it.
class TrickleReceiver {
 public:
  TrickleReceiver() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof addr;
    REQUIRE(listener_ >= 0);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener_, 16) == 0);
    REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &length) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~TrickleReceiver() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/orders"; }
  int connections() const { return connections_.load(); }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;  // a look at stop_ now and then
      int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++connections_;
      trickle(fd);
      ::close(fd);
    }
  }
  // Until the client goes away (or the test ends).
  void trickle(int fd) {
    std::string request;
    char buffer[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      pollfd p{fd, POLLIN, 0};
      if (stop_ || ::poll(&p, 1, 50) < 0) return;
      if (!(p.revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) return;
      request.append(buffer, static_cast<size_t>(n));
    }
    std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    if (::send(fd, head.data(), head.size(), MSG_NOSIGNAL) < 0) return;
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 50);  // the trickle's pace; a closed client shows as readable
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN)) return;  // the client hung up
      }
      if (::send(fd, "x", 1, MSG_NOSIGNAL) < 0) return;
    }
  }

  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

std::string checkpointText(uint64_t serverId, Seq seq) {
  return json{{"serverId", serverIdHex(serverId)}, {"seq", seq}}.dump() + "\n";
}

uint64_t serverIdOf(EmbeddedServer& server) {
  return server.withEngine([](Engine& e) { return e.serverId(); });
}

}  // namespace

TEST_CASE("relay over ZeroMQ: keyed frames, ok delivers, reject parks, silence is retried") {
  EmbeddedServer server;
  TempDir state;
  std::string poisonKey;
  std::mutex poisonMutex;
  // The first try of each message gets no answer, the second a word that
  // is neither ok nor reject, the third ok. The poison is refused outright.
  ZmqReceiver receiver([&](const std::string& key, int attempt) -> std::string {
    std::lock_guard lock(poisonMutex);
    if (key == poisonKey) return "reject: no such store";
    if (attempt == 1) return "";
    return attempt == 2 ? "busy" : "ok";
  });
  std::vector<Seq> before = createCustomers(server, "a", 2);
  std::vector<Seq> poison = createCustomers(server, "poison", 1);
  std::vector<Seq> after = createCustomers(server, "b", 2);
  std::string prefix = serverKeyPrefix(server);
  {
    std::lock_guard lock(poisonMutex);
    poisonKey = prefix + std::to_string(poison[0]);
  }
  TestReceiver unused;
  relay::Config config = configFor(server, state, unused);
  config.destinations[0].kind = Destination::Kind::zmq;
  config.destinations[0].url = receiver.endpoint();
  // What the silent first tries wait; far above any answer's time.
  config.destinations[0].timeoutMs = 1'000;
  RelayThread relay(config);

  std::vector<Seq> wanted = before;
  wanted.insert(wanted.end(), after.begin(), after.end());
  REQUIRE(receiver.waitForKeys(wanted.size()));
  REQUIRE(relay.orders().waitIdle(30s));
  auto deliveries = receiver.deliveries();
  REQUIRE(deliveries.size() == wanted.size());  // each once, in seq order
  for (size_t i = 0; i < wanted.size(); ++i) {
    CHECK(deliveries[i].key == prefix + std::to_string(wanted[i]));
    CHECK(deliveries[i].kind == "customerCreated");
    CHECK(deliveries[i].body.find("\"customerCreated\"") != std::string::npos);
    CHECK(receiver.attemptsOf(deliveries[i].key) == 3);
  }
  json parked = relay.relay.handle({{"parked", {{"destination", "orders"}}}})["parked"];
  REQUIRE(parked.size() == 1);
  CHECK(parked[0]["key"] == poisonKey);
  CHECK(parked[0]["attempts"] == 1);
  CHECK(parked[0]["lastError"] == "zmq: reject: no such store");
  json status = relay.orders().status();
  CHECK(status["delivered"] == wanted.size());
  CHECK(status["retries"] == 2 * wanted.size());
  CHECK(status["checkpoint"] == after.back());
}

TEST_CASE("relay: with 4 in flight every event arrives once, and they do overlap") {
  EmbeddedServer server;
  TempDir state;
  TestReceiver receiver;
  receiver.setBehaviour([](const std::string&, int, const std::string&) {
    return TestReceiver::Answer{200, 5ms};  // long enough for the others to come in
  });
  receiver.up();
  relay::Config config = configFor(server, state, receiver);
  config.destinations[0].maxInFlight = 4;
  std::vector<Seq> wanted = createCustomers(server, "c", 200);
  RelayThread relay(config);
  REQUIRE(receiver.waitForKeys(wanted.size()));
  REQUIRE(relay.orders().waitIdle(30s));
  auto deliveries = receiver.deliveries();
  CHECK(deliveries.size() == wanted.size());  // nothing failed, so nothing twice
  std::set<Seq> distinct;
  for (const auto& d : deliveries) distinct.insert(d.seq);
  CHECK(std::vector<Seq>(distinct.begin(), distinct.end()) == wanted);
  CHECK(receiver.maxConcurrent() >= 2);
  CHECK(receiver.maxConcurrent() <= 4);
  CHECK(relay.orders().status()["checkpoint"] == wanted.back());
}

TEST_CASE("relay: a message the parked file cannot take stays in flight until it can") {
  EmbeddedServer server;
  TempDir state;
  TestReceiver receiver;
  receiver.setBehaviour([&](const std::string&, int, const std::string& body) {
    return TestReceiver::Answer{body.find("poison") != std::string::npos ? 400 : 200};
  });
  receiver.up();
  relay::Config config = configFor(server, state, receiver);
  config.destinations[0].retry.maxMs = 50;  // how soon parking is tried again
  // A directory where the parked file goes: every append fails.
  std::filesystem::create_directories(state.str() + "/orders.parked");
  std::vector<Seq> before = createCustomers(server, "a", 2);
  std::vector<Seq> poison = createCustomers(server, "poison", 1);
  std::vector<Seq> after = createCustomers(server, "b", 2);
  RelayThread relay(config);

  REQUIRE(relay.orders().waitForStatus([](const json& s) { return s["parkFailures"] >= 2; }, 20s));
  json status = relay.orders().status();
  CHECK(status["checkpoint"] < poison[0]);  // not passed: neither delivered nor parked
  CHECK(status["parked"] == 0);
  CHECK(status["inFlight"] == 1);
  CHECK(receiver.distinct() == before.size());  // the rest waits behind it, in order

  std::filesystem::remove(state.str() + "/orders.parked");
  REQUIRE(receiver.waitForKeys(before.size() + after.size()));
  REQUIRE(relay.orders().waitIdle(30s));
  status = relay.orders().status();
  CHECK(status["parked"] == 1);
  CHECK(status["checkpoint"] == after.back());
  std::ifstream in(state.str() + "/orders.parked");
  std::string line;
  REQUIRE(std::getline(in, line));
  CHECK(json::parse(line)["seq"] == poison[0]);
}

TEST_CASE("relay: checkpoints of different streams: each destination gets what it lacks") {
  EmbeddedServer server;
  TempDir state;
  TestReceiver orders, audit;
  orders.up();
  audit.up();
  relay::Config config = configFor(server, state, orders);
  relay::Destination second = config.destinations[0];
  second.name = "audit";
  second.url = audit.url();
  config.destinations.push_back(second);
  std::vector<Seq> wanted = createCustomers(server, "c", 10);
  // "orders" did the first three of this stream. "audit" followed a stream
  // of another server (shopd restarted without a journal) up to a seq
  // beyond those: it has done nothing of this one.
  std::ofstream(state.str() + "/orders.checkpoint")
      << checkpointText(serverIdOf(server), wanted[2]);
  std::ofstream(state.str() + "/audit.checkpoint")
      << checkpointText(0x0123456789abcdefULL, wanted[7]);
  RelayThread relay(config);
  REQUIRE(orders.waitForKeys(wanted.size() - 3));
  REQUIRE(audit.waitForKeys(wanted.size()));
  REQUIRE(relay.relay.destination(0).waitIdle(30s));
  REQUIRE(relay.relay.destination(1).waitIdle(30s));
  CHECK(seqsOf(orders.deliveries()) == std::vector<Seq>(wanted.begin() + 3, wanted.end()));
  CHECK(seqsOf(audit.deliveries()) == wanted);
}

TEST_CASE("relay: parked messages outlive a restart, and are re-driven by seq or by key") {
  EmbeddedServer server;
  TempDir state;
  TestReceiver receiver;
  std::atomic<bool> cured{false};
  receiver.setBehaviour([&](const std::string&, int, const std::string& body) {
    bool poison = body.find("poison") != std::string::npos && !cured.load();
    return TestReceiver::Answer{poison ? 400 : 200};
  });
  receiver.up();
  relay::Config config = configFor(server, state, receiver);
  std::vector<Seq> poison = createCustomers(server, "poison", 1);
  std::string key = serverKeyPrefix(server) + std::to_string(poison[0]);
  // The same seq parked from an earlier stream (another server id).
  json old = {{"seq", poison[0]},
              {"serverId", "0123456789abcdef"},
              {"key", "0123456789abcdef-" + std::to_string(poison[0])},
              {"kind", "customerCreated"},
              {"event", json::object()},
              {"attempts", 8},
              {"lastError", "http status 500"},
              {"parkedAtNs", 1}};
  std::ofstream(state.str() + "/orders.parked") << old.dump() << "\n";
  {
    RelayThread relay(config);
    REQUIRE(relay.orders().waitForStatus([](const json& s) { return s["parked"] == 2; }, 20s));
  }
  RelayThread relay(config);  // the same state, a new process in effect
  json parked = relay.relay.handle({{"parked", {{"destination", "orders"}}}})["parked"];
  REQUIRE(parked.size() == 2);
  std::set<std::string> keys;
  for (const auto& p : parked) keys.insert(p["key"].get<std::string>());
  CHECK(keys.count(key) == 1);
  CHECK(keys.count(old["key"].get<std::string>()) == 1);

  auto replay = [&](const json& id) {
    return relay.relay.handle({{"replay", {{"destination", "orders"}, {"id", id}}}});
  };
  CHECK(replay(std::to_string(poison[0]))["error"].get<std::string>().find(
            "is parked from 2 streams of shopd; name it by its key") != std::string::npos);
  for (std::string bad : {"x1", "+5", "-5", "0123456789abcdef--5", "0123456789abcdef-", "zz-5",
                          "99999999999999999999999"}) {
    CAPTURE(bad);
    CHECK(replay(bad)["error"].get<std::string>().find("is neither a seq nor a key") !=
          std::string::npos);
  }
  CHECK(replay("0123456789abcdef-99999")["error"].get<std::string>().find(
            "no parked message with key") != std::string::npos);
  cured = true;
  CHECK(replay(key)["replaying"] == key);
  REQUIRE(receiver.waitForKeys(1));
  REQUIRE(relay.orders().waitForStatus([](const json& s) { return s["parked"] == 1; }, 20s));
  CHECK(receiver.deliveries()[0].key == key);
  // The file agrees: only the old stream's message is left.
  std::ifstream in(state.str() + "/orders.parked");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 1);
  CHECK(json::parse(lines[0])["key"] == old["key"]);
}

TEST_CASE("relay: an HTTP attempt ends at its deadline, however slowly the answer trickles") {
  EmbeddedServer server;
  TempDir state;
  TrickleReceiver receiver;
  TestReceiver unused;
  relay::Config config = configFor(server, state, unused);
  config.destinations[0].url = receiver.url();
  config.destinations[0].timeoutMs = 300;
  config.destinations[0].retry.maxAttempts = 2;
  std::vector<Seq> wanted = createCustomers(server, "c", 1);
  RelayThread relay(config);
  // Two attempts, each cut: the message parks. Without a deadline on the
  // whole attempt the first would still be reading.
  REQUIRE(relay.orders().waitForStatus([](const json& s) { return s["parked"] == 1; }, 20s));
  json parked = relay.relay.handle({{"parked", {{"destination", "orders"}}}})["parked"];
  REQUIRE(parked.size() == 1);
  CHECK(parked[0]["lastError"] == "http: no answer within 300 ms");
  CHECK(receiver.connections() == 2);
}

TEST_CASE("relay: events gone from shopd's retention stop the relay, naming the seqs") {
  EngineConfig engine = EmbeddedServer::defaultEngineConfig();
  engine.retention = 10;
  EmbeddedServer server(EmbeddedServer::defaultConfig(), engine);
  TempDir state;
  TestReceiver receiver;
  receiver.up();
  std::vector<Seq> wanted = createCustomers(server, "c", 30);
  relay::Config config = configFor(server, state, receiver);

  SUBCASE("a checkpoint behind the retention") {
    std::ofstream(state.str() + "/orders.checkpoint")
        << checkpointText(serverIdOf(server), wanted[1]);
    RelayThread relay(config);
    auto error = relay.waitEnded(20s);
    REQUIRE(error.has_value());
    CHECK(error->find("events " + std::to_string(wanted[2]) + " to ") != std::string::npos);
    CHECK(error->find("left shopd's retention before the relay read them") != std::string::npos);
    CHECK(receiver.distinct() == 0);
  }
  SUBCASE("no checkpoint: from the oldest event retained") {
    RelayThread relay(config);
    REQUIRE(relay.orders().waitForStatus(
        [&](const json& s) { return s["seen"] == wanted.back() && s["lag"] == 0; }, 20s));
    auto got = seqsOf(receiver.deliveries());
    REQUIRE(!got.empty());
    CHECK(got.front() > wanted[2]);
    CHECK(got ==
          std::vector<Seq>(std::find(wanted.begin(), wanted.end(), got.front()), wanted.end()));
    CHECK(relay.error().empty());
  }
}

TEST_CASE("relay: events it does not select move an idle destination's checkpoint at once") {
  EmbeddedServer server;
  TestReceiver receiver;
  receiver.up();
  TempDir state;
  std::string file = state.str() + "/orders.checkpoint";
  // A checkpoint as an older relay left it: narrower than the record
  // written now. It is read, and then replaced whole.
  std::ofstream(file) << checkpointText(serverIdOf(server), 0);
  auto relay = std::make_unique<RelayThread>(configFor(server, state, receiver));
  auto created = createCustomers(server, "c", 3);
  REQUIRE(receiver.waitForKeys(3));
  // Deposits right after the deliveries, inside one checkpoint sync period,
  // and nothing after them: the destination is idle, nothing of it is left.
  zmq::context_t context(1);
  bus::Client client(context, server.commands());
  Seq last = 0;
  for (int i = 0; i < 3; ++i) {
    auto r = client.call({CommandId::random(), Deposit{"c0", 1}});
    REQUIRE(r.ok());
    last = r.reply->reply.event->seq;
  }
  REQUIRE(last > created.back());
  CHECK(relay->orders().waitForStatus(
      [&](const json& s) { return s["checkpoint"] == last && s["lag"] == 0; }, 20s));
  CHECK(receiver.deliveries().size() == 3);

  relay.reset();  // a clean stop writes the checkpoint
  std::ifstream in(file);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.size() == 64);
  CHECK(text.back() == '\n');
  CHECK(json::parse(text) == json{{"serverId", serverIdHex(serverIdOf(server))}, {"seq", last}});
}

TEST_CASE("relay: it follows a shopd that has CURVE on, with a listed key") {
  TempDir keys;
  std::string base = keys.str() + "/";
  bus::writeKeyFiles(base + "server", bus::generateKeyPair());
  bus::writeKeyFiles(base + "relay", bus::generateKeyPair());
  bus::writeKeyFiles(base + "writer", bus::generateKeyPair());
  std::ofstream(base + "clients") << bus::readKeyFile(base + "relay.pub").publicKey << " relay\n"
                                  << bus::readKeyFile(base + "writer.pub").publicKey << " writer\n";
  EmbeddedServer server(EmbeddedServer::defaultConfig(), EmbeddedServer::defaultEngineConfig(),
                        bus::AccessConfig{.secretKeyFile = base + "server.key",
                                          .authorizedKeysFile = base + "clients"});
  TestReceiver receiver;
  receiver.up();
  TempDir state;
  relay::Config config = configFor(server, state, receiver);
  config.curveServerKey = base + "server.pub";
  config.curveClientKey = base + "relay.key";
  config.curve = bus::ClientCurve::fromFiles(config.curveServerKey, config.curveClientKey);
  RelayThread relay(config);

  zmq::context_t context(1);
  bus::Client writer(context, server.commands(),
                     bus::ClientOptions{.curve = bus::ClientCurve::fromFiles(base + "server.pub",
                                                                             base + "writer.key")});
  std::vector<Seq> created;
  for (int i = 0; i < 3; ++i) {
    auto r = writer.call({CommandId::random(), CreateCustomer{"k" + std::to_string(i), 1}});
    REQUIRE(r.ok());
    created.push_back(r.reply->reply.event->seq);
  }
  REQUIRE(receiver.waitForKeys(3));
  CHECK(seqsOf(receiver.deliveries()) == created);
  CHECK(relay.error() == "");
}
