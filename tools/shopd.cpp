// shopd: the shop server. One socket thread (ROUTER commands, PUB events)
// in front of the engine's shard threads.
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "bus/catalog.h"
#include "bus/server.h"
#include "core/log.h"
#include "tools/cli.h"

namespace {

constexpr const char* kUsage = R"(usage: shopd [options]

The shop server: commands on a ZeroMQ ROUTER socket, events on a PUB socket.

options:
  --commands ENDPOINT   ROUTER endpoint for commands     (default tcp://127.0.0.1:5555)
  --events ENDPOINT     PUB endpoint for events          (default tcp://127.0.0.1:5556)
  --shards N            shard threads                    (default: cores - 1, at least 1; here %u)
  --max-pending N       pending operations per customer  (default 5)
  --max-in-flight N     operations in flight, all customers; past it
                        commands are rejected 'overloaded' (default 65536)
  --max-in-flight-per-connection N
                        commands in flight from one connection; past it
                        its commands are rejected 'overloaded' (default 1024)
  --retention N         events kept for ReadEvents       (default 1000000)
  --dedupe-window N     completed commandIds remembered  (default 1000000)
  --catalog FILE        starter catalog, JSON            (default %s)
  --no-catalog          start with no products
  --max-connections N   live connections per socket; past it new ones are
                        turned away at their handshake (default 10000)
  --handshake-ms MS     a connection must finish ZeroMQ's handshake in this
                        time, or it is closed (default 5000)

security (CURVE: encryption, and only listed keys get in; see README):
  --curve-secret-key FILE  the server's key pair (make one: shopctl keygen NAME)
  --authorized-keys FILE   client public keys, one per line
  --admin-keys FILE        keys that may also add products and restock

  -h, --help            this text
  --version             print the version

Stops cleanly on SIGINT or SIGTERM: requests already received are answered.
SIGHUP re-reads the key files; connections already made are kept.
Event topics: c/<customer>/<event>, p/<product>/<event>, s/<event>.
)";

struct Options {
  shop::bus::ServerConfig server;
  shop::bus::AccessConfig access;
  shop::EngineConfig engine;
  std::string catalog = SHOP_DEFAULT_CATALOG;
};

Options parse(int argc, char** argv) {
  using shop::cli::unsignedValue;
  using shop::cli::value;
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--version") {
      std::printf("shopd %s\n", SHOP_VERSION);
      std::exit(0);
    } else if (a == "-h" || a == "--help") {
      std::printf(kUsage, shop::defaultShardCount(), SHOP_DEFAULT_CATALOG);
      std::exit(0);
    } else if (a == "--commands") {
      o.server.commandsEndpoint = value(argc, argv, i);
    } else if (a == "--events") {
      o.server.eventsEndpoint = value(argc, argv, i);
    } else if (a == "--shards") {
      o.engine.shards = unsignedValue(a, value(argc, argv, i), 1, 256);
    } else if (a == "--max-pending") {
      o.engine.maxPending = unsignedValue(a, value(argc, argv, i), 1, 1'000'000);
    } else if (a == "--max-in-flight") {
      o.engine.maxInFlight = unsignedValue(a, value(argc, argv, i), 1, 10'000'000);
    } else if (a == "--max-in-flight-per-connection") {
      o.server.maxInFlightPerConnection =
          static_cast<uint32_t>(unsignedValue(a, value(argc, argv, i), 1, 10'000'000));
    } else if (a == "--retention") {
      o.engine.retention = unsignedValue(a, value(argc, argv, i), 1, 1'000'000'000);
    } else if (a == "--dedupe-window") {
      o.engine.dedupeWindow = unsignedValue(a, value(argc, argv, i), 0, 1'000'000'000);
    } else if (a == "--catalog") {
      o.catalog = value(argc, argv, i);
    } else if (a == "--no-catalog") {
      o.catalog.clear();
    } else if (a == "--max-connections") {
      o.access.maxConnections = unsignedValue(a, value(argc, argv, i), 1, 10'000'000);
    } else if (a == "--handshake-ms") {
      o.server.handshakeMs = static_cast<int>(unsignedValue(a, value(argc, argv, i), 1, 600'000));
    } else if (a == "--curve-secret-key") {
      o.access.secretKeyFile = value(argc, argv, i);
    } else if (a == "--authorized-keys") {
      o.access.authorizedKeysFile = value(argc, argv, i);
    } else if (a == "--admin-keys") {
      o.access.adminKeysFile = value(argc, argv, i);
    } else {
      throw shop::cli::UsageError("unknown option '" + a + "'");
    }
  }
  return o;
}

// Every client connection is a file descriptor, and Debian's usual soft
// limit of 1,024 lets about a thousand idle sockets lock everyone else out.
// The soft limit goes up to the hard one, and the log says what it is.
void raiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  rlim_t before = limit.rlim_cur;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) limit.rlim_cur = before;
  }
  shop::logLine("shopd", "open files: soft limit %llu (was %llu), hard limit %llu",
                static_cast<unsigned long long>(limit.rlim_cur),
                static_cast<unsigned long long>(before),
                static_cast<unsigned long long>(limit.rlim_max));
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    options = parse(argc, argv);
  } catch (const shop::cli::UsageError& e) {
    std::fprintf(stderr, "shopd: %s (see shopd --help)\n", e.what());
    return 2;
  }

  // Signals become a readable fd for the socket thread's poll. Blocked
  // before any thread starts, so every thread inherits the mask.
  int signalFd = shop::cli::signalFdFor({SIGINT, SIGTERM});
  // SIGHUP has its own signalfd, read by the access thread: reload keys.
  options.access.reloadFd = shop::cli::signalFdFor({SIGHUP});
  if (signalFd < 0 || options.access.reloadFd < 0) {
    std::perror("shopd: signalfd");
    return 1;
  }
  options.server.stopFd = signalFd;
  raiseOpenFileLimit();

  try {
    std::vector<shop::AddProduct> catalog;
    if (!options.catalog.empty()) catalog = shop::bus::loadCatalog(options.catalog);

    // main() wires the components: the server's sockets are the engine's
    // sinks, and the server drives the engine on this (the socket) thread.
    zmq::context_t context(1);
    // The ZAP handler first: ZeroMQ asks it about every handshake from the
    // moment the sockets bind, and it outlives them.
    shop::bus::AccessControl access(context, options.access);
    options.server.access = &access;
    shop::bus::Server server(context, options.server);
    shop::Engine engine(options.engine, server, server);
    // Seqs start again at 1 on every start; this id, on every ReadEvents
    // page, is how a subscriber tells this run's stream from the last one's.
    shop::logLine("shopd", "server id %s", shop::serverIdHex(engine.serverId()).c_str());
    for (auto& product : catalog) {
      engine.submit(shop::Command{shop::CommandId::random(), std::move(product)},
                    shop::bus::Server::kLocalTag);
    }
    engine.drain();
    if (!options.catalog.empty()) {
      shop::logLine("shopd", "catalog %s: %zu products", options.catalog.c_str(), catalog.size());
    }
    server.run(engine);
    signalfd_siginfo info{};
    if (::read(signalFd, &info, sizeof info) == sizeof info) {
      shop::logLine("shopd", "stopped by %s", strsignal(static_cast<int>(info.ssi_signo)));
    }
  } catch (const shop::bus::ServerFailure& e) {
    shop::logLine("shopd", "%s", e.what());
    return 70;  // EX_SOFTWARE: a bug stopped the server
  } catch (const shop::bus::KeyError& e) {
    shop::logLine("shopd", "%s", e.what());
    return 1;
  } catch (const zmq::error_t& e) {
    shop::logLine("shopd", "cannot serve: %s", e.what());
    return 1;
  } catch (const std::exception& e) {
    shop::logLine("shopd", "fatal: %s", e.what());
    return 1;
  }
  return 0;
}
