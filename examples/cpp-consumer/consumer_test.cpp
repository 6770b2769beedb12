// The test kit from an installed shop: a real server on ephemeral ports,
// a real client, and EventProbe waiting on the events; and the relay's
// library, reading a config.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "bus/client.h"
#include "relay/config.h"
#include "testkit/embedded_server.h"
#include "testkit/event_probe.h"

namespace m = shop::testkit::match;

TEST_CASE("a customer buys what the shop stocks, and the events say so in order") {
  shop::testkit::EmbeddedServer server;
  shop::testkit::EventProbe probe(server.context(), server.events(), server.commands());
  shop::bus::Client client(server.context(), server.commands());

  REQUIRE(client.call({shop::CommandId::random(), shop::AddProduct{"pear", 120, 3}}).ok());
  REQUIRE(client.call({shop::CommandId::random(), shop::CreateCustomer{"ann", 1000}}).ok());
  auto bought = client.call({shop::CommandId::random(), shop::BuyProduct{"ann", "pear", 2}});
  REQUIRE(bought.ok());
  CHECK(bought.reply->reply.status == shop::ReplyStatus::accepted);

  probe.expectInOrder({m::event<shop::ProductAdded>(), m::event<shop::CustomerCreated>("ann"),
                       m::event<shop::ProductBought>("ann")});
  auto tooMany = client.call({shop::CommandId::random(), shop::BuyProduct{"ann", "pear", 2}});
  REQUIRE(tooMany.ok());
  CHECK(tooMany.reply->reply.rejection()->reason == shop::RejectReason::outOfStock);
}

TEST_CASE("the relay's library: a config is read, and a bad one names its field") {
  shop::relay::Config config = shop::relay::parseConfig(R"({"destinations": [
      {"name": "pos", "url": "http://127.0.0.1:8080/orders", "events": ["productBought"]}]})");
  CHECK(config.destinations.at(0).maxInFlight == 1);
  CHECK_THROWS_WITH_AS(shop::relay::parseConfig(R"({"destinations": [{"name": "pos"}]})"),
                       "destinations[0].url: is missing", shop::relay::ConfigError);
}
