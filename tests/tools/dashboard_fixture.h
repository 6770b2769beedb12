// The dashboard's HTTP side served in-process for tests: a real server, the
// projection runner following it, and the HTTP front on a free port.
#pragma once

#include <doctest/doctest.h>

#include <httplib.h>

#include <nlohmann/json.hpp>

#include <thread>

#include "bus/client.h"
#include "projections/runner.h"
#include "tests/testkit/embedded_server.h"
#include "tools/dashboard/http.h"
#include "tools/dashboard/relay_watch.h"
#include "tools/dashboard/views.h"

namespace shop::testkit {

using nlohmann::json;

inline Command cmd(CommandBody body) {
  return Command{CommandId::random(), std::move(body)};
}

// A server, the runner following it, and the HTTP front on a free port.
struct Dashboard {
  EmbeddedServer server;
  projections::ProjectionRunner runner;
  dashboard::HttpFront front;
  int port;
  std::thread serving;
  httplib::Client http;

  explicit Dashboard(const dashboard::RelayWatch* relays = nullptr)
      : runner([this] {
          projections::RunnerConfig config;
          config.commandsEndpoint = server.commands();
          config.eventsEndpoint = server.events();
          config.summarize = dashboard::summaryJson;
          return config;
        }()),
        front(runner, {.port = 0}, relays),
        port(front.bind()),
        serving([this] { front.serve(); }),
        http("127.0.0.1", port) {
    runner.start();
    http.set_read_timeout(10, 0);
  }
  ~Dashboard() {
    front.stop();
    serving.join();
    runner.stop();
  }

  // The models have applied the server's head.
  void caughtUp() {
    bus::Client client(server.context(), server.commands());
    auto head = client.call(cmd(ReadEvents{UINT64_MAX, 1}));
    REQUIRE(head.ok());
    Seq seq = head.reply->reply.page.headSeq;
    uint64_t version = 0;
    for (int waits = 0;; ++waits) {
      Seq applied = runner
                        .query([](projections::ReadModels&, const projections::Health& h) {
                          return h.appliedSeq;
                        })
                        .get();
      if (applied >= seq) return;
      REQUIRE(waits < 100);
      version = runner.waitSummary(version, std::chrono::milliseconds(1000)).version;
    }
  }

  // GET, checking that the body is strict UTF-8 JSON whatever the status.
  std::pair<int, json> get(const std::string& path) {
    auto res = http.Get(path);
    REQUIRE(res);
    INFO(path << " -> " << res->status << " " << res->body);
    CHECK(res->get_header_value("Content-Type").starts_with("application/json"));
    json body;
    REQUIRE_NOTHROW(body = json::parse(res->body));  // throws on invalid UTF-8
    return {res->status, body};
  }
};

}  // namespace shop::testkit
