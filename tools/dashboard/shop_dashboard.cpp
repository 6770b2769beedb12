// shop-dashboard: hosts the read models, fed from a running shopd, and
// serves them over HTTP: a live page, a JSON API and Prometheus metrics.
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "bus/client.h"
#include "core/log.h"
#include "projections/runner.h"
#include "tools/cli.h"
#include "tools/dashboard/http.h"
#include "tools/dashboard/relay_watch.h"
#include "tools/dashboard/views.h"

namespace {

// "HOST:PORT" -> host and port; the port may be 0 (any free one).
std::pair<std::string, int> hostPort(const std::string& text) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    throw CLI::ValidationError("--http", "expected HOST:PORT, got '" + text + "'");
  }
  std::string host = text.substr(0, colon);
  std::string port = text.substr(colon + 1);
  int value = -1;
  try {
    size_t used = 0;
    value = std::stoi(port, &used);
    if (used != port.size()) value = -1;
  } catch (const std::exception&) {
  }
  if (value < 0 || value > 65535) {
    throw CLI::ValidationError("--http", "port must be 0 to 65535, got '" + port + "'");
  }
  return {host, value};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "shop-dashboard: live read models of a running shopd, served over HTTP.\n"
      "Opens the page at http://HOST:PORT/ (default http://127.0.0.1:8080/)."};
  app.set_version_flag("--version", std::string("shop-dashboard ") + SHOP_VERSION);
  std::string commands = "tcp://127.0.0.1:5555";
  std::string events = "tcp://127.0.0.1:5556";
  std::string http = "127.0.0.1:8080";
  unsigned activeHours = 24;
  unsigned gateMinutes = 5;
  std::string curveServerKey, curveClientKey;
  std::vector<std::string> relays;
  app.add_option("--commands", commands, "shopd's command endpoint (ROUTER)")
      ->capture_default_str();
  app.add_option("--events", events, "shopd's event endpoint (PUB)")->capture_default_str();
  app.add_option("--http", http, "HOST:PORT to serve HTTP on; port 0 picks a free one")
      ->capture_default_str();
  app.add_option("--active-window-hours", activeHours,
                 "a customer is active for this long after its last event")
      ->capture_default_str()
      ->check(CLI::Range(1u, 24u * 365u));
  app.add_option("--gate-window-minutes", gateMinutes,
                 "the window of the hot-customers-at-the-gate table")
      ->capture_default_str()
      ->check(CLI::Range(1u, 24u * 60u));
  app.add_option("--curve-server-key", curveServerKey,
                 "shopd's public key (NAME.pub): turns CURVE on")
      ->check(CLI::ExistingFile);
  app.add_option("--curve-client-key", curveClientKey,
                 "this client's key pair (NAME.key), listed by shopd")
      ->check(CLI::ExistingFile);
  app.add_option("--relay", relays,
                 "a shop-relay's control socket, for the Delivery table and metrics "
                 "(once per relay)")
      ->type_name("ENDPOINT")
      ->check(
          [](const std::string& endpoint) -> std::string {
            // What ZeroMQ itself would refuse, refused at the start.
            zmq::context_t context(1);
            zmq::socket_t socket(context, zmq::socket_type::req);
            socket.set(zmq::sockopt::linger, 0);
            try {
              socket.connect(endpoint);
            } catch (const zmq::error_t& e) {
              return "'" + endpoint + "' is not a ZeroMQ endpoint: " + e.what();
            }
            return "";
          },
          "");
  std::pair<std::string, int> address;
  try {
    app.parse(argc, argv);
    address = hostPort(http);
    if (curveServerKey.empty() != curveClientKey.empty()) {
      throw CLI::ValidationError("CURVE needs both --curve-server-key and --curve-client-key");
    }
    for (size_t i = 0; i < relays.size(); ++i) {
      // Twice the same relay would be two rows, and two series with the
      // same labels in /metrics.
      for (size_t j = 0; j < i; ++j) {
        if (relays[i] == relays[j]) {
          throw CLI::ValidationError("--relay", "'" + relays[i] + "' is given twice");
        }
      }
    }
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    if (e.get_exit_code() == 0) return code;
    std::string hint = shop::cli::didYouMean(app, argc, argv);
    if (!hint.empty()) std::fprintf(stderr, "shop-dashboard: %s\n", hint.c_str());
    return 2;
  }

  // SIGINT and SIGTERM become a readable fd; blocked before any thread starts.
  int signalFd = shop::cli::signalFdFor({SIGINT, SIGTERM});
  if (signalFd < 0) {
    std::perror("shop-dashboard: signalfd");
    return 1;
  }

  shop::projections::RunnerConfig config;
  config.commandsEndpoint = commands;
  config.eventsEndpoint = events;
  config.models.activeWindow = std::chrono::hours(activeHours);
  config.models.gateWindow = std::chrono::minutes(gateMinutes);
  config.summarize = shop::dashboard::summaryJson;
  try {
    if (!curveServerKey.empty()) {
      config.curve = shop::bus::ClientCurve::fromFiles(curveServerKey, curveClientKey);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shop-dashboard: %s\n", e.what());
    return 2;
  }

  shop::projections::ProjectionRunner runner(config);
  shop::dashboard::RelayWatch relayWatch({.endpoints = relays});
  shop::dashboard::HttpFront front(runner, {.host = address.first, .port = address.second},
                                   &relayWatch);
  int port;
  try {
    port = front.bind();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shop-dashboard: %s\n", e.what());
    return 1;
  }
  runner.start();
  relayWatch.start();
  for (const auto& r : relays)
    shop::logLine("shop-dashboard", "asking shop-relay at %s", r.c_str());
  shop::logLine("shop-dashboard", "serving http://%s:%d/ for shopd at %s (events %s)",
                address.first.c_str(), port, commands.c_str(), events.c_str());
  std::thread server([&front] { front.serve(); });

  pollfd item{signalFd, POLLIN, 0};
  while (::poll(&item, 1, -1) < 0 && errno == EINTR) {
  }
  shop::logLine("shop-dashboard", "stopping");
  front.stop();
  server.join();
  relayWatch.stop();
  runner.stop();
  ::close(signalFd);
  shop::logLine("shop-dashboard", "stopped");
  return 0;
}
