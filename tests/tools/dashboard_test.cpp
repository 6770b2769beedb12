// The dashboard's HTTP side, served in-process against a real server: the
// JSON API's answers, its 400s and 404s, paging through 100k customers, and
// that no response carries anything but valid UTF-8 JSON.
#include <doctest/doctest.h>

#include <httplib.h>

#include <nlohmann/json.hpp>

#include <thread>

#include "bus/client.h"
#include "projections/runner.h"
#include "tests/tools/dashboard_fixture.h"
#include "tools/dashboard/http.h"
#include "tools/dashboard/views.h"

using namespace shop;
using nlohmann::json;
using shop::testkit::cmd;
using shop::testkit::Dashboard;
using shop::testkit::EmbeddedServer;

TEST_CASE("dashboard API: customers, products, rejections and health match what was done") {
  Dashboard d;
  bus::Client client(d.server.context(), d.server.commands());
  REQUIRE(client.call(cmd(AddProduct{"apple", 150, 10})).ok());
  REQUIRE(client.call(cmd(CreateCustomer{"alice", 1000})).ok());
  REQUIRE(client.call(cmd(CreateCustomer{"<img src=x onerror=alert(1)>", 5})).ok());
  REQUIRE(client.call(cmd(BuyProduct{"alice", "apple", 2})).ok());
  REQUIRE(client.call(cmd(BuyProduct{"alice", "apple", 100})).ok());  // outOfStock
  REQUIRE(client.call(cmd(CreateCustomer{"bad\xff\xfe", 1})).ok());   // invalidId
  d.caughtUp();

  auto [status, alice] = d.get("/api/customers/alice");
  CHECK(status == 200);
  CHECK(alice["balance"] == 700);
  CHECK(alice["holdings"][0]["product"] == "apple");
  CHECK(alice["holdings"][0]["quantity"] == 2);
  CHECK(alice["rejected"] == 1);

  auto [imgStatus, img] = d.get("/api/customers/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E");
  CHECK(imgStatus == 200);
  CHECK(img["id"] == "<img src=x onerror=alert(1)>");

  auto [listStatus, list] = d.get("/api/customers?sort=balance&order=desc&limit=1");
  CHECK(listStatus == 200);
  CHECK(list["total"] == 2);
  CHECK(list["customers"][0]["id"] == "alice");

  auto [productsStatus, products] = d.get("/api/products");
  CHECK(productsStatus == 200);
  CHECK(products["products"][0]["stock"] == 8);
  CHECK(products["products"][0]["revenue"] == 300);
  CHECK(products["topSellers"][0]["id"] == "apple");

  auto [rejStatus, rejections] = d.get("/api/rejections");
  CHECK(rejStatus == 200);
  CHECK(rejections["byReason"]["outOfStock"] == 1);
  CHECK(rejections["byReason"]["invalidId"] == 1);
  // The invalid id is shown in its escaped form: valid UTF-8, never the raw bytes.
  std::string shown = rejections["recent"][0]["customer"];
  CHECK(shown.find("bad") != std::string::npos);
  CHECK(shown.find('\xff') == std::string::npos);

  auto [healthStatus, health] = d.get("/api/health");
  CHECK(healthStatus == 200);
  CHECK(health["connected"] == true);
  CHECK(health["lag"] == 0);
  CHECK(health["serverId"].is_string());
  CHECK(health["serverId"].get<std::string>().size() == 16);

  auto [activeStatus, active] = d.get("/api/active");
  CHECK(activeStatus == 200);
  CHECK(active["count"] == 2);
  auto [tpStatus, throughput] = d.get("/api/throughput");
  CHECK(tpStatus == 200);
  CHECK(throughput["seconds"].size() == 300);

  auto metrics = d.http.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  CHECK(metrics->body.find("shop_customers 2\n") != std::string::npos);
  CHECK(metrics->body.find("shop_rejections_total{reason=\"outOfStock\"} 1\n") !=
        std::string::npos);
  CHECK(metrics->body.find("shop_projection_connected 1\n") != std::string::npos);

  auto page = d.http.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->get_header_value("Content-Type") == "text/html; charset=utf-8");
  CHECK(page->body.find("<html") != std::string::npos);
}

TEST_CASE("dashboard API: a bad parameter gets 400 with a message, an unknown route or id 404") {
  Dashboard d;
  for (const char* path :
       {"/api/customers?limit=0", "/api/customers?limit=501", "/api/customers?limit=abc",
        "/api/customers?offset=-1", "/api/customers?sort=size", "/api/customers?order=up",
        "/api/customers?colour=red", "/api/customers?prefix=%FF", "/api/active?limit=x",
        "/api/health?verbose=1"}) {
    auto [status, body] = d.get(path);
    CHECK(status == 400);
    CHECK(body["error"].is_string());
    CHECK_FALSE(body["error"].get<std::string>().empty());
  }
  auto [unknownStatus, unknown] = d.get("/api/nothing");
  CHECK(unknownStatus == 404);
  CHECK(unknown["error"] == "no route GET /api/nothing");
  auto [noneStatus, none] = d.get("/api/customers/nobody");
  CHECK(noneStatus == 404);
  CHECK(none["error"] == "no customer 'nobody'");
}

TEST_CASE("dashboard API: 100k customers page by prefix and in order, without gaps or repeats") {
  Dashboard d;
  {
    bus::Client client(d.server.context(), d.server.commands());
    constexpr int kCustomers = 100'000;
    for (int i = 0; i < kCustomers; ++i) {
      client.send(cmd(CreateCustomer{"k" + std::to_string(i), i}),
                  [](const bus::CallResult& r) { REQUIRE(r.ok()); });
      if (client.inFlight() >= 256) client.poll(-1);
    }
    while (client.inFlight() > 0) client.poll(-1);
  }
  d.caughtUp();

  std::vector<std::string> ids;
  for (int offset = 0;; offset += 500) {
    auto [status, page] = d.get("/api/customers?limit=500&offset=" + std::to_string(offset));
    REQUIRE(status == 200);
    CHECK(page["total"] == 100'000);
    for (const auto& row : page["customers"]) ids.push_back(row["id"]);
    if (page["customers"].size() < 500) break;
  }
  CHECK(ids.size() == 100'000);
  CHECK(std::is_sorted(ids.begin(), ids.end()));
  CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());

  auto [status, k999] = d.get("/api/customers?prefix=k999&limit=500");
  CHECK(status == 200);
  CHECK(k999["total"] == 111);  // k999, k9990..k9999, k99900..k99999
  auto [richStatus, richest] = d.get("/api/customers?sort=balance&order=desc&limit=2&offset=1");
  CHECK(richStatus == 200);
  CHECK(richest["customers"][0]["id"] == "k99998");
  CHECK(richest["customers"][1]["id"] == "k99997");
}

TEST_CASE("dashboard: the live stream sends summaries as events come") {
  Dashboard d;
  httplib::Client stream("127.0.0.1", d.port);
  stream.set_read_timeout(10, 0);
  bus::Client client(d.server.context(), d.server.commands());
  std::string seen;
  bool sawCustomer = false;
  std::thread writer([&client] {
    for (int i = 0; i < 50; ++i) (void)client.call(cmd(CreateCustomer{"s" + std::to_string(i), 1}));
  });
  auto res = stream.Get("/events", [&](const char* data, size_t length) {
    seen.append(data, length);
    // Whole messages only: "event: summary\ndata: {...}\n\n".
    for (size_t end; (end = seen.find("\n\n")) != std::string::npos; seen.erase(0, end + 2)) {
      std::string message = seen.substr(0, end);
      if (!message.starts_with("event: summary\ndata: ")) continue;
      json summary = json::parse(message.substr(message.find("data: ") + 6));
      CHECK(summary["health"]["connected"].is_boolean());
      if (summary["customers"] == 50) sawCustomer = true;
    }
    return !sawCustomer;  // stop reading once the last customer is in a summary
  });
  writer.join();
  CHECK(sawCustomer);
}
