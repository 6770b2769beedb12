// The tools as a user runs them: real processes, real sockets.
#include <doctest/doctest.h>

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bus/client.h"
#include "tests/testkit/embedded_server.h"
#include "tests/testkit/event_probe.h"
#include "tests/testkit/process.h"
#include "tests/tools/shopd_process.h"
#include "tools/money.h"

using namespace shop;
using shop::testkit::EmbeddedServer;
using shop::testkit::Process;

namespace {

struct Shopctl {
  EmbeddedServer& server;
  std::string out, err;
  int operator()(std::vector<std::string> args) {
    std::vector<std::string> argv = {SHOPCTL_PATH, "--endpoint",    server.commands(),
                                     "--events",   server.events(), "--timeout",
                                     "3000"};
    argv.insert(argv.end(), args.begin(), args.end());
    return Process::run(argv, &out, &err);
  }
};

std::string commandsEndpointOf(Process& shopd) {
  return testkit::endpointOf(shopd);
}

}  // namespace

TEST_CASE("decimal amounts parse to minor units and format back") {
  using shop::cli::formatMoney;
  using shop::cli::parseMoney;
  CHECK(parseMoney("12.50") == 1250);
  CHECK(parseMoney("12.5") == 1250);
  CHECK(parseMoney("12") == 1200);
  CHECK(parseMoney("-3.01") == -301);
  CHECK_FALSE(parseMoney("1.234"));
  CHECK_FALSE(parseMoney("abc"));
  CHECK_FALSE(parseMoney("1."));
  CHECK_FALSE(parseMoney(""));
  CHECK_FALSE(parseMoney("99999999999999999999"));
  CHECK(formatMoney(1250) == "12.50");
  CHECK(formatMoney(5) == "0.05");
  CHECK(formatMoney(-301) == "-3.01");
}

TEST_CASE("shopctl exit codes: 0 accepted, 1 rejected with the reason, 2 usage, 3 no server") {
  EmbeddedServer server;
  Shopctl shopctl{server};
  CHECK(shopctl({"add-product", "apple", "1.50", "10"}) == 0);
  CHECK(shopctl({"create", "alice", "100"}) == 0);
  CHECK(shopctl.out.find("created alice with 100.00") != std::string::npos);
  CHECK(shopctl({"buy", "alice", "apple", "2"}) == 0);
  CHECK(shopctl.out.find("balance 97.00") != std::string::npos);
  CHECK(shopctl({"get", "alice"}) == 0);
  CHECK(shopctl.out.find("alice: balance 97.00") != std::string::npos);
  CHECK(shopctl.out.find("apple x2 (paid 3.00)") != std::string::npos);
  CHECK(shopctl({"return", "alice", "apple"}) == 0);
  CHECK(shopctl({"deposit", "alice", "0.50"}) == 0);
  CHECK(shopctl({"restock", "apple", "3"}) == 0);

  CHECK(shopctl({"buy", "alice", "apple", "1000"}) == 1);
  CHECK(shopctl.err.find("outOfStock") != std::string::npos);
  CHECK(shopctl({"deposit", "alice", "-5"}) == 1);
  CHECK(shopctl.err.find("invalidAmount") != std::string::npos);

  CHECK(shopctl({"deposit", "alice", "1.234"}) == 2);
  CHECK(shopctl({"frobnicate"}) == 2);
  CHECK(shopctl({"buy", "alice"}) == 2);
  CHECK(Process::run({SHOPCTL_PATH, "--help"}) == 0);
  std::string err;
  // Nothing listens on port 1: said at once, naming the endpoint, exit 3,
  // though the timeout would allow 3 attempts of 10 s.
  auto start = std::chrono::steady_clock::now();
  CHECK(Process::run(
            {SHOPCTL_PATH, "--endpoint", "tcp://127.0.0.1:1", "--timeout", "10000", "get", "alice"},
            nullptr, &err) == 3);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  CHECK(err.find("nothing is listening at tcp://127.0.0.1:1") != std::string::npos);
  // A bad endpoint is a usage error that names it.
  CHECK(Process::run({SHOPCTL_PATH, "--endpoint", "nope", "get", "alice"}, nullptr, &err) == 2);
  CHECK(err.find("nope") != std::string::npos);
}

TEST_CASE("shopctl: options after the subcommand, endpoints from the environment, --json") {
  EmbeddedServer server;
  std::string out, err;
  // Global options after the subcommand and its arguments.
  CHECK(Process::run({SHOPCTL_PATH, "create", "alice", "5", "--endpoint", server.commands()}, &out,
                     &err) == 0);
  CHECK(out.find("created alice with 5.00") != std::string::npos);
  // SHOP_COMMANDS stands in for --endpoint.
  ::setenv("SHOP_COMMANDS", server.commands().c_str(), 1);
  CHECK(Process::run({SHOPCTL_PATH, "deposit", "alice", "1.25"}, &out, &err) == 0);
  ::unsetenv("SHOP_COMMANDS");

  capnp::JsonCodec json;
  json.handleByAnnotation<wire::Reply>();
  auto replyOf = [&json](const std::string& line) {
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<wire::Reply>();
    json.decode(kj::StringPtr(line.c_str()), root);  // throws unless a Reply in JSON
    return bus::fromWire(root.asReader()).reply;
  };
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), SHOPCTL_PATH);
    args.insert(args.end(), {"--json", "--endpoint", server.commands()});
    return Process::run(args, &out, &err);
  };
  CHECK(run({"get", "alice"}) == 0);
  Reply got = replyOf(out);
  REQUIRE(got.customer);
  CHECK(got.customer->balance == 625);
  CHECK(run({"deposit", "alice", "1"}) == 0);
  Reply deposited = replyOf(out);
  REQUIRE(deposited.event);
  CHECK(std::get<FundsDeposited>(deposited.event->body).balance == 725);
  CHECK(run({"buy", "alice", "nothing"}) == 1);
  Reply rejected = replyOf(out);
  REQUIRE(rejected.rejection());
  CHECK(rejected.rejection()->reason == RejectReason::unknownProduct);
  CHECK(err.find("unknownProduct") != std::string::npos);

  // ping: the round trip, the server id, the head.
  CHECK(run({"ping"}) == 0);
  CHECK(out.find("\"serverId\":\"") != std::string::npos);
  CHECK(out.find("\"headSeq\":4") != std::string::npos);
  CHECK(Process::run({SHOPCTL_PATH, "ping", "--endpoint", server.commands()}, &out, &err) == 0);
  CHECK(out.find("pong from " + server.commands()) != std::string::npos);

  // stats: a table for people, a ShopStats in JSON.
  CHECK(Process::run({SHOPCTL_PATH, "stats", "--endpoint", server.commands()}, &out, &err) == 0);
  std::string customersRow = "customers";
  customersRow.resize(22, ' ');
  CHECK(out.find(customersRow + " 1\n") != std::string::npos);
  CHECK(out.find("unknownProduct 1") != std::string::npos);
  CHECK(run({"stats"}) == 0);
  Reply stats = replyOf(out);
  REQUIRE(stats.stats);
  CHECK(stats.stats->customers == 1);
  CHECK(stats.stats->headSeq == 4);
  CHECK(stats.stats->rssBytes > 0);

  // Every other command with --json: one Reply, whose event says what happened.
  auto eventOf = [&](auto type) {
    Reply reply = replyOf(out);
    REQUIRE(reply.event);
    return std::get<decltype(type)>(reply.event->body);
  };
  CHECK(run({"add-product", "pear", "0.99", "5"}) == 0);
  CHECK(eventOf(ProductAdded{}).stock == 5);
  CHECK(run({"restock", "pear", "5"}) == 0);
  CHECK(eventOf(ProductRestocked{}).stock == 10);
  CHECK(run({"create", "json-bob", "10"}) == 0);
  CHECK(eventOf(CustomerCreated{}).initialBalance == 1000);
  CHECK(run({"buy", "json-bob", "pear", "2"}) == 0);
  CHECK(eventOf(ProductBought{}).balance == 802);
  CHECK(run({"return", "json-bob", "pear", "1"}) == 0);
  CHECK(eventOf(ProductReturned{}).refund == 99);

  // Per-subcommand help, and a usage error for a missing argument.
  CHECK(Process::run({SHOPCTL_PATH, "tail", "--help"}, &out, &err) == 0);
  CHECK(out.find("--until-head") != std::string::npos);
  CHECK(Process::run({SHOPCTL_PATH, "deposit", "alice"}, &out, &err) == 2);
}

TEST_CASE("shopctl hold, confirm and release, and a hold that expires on shopd's own clock") {
  EmbeddedServer server;
  testkit::EventProbe probe(server.context(), server.events(), server.commands());
  Shopctl shopctl{server};
  REQUIRE(shopctl({"add-product", "apple", "1.50", "10"}) == 0);
  REQUIRE(shopctl({"create", "alice", "100"}) == 0);

  CHECK(shopctl({"hold", "alice", "apple", "3"}) == 0);
  CHECK(shopctl.out.find("hold 1: 3 apple for alice at 1.50 until 20") != std::string::npos);
  CHECK(shopctl({"get", "alice"}) == 0);
  CHECK(shopctl.out.find("  hold 1: apple x3 at 1.50 until ") != std::string::npos);
  CHECK(shopctl({"stats"}) == 0);
  CHECK(shopctl.out.find("live holds             1\n") != std::string::npos);
  CHECK(shopctl({"buy", "alice", "apple", "8"}) == 1);  // 3 of 10 are held
  CHECK(shopctl.err.find("outOfStock") != std::string::npos);
  CHECK(shopctl({"confirm", "1"}) == 0);
  CHECK(shopctl.out.find("hold 1 confirmed: alice bought 3 apple at 1.50, balance 95.50") !=
        std::string::npos);
  CHECK(shopctl({"confirm", "1"}) == 1);
  CHECK(shopctl.err.find("unknownHold: hold 1 was confirmed") != std::string::npos);

  CHECK(shopctl({"hold", "alice", "apple", "2"}) == 0);
  CHECK(shopctl({"release", "2"}) == 0);
  CHECK(shopctl.out.find("hold 2 released: 2 apple back in stock") != std::string::npos);

  // shopd's loop wakes at the deadline by itself: nothing else happens here.
  CHECK(shopctl({"hold", "alice", "apple", "1", "--ttl-ms", "50"}) == 0);
  Event expired = probe.expect(testkit::match::event<HoldExpired>("alice"));
  CHECK(std::get<HoldExpired>(expired.body).holdId == 3);
  CHECK(expired.commandId == CommandId{});
  CHECK(shopctl({"confirm", "3"}) == 1);
  CHECK(shopctl.err.find("holdExpired") != std::string::npos);
  CHECK(shopctl({"stats"}) == 0);
  CHECK(shopctl.out.find("live holds             0\n") != std::string::npos);

  CHECK(shopctl({"hold", "alice", "apple", "1", "--ttl-ms", "999999999"}) == 1);
  CHECK(shopctl.err.find("invalidTtl") != std::string::npos);
  CHECK(shopctl({"confirm", "abc"}) == 2);
  CHECK(shopctl({"release"}) == 2);
  CHECK(shopctl({"get", "alice"}) == 0);
  CHECK(shopctl.out.find("apple x3 (paid 4.50)") != std::string::npos);
  CHECK(shopctl.out.find("hold ") == std::string::npos);
}

TEST_CASE("shopctl tail --from earliest --until-head stops at the head, past a dropped seq 1") {
  // A retention of 3: seq 1 has left memory when the tail starts.
  EmbeddedServer server(EmbeddedServer::defaultConfig(), EngineConfig{.shards = 1, .retention = 3});
  Shopctl shopctl{server};
  for (int i = 0; i < 5; ++i) REQUIRE(shopctl({"create", "c" + std::to_string(i), "1"}) == 0);
  std::string out, err;
  CHECK(Process::run({SHOPCTL_PATH, "tail", "--from", "earliest", "--until-head", "--endpoint",
                      server.commands(), "--events", server.events()},
                     &out, &err) == 0);
  std::vector<std::pair<Seq, std::string>> lines;
  std::stringstream in(out);
  for (std::string line; std::getline(in, line);) {
    capnp::JsonCodec json;
    json.handleByAnnotation<wire::Event>();
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<wire::Event>();
    json.decode(kj::StringPtr(line.c_str()), root);
    lines.emplace_back(root.asReader().getSeq(),
                       std::string(bus::fromWire(root.asReader()).customer()));
  }
  std::vector<std::pair<Seq, std::string>> expected = {{3, "c2"}, {4, "c3"}, {5, "c4"}};
  CHECK(lines == expected);
  // --count and --customer.
  CHECK(Process::run({SHOPCTL_PATH, "tail", "--from", "earliest", "--count", "1", "--customer",
                      "c4", "--endpoint", server.commands(), "--events", server.events()},
                     &out, &err) == 0);
  CHECK(std::count(out.begin(), out.end(), '\n') == 1);
  CHECK(out.find("\"c4\"") != std::string::npos);
  CHECK(Process::run({SHOPCTL_PATH, "tail", "--from", "sometime"}, &out, &err) == 2);
}

TEST_CASE("shopctl tail prints every event as one JSON object per line, in order") {
  EmbeddedServer server;
  Shopctl shopctl{server};
  REQUIRE(shopctl({"create", "alice", "10"}) == 0);
  REQUIRE(shopctl({"create", "bob", "10"}) == 0);
  REQUIRE(shopctl({"deposit", "alice", "1"}) == 0);

  Process all({SHOPCTL_PATH, "--endpoint", server.commands(), "--events", server.events(), "tail",
               "--from", "1"});
  auto lines = all.waitForStdoutLines(3);
  Process onlyAlice({SHOPCTL_PATH, "--endpoint", server.commands(), "--events", server.events(),
                     "tail", "--customer", "alice", "--from", "2"});
  REQUIRE(shopctl({"deposit", "bob", "2"}) == 0);
  REQUIRE(shopctl({"deposit", "alice", "3"}) == 0);
  lines = all.waitForStdoutLines(5);
  auto aliceLines = onlyAlice.waitForStdoutLines(2);
  all.signal(SIGINT);
  onlyAlice.signal(SIGINT);
  CHECK(all.wait() == 0);
  CHECK(onlyAlice.wait() == 0);

  capnp::JsonCodec json;
  json.handleByAnnotation<wire::Event>();
  auto parse = [&json](const std::string& line) {
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<wire::Event>();
    json.decode(kj::StringPtr(line.c_str()), root);  // throws unless valid JSON for Event
    return std::make_pair(root.asReader().getSeq(),
                          std::string(eventName(bus::fromWire(root.asReader()).body)));
  };
  REQUIRE(lines.size() == 5);
  for (size_t i = 0; i < lines.size(); ++i) CHECK(parse(lines[i]).first == i + 1);
  CHECK(parse(lines[3]).second == "fundsDeposited");
  REQUIRE(aliceLines.size() == 2);
  CHECK(parse(aliceLines[0]).first == 3);  // from 2: bob's creation is not alice's
  CHECK(parse(aliceLines[1]).first == 5);
}

TEST_CASE("shopd on SIGTERM answers what is in flight and exits 0") {
  Process shopd({SHOPD_PATH, "--commands", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*",
                 "--no-catalog", "--shards", "2"});
  std::string commands = commandsEndpointOf(shopd);

  zmq::context_t context(1);
  bus::Client client(context, commands, {.timeoutMs = 2000, .retries = 0});
  for (int c = 0; c < 20; ++c)
    REQUIRE(
        client.call(Command{CommandId::random(), CreateCustomer{"c" + std::to_string(c), 0}}).ok());

  int answered = 0, failedClearly = 0, handlers = 0;
  for (int i = 0; i < 100; ++i) {
    client.send(Command{CommandId::random(), Deposit{"c" + std::to_string(i % 20), 1}},
                [&](const bus::CallResult& r) {
                  ++handlers;
                  if (r.ok()) {
                    ++answered;
                  } else if (r.error.find("timeout") != std::string::npos) {
                    ++failedClearly;
                  }
                });
  }
  shopd.signal(SIGTERM);
  while (client.inFlight() > 0) client.poll(-1);
  CHECK(handlers == 100);
  CHECK(answered + failedClearly == 100);
  CHECK(shopd.wait() == 0);
  CHECK(shopd.err().find("stopping: answering") != std::string::npos);
  CHECK(shopd.err().find("stopped by") != std::string::npos);
  MESSAGE(answered << " answered, " << failedClearly << " timed out after shutdown");
}

TEST_CASE("shopd rejects bad flags with exit 2 and serves --help and --version") {
  std::string err;
  CHECK(Process::run({SHOPD_PATH, "--max-pending", "0"}, nullptr, &err) == 2);
  CHECK(err.find("--max-pending") != std::string::npos);
  CHECK(Process::run({SHOPD_PATH, "--bogus"}) == 2);
  std::string out;
  CHECK(Process::run({SHOPD_PATH, "--help"}, &out) == 0);
  CHECK(out.find("--catalog") != std::string::npos);
  CHECK(Process::run({SHOPD_PATH, "--catalog", "/nonexistent.json"}, nullptr, &err) == 1);
  CHECK(err.find("cannot open catalog") != std::string::npos);
  for (const char* tool : {SHOPD_PATH, SHOPCTL_PATH, SHOP_BENCH_PATH, SHOP_ECHO_PATH,
                           SHOP_DASHBOARD_PATH, SHOP_DEMO_PATH}) {
    CAPTURE(tool);
    CHECK(Process::run({tool, "--version"}, &out) == 0);
    CHECK(out.find("0.") != std::string::npos);
    CHECK(Process::run({tool, "--help"}, &out) == 0);
    CHECK(out.find("--version") != std::string::npos);
  }
  // Flags in any order, and `--flag=value`: CLI11 for every tool.
  CHECK(Process::run({SHOPD_PATH, "--max-pending=0"}, nullptr, &err) == 2);
  CHECK(err.find("--max-pending") != std::string::npos);
  CHECK(Process::run({SHOPD_PATH, "--catalog", "x.json", "--no-catalog"}, nullptr, &err) == 2);
}

TEST_CASE("a typo gets a suggestion, in every tool") {
  std::string err;
  CHECK(Process::run({SHOPCTL_PATH, "crate", "alice"}, nullptr, &err) == 2);
  CHECK(err.find("unknown command 'crate': did you mean 'create'?") != std::string::npos);
  CHECK(Process::run({SHOPCTL_PATH, "get", "alice", "--jsn"}, nullptr, &err) == 2);
  CHECK(err.find("did you mean '--json'?") != std::string::npos);
  CHECK(Process::run({SHOPCTL_PATH, "tail", "--untilhead"}, nullptr, &err) == 2);
  CHECK(err.find("did you mean '--until-head'?") != std::string::npos);
  CHECK(Process::run({SHOPD_PATH, "--max-pendng", "3"}, nullptr, &err) == 2);
  CHECK(err.find("unknown option '--max-pendng': did you mean '--max-pending'?") !=
        std::string::npos);
  CHECK(Process::run({SHOP_DASHBOARD_PATH, "--htp", "127.0.0.1:0"}, nullptr, &err) == 2);
  CHECK(err.find("did you mean '--http'?") != std::string::npos);
  CHECK(Process::run({SHOP_DASHBOARD_PATH, "--relay", "127.0.0.1:5570"}, nullptr, &err) == 2);
  CHECK(err.find("--relay: '127.0.0.1:5570' is not a ZeroMQ endpoint") != std::string::npos);
  CHECK(Process::run({SHOP_DASHBOARD_PATH, "--relay", "tcp://127.0.0.1:5570", "--relay",
                      "tcp://127.0.0.1:5570"},
                     nullptr, &err) == 2);
  CHECK(err.find("--relay: 'tcp://127.0.0.1:5570' is given twice") != std::string::npos);
  CHECK(Process::run({SHOP_ECHO_PATH, "--hopp"}, nullptr, &err) == 2);
  CHECK(err.find("did you mean '--hop'?") != std::string::npos);
  CHECK(Process::run({SHOP_BENCH_PATH, "--scenarios", "jurnal"}, nullptr, &err) == 2);
  CHECK(err.find("did you mean 'journal'?") != std::string::npos);
  // Only the subcommand's place is compared with subcommand names; an
  // option's value is skipped.
  CHECK(Process::run({SHOPCTL_PATH, "--timeout", "100", "crate", "x"}, nullptr, &err) == 2);
  CHECK(err.find("did you mean 'create'?") != std::string::npos);
  CHECK(Process::run({SHOPCTL_PATH, "buy", "by", "apple", "2x"}, nullptr, &err) == 2);
  CHECK(err.find("did you mean") == std::string::npos);
  // Nothing near enough: no guess.
  CHECK(Process::run({SHOPCTL_PATH, "frobnicate"}, nullptr, &err) == 2);
  CHECK(err.find("did you mean") == std::string::npos);
}

namespace {
// A catalog file with `json` in it, removed when it goes.
struct CatalogFile {
  std::string path;
  explicit CatalogFile(const std::string& json) {
    char name[] = "/tmp/shop-catalog-XXXXXX";
    int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, json.data(), json.size()) == static_cast<ssize_t>(json.size()));
    ::close(fd);
    path = name;
  }
  ~CatalogFile() { ::unlink(path.c_str()); }
};

// shopd's exit code and stderr for a catalog, on ephemeral ports.
int startWith(const CatalogFile& catalog, std::string& err) {
  return Process::run({SHOPD_PATH, "--commands", "tcp://127.0.0.1:*", "--events",
                       "tcp://127.0.0.1:*", "--catalog", catalog.path},
                      nullptr, &err);
}
}  // namespace

TEST_CASE("a bad catalog stops shopd, naming the file, the entry and the field") {
  std::string err;
  {
    CatalogFile typo(R"({"products":[{"product":"x","prize":1}]})");
    CHECK(startWith(typo, err) == 1);
    CHECK(err.find(typo.path) != std::string::npos);
    CHECK(err.find("product #1 ('x'): unknown field 'prize'") != std::string::npos);
  }
  {
    CatalogFile notJson("nope");
    CHECK(startWith(notJson, err) == 1);
    CHECK(err.find(notJson.path + ": not valid JSON") != std::string::npos);
  }
  {
    CatalogFile badValue(
        R"({"products":[{"product":"a","price":"5"},{"product":"b","price":"0"}]})");
    CHECK(startWith(badValue, err) == 1);
    CHECK(err.find("product #2 ('b'): price must be > 0") != std::string::npos);
  }
  {
    CatalogFile twice(R"({"products":[{"product":"a","price":"5"},{"product":"a","price":"6"}]})");
    CHECK(startWith(twice, err) == 1);
    CHECK(err.find("product #2 ('a'): the same product as #1") != std::string::npos);
  }
  {
    CatalogFile missing(R"({"products":[{"product":"a"}]})");
    CHECK(startWith(missing, err) == 1);
    CHECK(err.find("missing field 'price'") != std::string::npos);
  }
}

TEST_CASE("shopd names the endpoint it cannot bind") {
  Process first({SHOPD_PATH, "--commands", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*",
                 "--no-catalog"});
  std::string line = first.waitForStderrLine("serving commands on ");
  size_t at = line.find("tcp://");
  std::string commands = line.substr(at, line.find(',', at) - at);
  std::string err;
  CHECK(Process::run(
            {SHOPD_PATH, "--commands", commands, "--events", "tcp://127.0.0.1:*", "--no-catalog"},
            nullptr, &err) == 1);
  CHECK(err.find("cannot bind the commands endpoint " + commands) != std::string::npos);
  CHECK(Process::run({SHOPD_PATH, "--events", "tcp://nowhere:x", "--commands", "tcp://127.0.0.1:*",
                      "--no-catalog"},
                     nullptr, &err) == 1);
  CHECK(err.find("cannot bind the events endpoint tcp://nowhere:x") != std::string::npos);
  first.signal(SIGTERM);
  CHECK(first.wait() == 0);
}

TEST_CASE("shopd raises its open-file soft limit to the hard limit and logs it") {
  rlimit limit{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
  Process shopd({SHOPD_PATH, "--commands", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*",
                 "--no-catalog"});
  std::string line = shopd.waitForStderrLine("open files:");
  CHECK(line.find("soft limit " + std::to_string(limit.rlim_max)) != std::string::npos);
  shopd.signal(SIGTERM);
  CHECK(shopd.wait() == 0);
}

TEST_CASE("shopd with CURVE: keygen, a listed key is served, others are not, SIGHUP adds a key") {
  char pattern[] = "/tmp/shop-curve-XXXXXX";
  std::string dir = ::mkdtemp(pattern);
  for (const char* name : {"server", "alice", "bob"}) {
    REQUIRE(Process::run({SHOPCTL_PATH, "keygen", dir + "/" + name}) == 0);
  }
  struct stat info {};
  REQUIRE(::stat((dir + "/alice.key").c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);
  std::string err;
  CHECK(Process::run({SHOPCTL_PATH, "keygen", dir + "/alice"}, nullptr, &err) == 2);
  CHECK(err.find("alice.key") != std::string::npos);  // never overwrites a key

  // A key file's own public-key line is a valid authorized-keys line.
  std::filesystem::copy_file(dir + "/alice.pub", dir + "/clients");
  Process shopd({SHOPD_PATH, "--commands", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*",
                 "--no-catalog", "--curve-secret-key", dir + "/server.key", "--authorized-keys",
                 dir + "/clients", "--handshake-ms", "300"});
  std::string commands = commandsEndpointOf(shopd);
  // A key that is let in gets time for the CURVE handshake, which is slow
  // under the sanitizers; one that is not only has to time out.
  auto shopctlAs = [&](const char* name, const std::string& customer, bool expectIn = true) {
    std::vector<std::string> argv = {SHOPCTL_PATH, "--endpoint", commands, "--timeout",
                                     expectIn ? "10000" : "300"};
    if (name) {
      argv.insert(argv.end(), {"--curve-server-key", dir + "/server.pub", "--curve-client-key",
                               dir + "/" + name + ".key"});
    }
    argv.insert(argv.end(), {"create", customer, "1"});
    return Process::run(argv);
  };
  CHECK(shopctlAs("alice", "alice") == 0);
  CHECK(shopctlAs("bob", "bob", false) == 3);      // unlisted key: no connection, a timeout
  CHECK(shopctlAs(nullptr, "plain", false) == 3);  // no CURVE at all: the same

  {
    std::ofstream clients(dir + "/clients", std::ios::app);
    std::ifstream bob(dir + "/bob.pub");
    clients << bob.rdbuf();
  }
  shopd.signal(SIGHUP);
  shopd.waitForStderrLine("key files reloaded");
  CHECK(shopctlAs("bob", "bob") == 0);
  shopd.signal(SIGTERM);
  CHECK(shopd.wait() == 0);
  CHECK(shopd.err().find("denied key") != std::string::npos);
  std::filesystem::remove_all(dir);
}

namespace {

// The 16 hex digits of shopd's "server id ..." line.
std::string serverIdOf(Process& shopd) {
  std::string line = shopd.waitForStderrLine("server id ");
  std::string id = line.substr(line.find("server id ") + 10);
  REQUIRE(id.size() == 16);
  CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(id != "0000000000000000");
  return id;
}

// The events endpoint of shopd's "serving" line, once commandsEndpointOf read it.
std::string eventsEndpointOf(Process& shopd) {
  const std::string& err = shopd.err();
  const std::string marker = ", events on ";
  size_t at = err.find(marker);
  REQUIRE(at != std::string::npos);
  size_t begin = at + marker.size();
  return err.substr(begin, err.find(' ', begin) - begin);
}

// A JSON line of `shopctl tail`: its seq and customer.
std::pair<Seq, std::string> seqAndCustomer(const std::string& line) {
  capnp::JsonCodec json;
  json.handleByAnnotation<wire::Event>();
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<wire::Event>();
  json.decode(kj::StringPtr(line.c_str()), root);
  return {root.asReader().getSeq(), std::string(bus::fromWire(root.asReader()).customer())};
}

}  // namespace

TEST_CASE("shopctl tail --from 1 across a shopd restart says so, then prints every new event") {
  Process first({SHOPD_PATH, "--commands", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*",
                 "--no-catalog", "--shards", "2"});
  std::string oldId = serverIdOf(first);
  std::string commands = commandsEndpointOf(first);
  std::string events = eventsEndpointOf(first);
  zmq::context_t context(1);
  auto create = [&context, &commands](const std::string& customer) {
    bus::Client client(context, commands);
    REQUIRE(client.call(Command{CommandId::random(), CreateCustomer{customer, 1}}).ok());
  };
  for (int i = 0; i < 3; ++i) create("old" + std::to_string(i));

  Process tail({SHOPCTL_PATH, "--endpoint", commands, "--events", events, "--timeout", "3000",
                "tail", "--from", "1"});
  REQUIRE(tail.waitForStdoutLines(3).size() == 3);
  first.signal(SIGTERM);
  REQUIRE(first.wait() == 0);

  // The same endpoints; four events, one more than the old server had.
  Process second(
      {SHOPD_PATH, "--commands", commands, "--events", events, "--no-catalog", "--shards", "2"});
  std::string newId = serverIdOf(second);
  second.waitForStderrLine("serving commands on");
  for (int i = 0; i < 4; ++i) create("new" + std::to_string(i));

  // Bounded, so that a tail that never notices fails here rather than hangs.
  std::string restarted = tail.waitForStderrLine("the server restarted", 30'000);
  CHECK(restarted.find("(server id " + oldId + " -> " + newId + ")") != std::string::npos);
  CHECK(restarted.find("following the new server from seq 1") != std::string::npos);
  auto lines = tail.waitForStdoutLines(7, 30'000);
  tail.signal(SIGINT);
  CHECK(tail.wait() == 0);
  second.signal(SIGTERM);
  CHECK(second.wait() == 0);

  std::vector<std::pair<Seq, std::string>> expected = {
      {1, "old0"}, {2, "old1"}, {3, "old2"}, {1, "new0"}, {2, "new1"}, {3, "new2"}, {4, "new3"}};
  REQUIRE(lines.size() == expected.size());
  for (size_t i = 0; i < lines.size(); ++i) CHECK(seqAndCustomer(lines[i]) == expected[i]);
  // Nothing else was printed: no new event taken for the old stream's seq 4.
  CHECK(std::count(tail.out().begin(), tail.out().end(), '\n') == 7);
}
