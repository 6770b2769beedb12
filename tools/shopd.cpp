// shopd: the shop server. One socket thread (ROUTER commands, PUB events)
// in front of the engine's shard threads.
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
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
};

// Parses the command line with CLI11: flags in any order, `--flag=value`
// too, and a clear message naming the flag for each bad value (UsageError).
// --help and --version print and exit 0.
Options parse(int argc, char** argv) {
  Options o;
  CLI::App app{
      "shopd: the shop server. Commands on a ZeroMQ ROUTER socket, events on a PUB "
      "socket.",
      "shopd"};
  app.set_version_flag("--version", std::string("shopd ") + SHOP_VERSION);
  app.footer(
      "Stops cleanly on SIGINT or SIGTERM: requests already received are answered.\n"
      "SIGHUP re-reads the key files; connections already made are kept.\n"
      "Event topics: c/<customer>/<event>, p/<product>/<event>, s/<event>.");
  auto range = [](uint64_t min, uint64_t max) { return CLI::Range(min, max); };

  app.add_option("--commands", o.server.commandsEndpoint, "ROUTER endpoint for commands")
      ->type_name("ENDPOINT")
      ->capture_default_str();
  app.add_option("--events", o.server.eventsEndpoint, "PUB endpoint for events")
      ->type_name("ENDPOINT")
      ->capture_default_str();
  app.add_option("--events-json", o.server.eventsJsonEndpoint,
                 "also publish every event as JSON, same topics, on this PUB endpoint (default: "
                 "off)")
      ->type_name("ENDPOINT")
      ->check([](const std::string& v) { return v.empty() ? "needs an endpoint" : ""; });
  app.add_option("--shards", o.engine.shards,
                 "shard threads (default: cores - 1, at least 1; here " +
                     std::to_string(shop::defaultShardCount()) + ")")
      ->type_name("N")
      ->check(range(1, 256));
  app.add_option("--max-pending", o.engine.maxPending, "pending operations per customer")
      ->type_name("N")
      ->check(range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--max-holds", o.engine.maxHolds,
                 "live holds per customer; past it HoldProduct is rejected 'tooManyHolds'")
      ->type_name("N")
      ->check(range(0, 1'000'000))
      ->capture_default_str();
  app.add_option("--max-hold-ttl-ms", o.engine.maxHoldTtlMs,
                 "the longest a hold may last; a longer ttlMs is rejected 'invalidTtl'")
      ->type_name("MS")
      ->check(range(1, 30LL * 24 * 3'600'000))
      ->capture_default_str();
  app.add_option("--max-in-flight", o.engine.maxInFlight,
                 "operations in flight, all customers; past it commands are rejected "
                 "'overloaded'")
      ->type_name("N")
      ->check(range(1, 10'000'000))
      ->capture_default_str();
  app.add_option("--max-in-flight-per-connection", o.server.maxInFlightPerConnection,
                 "commands in flight from one connection; past it its commands are rejected "
                 "'overloaded'")
      ->type_name("N")
      ->check(range(1, 10'000'000))
      ->capture_default_str();
  app.add_option("--retention", o.engine.retention, "events kept in memory for ReadEvents")
      ->type_name("N")
      ->check(range(1, 1'000'000'000))
      ->capture_default_str();
  app.add_option("--dedupe-window", o.engine.dedupeWindow, "completed commandIds remembered")
      ->type_name("N")
      ->check(range(0, 1'000'000'000))
      ->capture_default_str();
  auto* catalog = app.add_option("--catalog", o.catalog,
                                 "starter catalog, JSON (default: " + defaultCatalog() + ")")
                      ->type_name("FILE");
  auto* noCatalog =
      app.add_flag("--no-catalog")->description("start with no products")->excludes(catalog);
  app.add_option("--max-connections", o.access.maxConnections,
                 "live connections per socket; past it new ones are turned away at their "
                 "handshake")
      ->type_name("N")
      ->check(range(1, 10'000'000))
      ->capture_default_str();
  app.add_option("--handshake-ms", o.server.handshakeMs,
                 "a connection must finish ZeroMQ's handshake in this time, or it is closed")
      ->type_name("MS")
      ->check(range(1, 600'000))
      ->capture_default_str();

  const char* durability =
      "Durability (without --journal, everything is in memory: a crash or a restart loses "
      "every customer and event)";
  auto* journal =
      app.add_option("--journal", o.journal.dir,
                     "journal every event in DIR and recover from it on start; DIR is locked "
                     "against a second shopd")
          ->type_name("DIR")
          ->group(durability)
          ->check([](const std::string& v) { return v.empty() ? "needs a directory" : ""; });
  std::string fsync;
  std::string segmentSize;
  uint64_t intervalMs = static_cast<uint64_t>(o.journal.fsyncInterval.count());
  std::vector<CLI::Option*> needJournal = {
      app.add_option("--fsync", fsync,
                     "always: a reply only once fdatasync covers its event (the default; nothing "
                     "acknowledged is ever lost). interval: sync every --fsync-interval-ms, reply "
                     "after write (a power loss loses up to that interval). never: the OS syncs "
                     "(a power loss loses what it held)")
          ->type_name("MODE")
          ->group(durability),
      app.add_option("--fsync-interval-ms", intervalMs, "for --fsync interval")
          ->type_name("MS")
          ->check(range(1, 60'000))
          ->capture_default_str()
          ->group(durability),
      app.add_option("--segment-size", segmentSize,
                     "a journal file rolls at this size; K, M, G suffixes (default 64M)")
          ->type_name("SIZE")
          ->group(durability),
      app.add_option("--snapshot-every", o.snapshots.every,
                     "write a snapshot of every aggregate each N events, so that a start replays "
                     "only the journal after it; 0: never")
          ->type_name("N")
          ->check(range(0, 1'000'000'000'000))
          ->capture_default_str()
          ->group(durability),
      app.add_flag("--keep-segments", o.snapshots.keepSegments,
                   "keep every journal file; without it, a file is deleted once every kept "
                   "snapshot covers it")
          ->group(durability),
  };

  const char* security = "Security (CURVE: encryption, and only listed keys get in; see README)";
  app.add_option("--curve-secret-key", o.access.secretKeyFile,
                 "the server's key pair (make one: shopctl keygen NAME)")
      ->type_name("FILE")
      ->group(security);
  app.add_option("--authorized-keys", o.access.authorizedKeysFile,
                 "client public keys, one per line")
      ->type_name("FILE")
      ->group(security);
  app.add_option("--admin-keys", o.access.adminKeysFile,
                 "keys that may also add products and restock")
      ->type_name("FILE")
      ->group(security);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) std::exit(app.exit(e));  // --help, --version: stdout, exit 0
    std::string hint = shop::cli::didYouMean(app, argc, argv);
    throw shop::cli::UsageError(e.what() + (hint.empty() ? "" : "; " + hint));
  }

  o.catalogGiven = catalog->count() > 0 || noCatalog->count() > 0;
  if (noCatalog->count() > 0) o.catalog.clear();
  bool tuned = false;
  for (auto* option : needJournal) tuned = tuned || option->count() > 0;
  if (tuned && journal->count() == 0) {
    throw shop::cli::UsageError(
        "--fsync, --fsync-interval-ms, --segment-size, --snapshot-every and --keep-segments "
        "need --journal DIR");
  }
  if (!fsync.empty()) {
    auto parsed = shop::parseFsyncMode(fsync);
    if (!parsed) {
      throw shop::cli::UsageError("--fsync must be always, interval or never, got '" + fsync + "'");
    }
    o.journal.fsync = *parsed;
  }
  o.journal.fsyncInterval = std::chrono::milliseconds(intervalMs);
  if (!segmentSize.empty()) {
    o.journal.segmentBytes = shop::cli::sizeValue("--segment-size", segmentSize, 4096, 1ull << 40);
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
