// shopd: the shop server. One socket thread (ROUTER commands, PUB events)
// in front of the engine's shard threads.
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "bus/catalog.h"
#include "bus/server.h"
#include "core/journal.h"
#include "core/log.h"
#include "core/recovery.h"
#include "core/snapshot.h"
#include "tools/cli.h"

namespace {

constexpr const char* kUsage = R"(usage: shopd [options]

The shop server: commands on a ZeroMQ ROUTER socket, events on a PUB socket.

options:
  --commands ENDPOINT   ROUTER endpoint for commands     (default tcp://127.0.0.1:5555)
  --events ENDPOINT     PUB endpoint for events          (default tcp://127.0.0.1:5556)
  --events-json ENDPOINT  also publish every event as JSON, same topics, on
                        this PUB endpoint                (default: off)
  --shards N            shard threads                    (default: cores - 1, at least 1; here %u)
  --max-pending N       pending operations per customer  (default 5)
  --max-in-flight N     operations in flight, all customers; past it
                        commands are rejected 'overloaded' (default 65536)
  --max-in-flight-per-connection N
                        commands in flight from one connection; past it
                        its commands are rejected 'overloaded' (default 1024)
  --retention N         events kept for ReadEvents       (default 1000000)
  --dedupe-window N     completed commandIds remembered  (default 1000000)
  --catalog FILE        starter catalog, JSON
                        (default: %s)
  --no-catalog          start with no products
  --max-connections N   live connections per socket; past it new ones are
                        turned away at their handshake (default 10000)
  --handshake-ms MS     a connection must finish ZeroMQ's handshake in this
                        time, or it is closed (default 5000)

durability (without --journal, everything is in memory: a crash or a
restart loses every customer and event):
  --journal DIR         journal every event in DIR and recover from it on
                        start; DIR is locked against a second shopd
  --fsync MODE          always: a reply only once fdatasync covers its event
                          (the default; nothing acknowledged is ever lost)
                        interval: sync every --fsync-interval-ms, reply after
                          write (a power loss loses up to that interval)
                        never: the OS syncs (a power loss loses what it held)
  --fsync-interval-ms MS  for --fsync interval               (default 50)
  --segment-size SIZE   a journal file rolls at this size; K, M, G suffixes
                                                         (default 64M)
  --snapshot-every N    write a snapshot of every aggregate each N events,
                        so that a start replays only the journal after it;
                        0: never                         (default 1000000)
  --keep-segments       keep journal files that snapshots cover (they are
                        deleted once no kept snapshot needs them)

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

// The starter catalog installed with shopd: <prefix>/share/shop/catalog/
// default.json when shopd is <prefix>/bin/shopd (and the same under the
// build dir). Found from the executable's own path, so no build-time
// absolute path is baked in.
std::string defaultCatalog() {
  std::error_code error;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return SHOP_CATALOG_RELPATH;
  return (self.parent_path().parent_path() / SHOP_CATALOG_RELPATH).lexically_normal().string();
}

struct Options {
  shop::bus::ServerConfig server;
  shop::bus::AccessConfig access;
  shop::EngineConfig engine;
  std::string catalog = defaultCatalog();
  bool catalogGiven = false;    // --catalog or --no-catalog
  shop::JournalConfig journal;  // dir empty: in memory only
  shop::SnapshotConfig snapshots;
  bool journalTuned = false;  // a journal flag given without --journal
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
      std::printf(kUsage, shop::defaultShardCount(), defaultCatalog().c_str());
      std::exit(0);
    } else if (a == "--commands") {
      o.server.commandsEndpoint = value(argc, argv, i);
    } else if (a == "--events") {
      o.server.eventsEndpoint = value(argc, argv, i);
    } else if (a == "--events-json") {
      o.server.eventsJsonEndpoint = value(argc, argv, i);
      if (o.server.eventsJsonEndpoint.empty()) {
        throw shop::cli::UsageError("--events-json needs an endpoint");
      }
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
      o.catalogGiven = true;
    } else if (a == "--no-catalog") {
      o.catalog.clear();
      o.catalogGiven = true;
    } else if (a == "--max-connections") {
      o.access.maxConnections = unsignedValue(a, value(argc, argv, i), 1, 10'000'000);
    } else if (a == "--handshake-ms") {
      o.server.handshakeMs = static_cast<int>(unsignedValue(a, value(argc, argv, i), 1, 600'000));
    } else if (a == "--journal") {
      o.journal.dir = value(argc, argv, i);
      if (o.journal.dir.empty()) throw shop::cli::UsageError("--journal needs a directory");
    } else if (a == "--fsync") {
      std::string mode = value(argc, argv, i);
      auto parsed = shop::parseFsyncMode(mode);
      if (!parsed) {
        throw shop::cli::UsageError("--fsync must be always, interval or never, got '" + mode +
                                    "'");
      }
      o.journal.fsync = *parsed;
      o.journalTuned = true;
    } else if (a == "--fsync-interval-ms") {
      o.journal.fsyncInterval =
          std::chrono::milliseconds(unsignedValue(a, value(argc, argv, i), 1, 60'000));
      o.journalTuned = true;
    } else if (a == "--segment-size") {
      o.journal.segmentBytes = shop::cli::sizeValue(a, value(argc, argv, i), 4096, 1ull << 40);
      o.journalTuned = true;
    } else if (a == "--snapshot-every") {
      o.snapshots.every = unsignedValue(a, value(argc, argv, i), 0, 1'000'000'000'000);
      o.journalTuned = true;
    } else if (a == "--keep-segments") {
      o.snapshots.keepSegments = true;
      o.journalTuned = true;
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
  if (o.journalTuned && o.journal.dir.empty()) {
    throw shop::cli::UsageError(
        "--fsync, --fsync-interval-ms, --segment-size, --snapshot-every and --keep-segments "
        "need --journal DIR");
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

// Brings the engine back to where the journal left it, then starts
// journaling after it.
void recover(shop::Journal& journal, shop::Engine& engine) {
  shop::RecoveryReport report = shop::recoverEngine(journal, engine);
  journal.start(engine.serverId(), engine.log().headSeq() + 1);
  const auto& config = journal.config();
  const auto& contents = report.journal;
  if (contents.truncated) {
    shop::logLine("journal", "cut off a torn tail (a write a crash interrupted): %s",
                  contents.truncated->c_str());
  }
  for (const auto& why : report.skipped) {
    shop::logLine("snapshot", "not used: %s", why.c_str());
  }
  if (report.snapshot) {
    shop::logLine("snapshot", "%s: %llu customers and %llu products at seq %llu",
                  report.snapshotPath.c_str(),
                  static_cast<unsigned long long>(report.snapshot->customers),
                  static_cast<unsigned long long>(report.snapshot->products),
                  static_cast<unsigned long long>(report.snapshot->seq));
  }
  std::string from = "no snapshot";
  if (report.snapshot) {
    from = "snapshot at seq " + std::to_string(report.snapshot->seq) + ", " +
           std::to_string(report.replayed) + " replayed after it";
  }
  shop::logLine("journal",
                "%s: recovered %llu events (%s; %zu segment%s read, %.1f MB) in %.2f s; head seq "
                "%llu; fsync %s",
                config.dir.c_str(), static_cast<unsigned long long>(contents.headSeq), from.c_str(),
                contents.segments, contents.segments == 1 ? "" : "s",
                static_cast<double>(contents.bytes) / 1e6, report.seconds,
                static_cast<unsigned long long>(contents.headSeq), shop::name(config.fsync));
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
    if (!options.catalogGiven && !std::filesystem::exists(options.catalog)) {
      // A shopd copied away from its prefix: say what is missing and how to go on.
      std::fprintf(stderr,
                   "shopd: the starter catalog %s is missing (it is installed beside shopd, in "
                   "../share/shop/catalog/); give --catalog FILE or --no-catalog\n",
                   options.catalog.c_str());
      return 1;
    }
    if (!options.catalog.empty()) catalog = shop::bus::loadCatalog(options.catalog);

    // main() wires the components: the server's sockets are the engine's
    // sinks, and the server drives the engine on this (the socket) thread.
    zmq::context_t context(1);
    // The ZAP handler first: ZeroMQ asks it about every handshake from the
    // moment the sockets bind, and it outlives them.
    shop::bus::AccessControl access(context, options.access);
    options.server.access = &access;
    // The journal first: it locks its directory before anything is bound.
    std::unique_ptr<shop::Journal> journal;
    if (!options.journal.dir.empty()) journal = std::make_unique<shop::Journal>(options.journal);
    options.server.journal = journal.get();
    options.engine.historyDir = options.journal.dir;  // ReadEvents beyond memory
    options.engine.version = SHOP_VERSION;
    // Snapshots wait for the journal to hold their seq; with --snapshot-every
    // 0 the writer still knows which segments remain.
    std::unique_ptr<shop::SnapshotWriter> snapshots;
    if (journal) {
      options.snapshots.dir = options.journal.dir;
      snapshots = std::make_unique<shop::SnapshotWriter>(
          options.snapshots, [&journal](shop::Seq seq) { return journal->waitDurableSeq(seq); });
      options.engine.snapshots = snapshots.get();
    }
    shop::bus::Server server(context, options.server);
    shop::Engine engine(options.engine, server, server);
    if (journal) {
      recover(*journal, engine);
    } else {
      shop::logLine("shopd",
                    "in memory only (no --journal): a crash or a restart loses every customer "
                    "and event");
    }
    // The id on every ReadEvents page: how a subscriber tells this stream
    // from another. Without a journal seqs start again at 1 on every start,
    // under a new id; with one, the id is the journal's, kept across starts.
    shop::logLine("shopd", "server id %s", shop::serverIdHex(engine.serverId()).c_str());
    // The starter catalog stocks a new shop, not one the journal brought back.
    if (engine.log().headSeq() != 0 && !catalog.empty()) {
      shop::logLine("shopd", "catalog %s not loaded: the journal brought the shop back",
                    options.catalog.c_str());
      catalog.clear();
      options.catalog.clear();
    }
    for (auto& product : catalog) {
      engine.submit(shop::Command{shop::CommandId::random(), std::move(product)},
                    shop::bus::Server::kLocalTag);
    }
    engine.drain();
    if (!options.catalog.empty()) {
      shop::logLine("shopd", "catalog %s: %zu products", options.catalog.c_str(), catalog.size());
    }
    server.run(engine);
    if (journal) {
      const auto& stats = journal->stats();
      shop::logLine("journal", "%llu batches, %llu syncs, %llu bytes written this run",
                    static_cast<unsigned long long>(stats.batches.load()),
                    static_cast<unsigned long long>(stats.syncs.load()),
                    static_cast<unsigned long long>(stats.bytes.load()));
      const auto& written = snapshots->stats();
      shop::logLine("snapshot", "%llu written, %llu failed, %llu journal segments deleted this run",
                    static_cast<unsigned long long>(written.written.load()),
                    static_cast<unsigned long long>(written.failed.load()),
                    static_cast<unsigned long long>(written.segmentsDeleted.load()));
    }
    signalfd_siginfo info{};
    if (::read(signalFd, &info, sizeof info) == sizeof info) {
      shop::logLine("shopd", "stopped by %s", strsignal(static_cast<int>(info.ssi_signo)));
    }
  } catch (const shop::bus::ServerFailure& e) {
    shop::logLine("shopd", "%s", e.what());
    return 70;  // EX_SOFTWARE: a bug stopped the server
  } catch (const shop::JournalCorrupt& e) {
    shop::logLine("shopd",
                  "cannot start: %s. Nothing was changed. See \"Recovering a damaged journal\" "
                  "in the README.",
                  e.what());
    return 65;  // EX_DATAERR
  } catch (const shop::JournalLocked& e) {
    shop::logLine("shopd", "cannot start: %s", e.what());
    return 75;  // EX_TEMPFAIL: it may work once the other process stops
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
