#include "tools/bench/durability.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <stdexcept>

#include "core/engine.h"
#include "core/journal.h"
#include "core/recovery.h"
#include "core/snapshot.h"
#include "tools/bench/server_process.h"
#include "tools/bench/workload.h"

namespace shop::bench {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The first number after `marker` in `log`, or 0.
double numberAfter(const std::string& log, const std::string& marker) {
  size_t at = log.rfind(marker);
  if (at == std::string::npos) return 0;
  return std::strtod(log.c_str() + at + marker.size(), nullptr);
}

// 4 KiB appended, then fdatasync, as fast as the device allows.
double rawSyncsPerSecond(const std::string& dir, double seconds) {
  std::string path = dir + "/fdatasync-probe";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + path);
  std::vector<char> block(4096, 'x');
  uint64_t syncs = 0;
  auto start = Clock::now();
  while (secondsSince(start) < seconds) {
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) ||
        ::fdatasync(fd) != 0) {
      ::close(fd);
      throw std::runtime_error("writing " + path + " failed");
    }
    ++syncs;
  }
  double rate = static_cast<double>(syncs) / secondsSince(start);
  ::close(fd);
  fs::remove(path);
  return rate;
}

struct Mode {
  std::string name;
  std::string key;                 // its figures' prefix in the report
  std::vector<std::string> flags;  // beyond the usual
  std::unique_ptr<ServerProcess> server;
  std::vector<Figures> rounds;
};

// e2e at connections x window: in memory and each fsync mode, interleaved
// round by round so that the machine's noise falls on all of them alike.
void runModes(const DurabilityOptions& o, const std::string& dir, Report& report) {
  std::vector<Mode> modes;
  modes.push_back({"in memory", "memory", {}, nullptr, {}});
  for (std::string fsync : {"always", "interval", "never"}) {
    // 4 MiB segments: a run rolls over several times, as a long one does.
    modes.push_back({fsync,
                     "fsync_" + fsync,
                     {"--journal", dir + "/" + fsync, "--fsync", fsync, "--segment-size", "4M"},
                     nullptr,
                     {}});
  }
  // What snapshots cost the command path: --fsync always without any, and
  // with one every 100,000 events (several per round).
  for (std::string every : {"0", "100000"}) {
    modes.push_back({"always, --snapshot-every " + every,
                     "snapshot_every_" + every,
                     {"--journal", dir + "/snapshot-" + every, "--segment-size", "4M",
                      "--snapshot-every", every},
                     nullptr,
                     {}});
  }
  zmq::context_t context(1);
  const int customers = 500;
  for (auto& m : modes) {
    std::vector<std::string> args = {"--no-catalog", "--commands", "tcp://127.0.0.1:*", "--events",
                                     "tcp://127.0.0.1:*"};
    args.insert(args.end(), m.flags.begin(), m.flags.end());
    m.server = std::make_unique<ServerProcess>("shopd", std::move(args));
    seedShop(context, m.server->commands, o.connections, customers);
  }
  std::vector<FrameSet> frames;
  for (int c = 0; c < o.connections; ++c) frames.push_back(framesOf(mixFor(c, customers)));
  auto framesOfConnection = [&frames](int c) { return frames[static_cast<size_t>(c)]; };
  LoadSpec spec{o.connections, o.window, 0, o.seconds, ReplyFormat::shopReply};
  const int rounds = o.quick ? 1 : 3;
  for (int r = 0; r < rounds; ++r) {
    progress("journal: round %d of %d, in memory, each --fsync mode, snapshots, %dx%d", r + 1,
             rounds, o.connections, o.window);
    for (auto& m : modes) m.rounds.push_back(measure(m.server->commands, spec, framesOfConnection));
  }
  const double base = medianOf(modes[0].rounds, throughputOf);
  printHeader("journal (the e2e mix, in memory and under each --fsync mode, interleaved; medians)");
  for (auto& m : modes) {
    const std::string& key = m.key;
    double t = medianOf(m.rounds, throughputOf);
    report.set("journal", key + "_commands_per_s", t);
    report.set("journal", key + "_p99_us", medianOf(m.rounds, p99Of));
    std::string note;
    if (!m.flags.empty()) {
      report.set("journal", key + "_ratio", t / base);
      note = "ratio " + std::to_string(t / base);
    }
    m.server->stop(report);
    if (!m.flags.empty()) {
      // shopd's stop lines: requests, and the journal's batches and syncs.
      std::string log = m.server->log();
      double requests = numberAfter(log, "stopped after ");
      double batches = numberAfter(log, "journal: ");
      double syncs = numberAfter(log, "batches, ");
      report.set("journal", key + "_syncs", syncs);
      report.set("journal", key + "_batches", batches);
      if (syncs > 0) {
        report.set("journal", key + "_commands_per_sync", requests / syncs);
        note += ", " + std::to_string(static_cast<long>(requests / syncs)) + " commands per sync";
      }
    }
    Figures shown = m.rounds[m.rounds.size() / 2];
    printRow(m.name.c_str(), shown, note);
  }
  report.ratios["journal_fsync_always_ratio"] =
      report.figures["journal"]["fsync_always_commands_per_s"] / base;
  report.ratios["journal_fsync_interval_ratio"] =
      report.figures["journal"]["fsync_interval_commands_per_s"] / base;
  report.ratios["journal_commands_per_sync"] =
      report.figures["journal"]["fsync_always_commands_per_sync"];
  double withSnapshots = report.figures["journal"]["snapshot_every_100000_commands_per_s"] /
                         report.figures["journal"]["snapshot_every_0_commands_per_s"];
  report.set("journal", "snapshot_every_100000_vs_none_ratio", withSnapshots);
  std::printf("  targets: --fsync always >= 0.5 of in memory, --fsync interval >= 0.9\n");
  std::printf("  snapshots every 100,000 events against none: %.2f of the throughput\n",
              withSnapshots);
}

struct NullSink : EngineListener {
  void onEvent(const Event&) override {}
  void onReply(uint64_t, const Reply&) override {}
};

// A journal of `events` events, written as fast as the writer goes: 100
// products, `customers` customers, then deposits, buys, returns and
// rejections over random customers.
void writeJournal(const std::string& dir, uint64_t events, uint64_t customers) {
  Journal journal(JournalConfig{.dir = dir, .fsync = FsyncMode::never});
  journal.recover([](Seq, kj::ArrayPtr<const capnp::word>) {});
  journal.start(randomServerId(), 1);
  EventLog log(4096);
  EventEncoder encoder;
  std::mt19937_64 rng(42);
  auto customer = [&](uint64_t n) { return "customer-" + std::to_string(n); };
  for (Seq seq = 1; seq <= events; ++seq) {
    EventBody body;
    std::string product = "p" + std::to_string(rng() % 100);
    if (seq <= 100) {
      body = ProductAdded{"p" + std::to_string(seq - 1), 150, 1'000'000'000};
    } else if (seq <= 100 + customers) {
      body = CustomerCreated{customer(seq - 101), 1'000'000};
    } else {
      std::string who = customer(rng() % customers);
      switch (seq % 4) {
        case 0:
          body = FundsDeposited{who, 500, 1'000'500};
          break;
        case 1:
          body = ProductBought{who, product, 1, 150, 1'000'350};
          break;
        case 2:
          body = ProductReturned{who, product, 1, 150, 1'000'500};
          break;
        default:
          body = OperationRejected{RejectReason::insufficientFunds, CommandKind::buyProduct, who,
                                   product, "costs 150, balance is 100"};
          break;
      }
    }
    auto message = encoder.append(Event{seq, 1'800'000'000'000'000'000 + static_cast<int64_t>(seq),
                                        CommandId::random(), std::move(body)},
                                  log);
    journal.append(message);
    if (seq % 256 == 0) journal.commit();
  }
  journal.commit();
  journal.waitDurable(journal.committed());
}

void runReplay(const DurabilityOptions& o, const std::string& dir, Report& report) {
  const uint64_t events = o.quick ? 1'000'000 : 10'000'000;
  const uint64_t customers = o.quick ? 100'000 : 1'000'000;
  const std::string journalDir = dir + "/replay";
  progress("journal: writing %llu events (%llu customers) to replay",
           static_cast<unsigned long long>(events), static_cast<unsigned long long>(customers));
  writeJournal(journalDir, events, customers);

  auto start = Clock::now();
  uint64_t scanned = 0;
  readJournal(journalDir, [&scanned](Seq, kj::ArrayPtr<const capnp::word>) { ++scanned; });
  double scanSeconds = secondsSince(start);

  NullSink sink;
  double recoverSeconds = 0;
  // A snapshot where the default --snapshot-every leaves one on average:
  // half an interval before the head. It is written here from an engine
  // recovered up to its seq, as shopd's would be.
  const Seq every = 1'000'000;
  const Seq cut = events > every ? events - every / 2 : events / 2;
  double encodeSeconds = 0;
  uint64_t snapshotBytes = 0;
  {
    Engine engine(EngineConfig{}, sink);
    start = Clock::now();
    Journal journal(JournalConfig{.dir = journalDir});
    JournalContents contents = journal.recover(
        [&engine](Seq, kj::ArrayPtr<const capnp::word> message) { engine.recover(message); });
    engine.finishRecovery(contents.serverId);
    recoverSeconds = secondsSince(start);
  }
  {
    Engine engine(EngineConfig{}, sink);
    Journal journal(JournalConfig{.dir = journalDir});
    JournalContents contents = journal.recover([&](Seq seq, kj::ArrayPtr<const capnp::word> m) {
      if (seq <= cut) engine.recover(m);
    });
    engine.finishRecovery(contents.serverId);
    ShopState state = engine.snapshot();
    start = Clock::now();
    SnapshotEncoder encoder;
    for (const auto& [id, c] : state.customers) encoder.customer(id, c);
    for (const auto& [id, p] : state.products) encoder.product(id, p);
    std::vector<SnapshotPart> parts;
    parts.push_back(encoder.finish());
    encodeSeconds = secondsSince(start);
    Seq replayFrom = cut >= engine.log().retention() ? cut - engine.log().retention() + 1 : 1;
    if (Seq oldest = engine.dedupe().oldestSeq(); oldest != 0) {
      replayFrom = std::min(replayFrom, oldest);
    }
    snapshotBytes =
        writeSnapshot(
            journalDir,
            SnapshotInfo{.seq = cut, .serverId = engine.serverId(), .replayFrom = replayFrom},
            parts)
            .second;
  }
  double snapshotSeconds = 0;
  Seq replayedAfter = 0;
  {
    Engine engine(EngineConfig{}, sink);
    start = Clock::now();
    Journal journal(JournalConfig{.dir = journalDir});
    RecoveryReport recovered = recoverEngine(journal, engine);
    snapshotSeconds = secondsSince(start);
    if (!recovered.snapshot) throw std::runtime_error("the bench's snapshot was not used");
    replayedAfter = recovered.replayed;
  }
  double scanRate = static_cast<double>(scanned) / scanSeconds;
  double rate = static_cast<double>(events) / recoverSeconds;
  report.set("journal", "replay_events", static_cast<double>(events));
  report.set("journal", "replay_scan_events_per_s", scanRate);
  report.set("journal", "replay_events_per_s", rate);
  report.set("journal", "replay_seconds", recoverSeconds);
  report.set("journal", "replay_with_snapshot_seconds", snapshotSeconds);
  report.set("journal", "snapshot_encode_customers_per_s",
             static_cast<double>(customers) / encodeSeconds);
  report.set("journal", "snapshot_bytes", static_cast<double>(snapshotBytes));
  report.set("journal", "snapshot_slice_ms",
             encodeSeconds * 1e3 * 512 / static_cast<double>(customers));
  report.ratios["journal_replay_events_per_s"] = rate;
  report.ratios["journal_recovery_with_snapshot_seconds"] = snapshotSeconds;
  std::printf(
      "\njournal replay, in-process (%llu events, %llu customers)\n"
      "  read and check (CRC32C) only      %12.0f events/s\n"
      "  recover into an engine            %12.0f events/s, %.2f s   (target >= 2,000,000)\n"
      "  recover from a snapshot at seq %llu: %.2f s (%llu events replayed after it, the "
      "retention and dedupe window read before it)\n"
      "  snapshot: %.1f MB; encoding %llu customers took %.0f ms of one thread, which a shard "
      "spreads over slices of 512 between batches (%.2f ms a slice)\n",
      static_cast<unsigned long long>(events), static_cast<unsigned long long>(customers), scanRate,
      rate, recoverSeconds, static_cast<unsigned long long>(cut), snapshotSeconds,
      static_cast<unsigned long long>(replayedAfter), static_cast<double>(snapshotBytes) / 1e6,
      static_cast<unsigned long long>(customers), encodeSeconds * 1e3,
      encodeSeconds * 1e3 * 512 / static_cast<double>(customers));
}

}  // namespace

void runDurability(const DurabilityOptions& o, Report& report) {
  std::string dir;
  if (o.dir.empty()) {
    std::string pattern = (fs::current_path() / "shop-bench-journal-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = pattern;
  } else {
    std::string pattern = o.dir + "/shop-bench-journal-XXXXXX";
    fs::create_directories(o.dir);
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp in " + o.dir);
    dir = pattern;
  }
  try {
    if (o.modes) {
      double syncs = rawSyncsPerSecond(dir, o.quick ? 0.3 : 1.0);
      report.set("journal", "device_fdatasyncs_per_s", syncs);
      progress("journal: the device under %s takes %.0f fdatasyncs/s (4 KiB each)", dir.c_str(),
               syncs);
      runModes(o, dir, report);
      std::printf("  the device alone: %.0f fdatasyncs/s (4 KiB appended before each)\n", syncs);
    }
    if (o.replay) runReplay(o, dir, report);
  } catch (...) {
    fs::remove_all(dir);
    throw;
  }
  fs::remove_all(dir);
}

}  // namespace shop::bench
