// shop-relay: delivers selected events from shopd to downstream systems
// (HTTP webhooks, ZeroMQ DEALER endpoints), at least once, each with an
// idempotency key, in seq order per destination, with retries, backoff,
// a rate limit and a parked list. See README "Delivery relay".
//
// Exit codes: 0 stopped by SIGINT/SIGTERM, 2 usage or a bad config (or
// state files that do not read), 4 events lost to shopd's retention. An
// unreachable shopd is logged and tried again.
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <thread>

#include "core/log.h"
#include "relay/relay.h"
#include "tools/cli.h"

namespace {
std::atomic<bool> stopRequested{false};
}

int main(int argc, char** argv) {
  CLI::App app{
      "shop-relay: delivers shopd's events to downstream systems, at least once with an "
      "idempotency key.\nExit codes: 0 stopped by a signal, 2 usage or a bad config, 4 events "
      "lost to shopd's retention."};
  app.set_version_flag("--version", std::string("shop-relay ") + SHOP_VERSION);
  std::string configPath;
  app.add_option("--config", configPath, "the relay's JSON config (see README)")
      ->required()
      ->type_name("FILE");
  bool check = false;
  app.add_flag("--check", check, "read the config, say whether it is good, and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    if (e.get_exit_code() == 0) return code;
    std::string hint = shop::cli::didYouMean(app, argc, argv);
    if (!hint.empty()) std::fprintf(stderr, "shop-relay: %s\n", hint.c_str());
    return 2;
  }
  shop::relay::Config config;
  try {
    config = shop::relay::readConfig(configPath);
  } catch (const shop::relay::ConfigError& e) {
    std::fprintf(stderr, "shop-relay: %s\n", e.what());
    return 2;
  }
  if (check) {
    std::printf("%s: %zu destinations, good\n", configPath.c_str(), config.destinations.size());
    return 0;
  }
  // SIGINT and SIGTERM are blocked in every thread (the relay's threads
  // inherit the mask) and taken by one that only waits for them: no socket
  // call or HTTP attempt is ever cut short by EINTR.
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);
  std::thread signals([&stopSignals] {
    int signo = 0;
    sigwait(&stopSignals, &signo);
    stopRequested = true;
  });
  signals.detach();  // lives until the process exits
  try {
    shop::relay::Relay relay(config);
    relay.run(stopRequested);
    shop::logLine("relay", "stopped; checkpoints written");
    return 0;
  } catch (const shop::relay::StreamTruncated& e) {
    shop::logLine("relay", "fatal: %s", e.what());
    return 4;
  } catch (const std::exception& e) {
    shop::logLine("relay", "fatal: %s", e.what());
    return 2;
  }
}
