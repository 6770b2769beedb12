// The relay's config: what is accepted, and every bad field named.
#include <doctest/doctest.h>

#include "bus/access.h"
#include "relay/config.h"
#include "tests/testkit/temp_dir.h"

using namespace shop::relay;

namespace {

std::string errorOf(const std::string& text) {
  try {
    parseConfig(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a config reads with its defaults filled in") {
  Config c = parseConfig(R"({
    "commands": "tcp://127.0.0.1:6000", "events": "tcp://127.0.0.1:6001",
    "stateDir": "/tmp/x",
    "destinations": [
      {"name": "pos", "url": "http://127.0.0.1:8080/orders", "events": ["holdConfirmed"],
       "maxInFlight": 2, "ratePerSecond": 50, "timeoutMs": 1000,
       "retry": {"initialMs": 100, "multiplier": 3, "maxMs": 2000, "jitter": 0.1,
                 "maxAttempts": 4}},
      {"name": "mail", "kind": "zmq", "url": "tcp://127.0.0.1:7000",
       "events": ["customerCreated", "productBought"], "customerPrefix": "vip-"}
    ]})");
  CHECK(c.commands == "tcp://127.0.0.1:6000");
  CHECK(c.control == "tcp://127.0.0.1:5570");
  REQUIRE(c.destinations.size() == 2);
  const Destination& pos = c.destinations[0];
  CHECK(pos.kind == Destination::Kind::http);
  CHECK(pos.maxInFlight == 2);
  CHECK(pos.retry.maxAttempts == 4);
  CHECK(pos.retry.baseDelayMs(1) == 100);
  CHECK(pos.retry.baseDelayMs(2) == 300);
  CHECK(pos.retry.baseDelayMs(3) == 900);
  CHECK(pos.retry.baseDelayMs(4) == 2000);  // capped
  const Destination& mail = c.destinations[1];
  CHECK(mail.kind == Destination::Kind::zmq);
  CHECK(mail.customerPrefix == "vip-");
  CHECK(mail.maxInFlight == 1);
  CHECK(mail.retry.initialMs == 200);
}

TEST_CASE("a bad config names the field") {
  const std::string ok = R"("name": "pos", "url": "http://h/x", "events": ["productBought"])";
  auto one = [](const std::string& destination) {
    return R"({"destinations": [{)" + destination + "}]}";
  };
  CHECK(errorOf("{nope").starts_with("not JSON"));
  CHECK(errorOf("{}") == "destinations: is missing (a list of destinations)");
  CHECK(errorOf(R"({"destinations": []})") == "destinations: must be a non-empty list");
  CHECK(errorOf(one(R"("url": "http://h/x", "events": ["productBought"])")) ==
        "destinations[0].name: is missing");
  CHECK(errorOf(one(R"("name": "pos", "events": ["productBought"])")) ==
        "destinations[0].url: is missing");
  CHECK(errorOf(one(R"("name": "pos", "url": "ftp://h/x", "events": ["productBought"])"))
            .starts_with("destinations[0].url: 'ftp://h/x' is not a URL"));
  for (std::string url : {"http://h:99999/x", "http://h x/y", "http://:80/", "http://h:8a/"}) {
    CAPTURE(url);
    CHECK(errorOf(one(R"("name": "pos", "url": ")" + url + R"(", "events": ["productBought"])"))
              .starts_with("destinations[0].url: '" + url + "' is not a URL"));
  }
  CHECK(errorOf(one(R"("name": "pos", "url": "http://h/x", "events": ["productBougth"])"))
            .starts_with("destinations[0].events[0]: 'productBougth' is not an event kind"));
  CHECK(errorOf(one(R"("name": "pos", "url": "http://h/x")")) ==
        "destinations[0].events: is missing (a list of event kinds)");
  CHECK(errorOf(one(ok + R"(, "maxInFlight": 0)")) ==
        "destinations[0].maxInFlight: must be from 1 to 256, got 0");
  CHECK(errorOf(one(ok + R"(, "retry": {"jitter": 2})"))
            .starts_with("destinations[0].retry.jitter: must be from 0 to 1"));
  CHECK(errorOf(one(ok + R"(, "retry": {"maxAtempts": 2})"))
            .starts_with("destinations[0].retry.maxAtempts: is not a field here"));
  CHECK(errorOf(one(ok + R"(, "kind": "smtp")")) ==
        "destinations[0].kind: 'smtp' is not http or zmq");
  CHECK(errorOf(one(R"("name": "a/b", "url": "http://h/x", "events": ["productBought"])"))
            .starts_with("destinations[0].name: 'a/b' must be"));
  CHECK(errorOf(R"({"destinations": [{)" + ok + "}, {" + ok + "}]}") ==
        "destinations[1].name: 'pos' is used twice");
  CHECK(errorOf(R"({"events": "nope", "destinations": [{)" + ok + "}]}")
            .starts_with("events: 'nope' is not a ZeroMQ endpoint"));
}

TEST_CASE("CURVE keys in a config: both or neither, and files that read as keys") {
  shop::testkit::TempDir dir;
  std::string base = dir.str() + "/";
  shop::bus::writeKeyFiles(base + "server", shop::bus::generateKeyPair());
  shop::bus::writeKeyFiles(base + "relay", shop::bus::generateKeyPair());
  auto with = [](const std::string& fields) {
    return R"({)" + fields +
           R"(, "destinations": [{"name": "pos", "url": "http://h/x", "events": ["productBought"]}]})";
  };
  Config c = parseConfig(with(R"("curveServerKey": ")" + base +
                              R"(server.pub", "curveClientKey": ")" + base + R"(relay.key")"));
  CHECK(c.curve.on());
  CHECK(c.curve.serverPublicKey == shop::bus::readKeyFile(base + "server.pub").publicKey);
  CHECK(c.curve.keys.publicKey == shop::bus::readKeyFile(base + "relay.key").publicKey);
  CHECK_FALSE(parseConfig(with(R"("stateDir": "s")")).curve.on());

  CHECK(errorOf(with(R"("curveServerKey": ")" + base + R"(server.pub")")) ==
        "curveClientKey: is missing: CURVE takes both curveServerKey and curveClientKey");
  CHECK(errorOf(with(R"("curveClientKey": ")" + base + R"(relay.key")")) ==
        "curveServerKey: is missing: CURVE takes both curveServerKey and curveClientKey");
  std::string missing = errorOf(with(R"("curveServerKey": ")" + base +
                                     R"(nope.pub", "curveClientKey": ")" + base + R"(relay.key")"));
  CHECK(missing.starts_with("curveServerKey, curveClientKey: "));
  CHECK(missing.find("nope.pub") != std::string::npos);
  // A public key where the pair (with its secret) is needed.
  CHECK(errorOf(with(R"("curveServerKey": ")" + base + R"(server.pub", "curveClientKey": ")" +
                     base + R"(relay.pub")"))
            .starts_with("curveServerKey, curveClientKey: "));
}
