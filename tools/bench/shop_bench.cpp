// shop-bench: the performance contract, measured side by side in one run.
// Every headline figure is a ratio to a baseline from the same invocation,
// because these machines are shared and noisy. The servers run as their own
// processes (shopd and shop-echo, found next to this executable); only the
// engine and scale scenarios drive the engine in-process.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "bus/access.h"
#include "bus/client.h"
#include "bus/codec.h"
#include "bus/subscriber.h"
#include "core/engine.h"
#include "tools/bench/abuse.h"
#include "tools/bench/durability.h"
#include "tools/bench/holds.h"
#include "tools/bench/load.h"
#include "tools/bench/projections.h"
#include "tools/bench/relay.h"
#include "tools/bench/report.h"
#include "tools/bench/server_process.h"
#include "tools/bench/thread_cpu.h"
#include "tools/bench/workload.h"
#include "tools/cli.h"

namespace shop::bench {
namespace {

constexpr const char* kScenarios =
    R"(Scenarios (all by default, in this order): scale, echo+e2e, engine, isolation,
fanout, curve, churn, never-reading, raw-tcp, slow-subscriber, projections,
holds, relay, journal, replay.
  echo, e2e  one shop-echo and one shopd process, both started by the bench
             (shopd --no-catalog on ephemeral ports), driven with the same
             frames (a buy, buy, return, deposit mix) by the same load driver:
             1. e2e at K x W on the freshly seeded shopd ("fresh");
             2. fill: max(retention, dedupe window) deposits, 4 x 32, closed
                loop, so that shopd's dedupe window and event log are full;
             3. echo and e2e interleaved at 1x1, 2x16, 4x32, 8x64 (and K x W):
                commands/s, p50/p99/p99.9, e2e / echo, and each server
                thread's CPU microseconds per command (/proc/<pid>/task);
             4. e2e paced at half its K x W maximum, then echo at that rate.
             Every e2e figure but "fresh" is at this steady state.
  engine     the engine in-process, no sockets
  isolation  a shopd process: a quiet customer's p99 alone, then while a hot
             customer floods
  scale      the engine in-process: 1k -> 100k -> 1M customers, RSS per
             customer and throughput as it grows
  fanout     a shopd process per run, 1, 8, 32 subscribers: the command path,
             and events lost then recovered
  curve      two shopd processes, one with CURVE on (both sockets encrypted,
             keys checked at connect): the e2e mix at K x W on each,
             interleaved, 3 rounds (--quick: 1); medians, CURVE / plain
  churn, never-reading, raw-tcp (together: abuse)
             a shopd process each (windows of 10k, filled first); its open
             fds and RSS from /proc, and a quiet client's p99 (one
             connection paced at 2,000/s) during the abuse / alone before it
  churn      5 waves of 1,000 DEALERs (--quick: 1 of 200) that connect, send
             one deposit and close unread, linger 0; fds and RSS once shopd
             has closed them all, after each wave
  never-reading
             one DEALER sends 200,000 deposits (--quick: 20,000), never
             reads, and stays connected as long as the quiet client ran
             alone: RSS before, at the peak and after it has gone, and
             shopd's CPU while its backlog waits
  raw-tcp    2,000 plain TCP connections (--quick: 200), half sending one
             byte, held until shopd's 5 s handshake deadline closes them:
             fds and RSS with them open, and after they are closed
  slow-subscriber
             K x W closed loop on one shopd, with and without a SUB that
             subscribes to everything and never reads (RCVHWM 1000,
             SO_RCVBUF 4 KiB), interleaved: throughput and p99 ratios
  projections
             1. the six read models in-process: 1M customers created (--quick:
                100k), then 2M mixed events (--quick: 500k) applied, median
                of 3 passes: events/s, and the customers model's bytes per
                customer;
             2. a shop-dashboard process following a shopd at full e2e load
                (K x W): head seq minus applied seq, sampled every 20 ms
                over /api/health (read before the head, so a sample can only
                overstate it), p99 in events and in ms at that rate
  holds      the engine in-process, 1,024 customers with one purchase in
             flight each: BuyProduct, and HoldProduct then ConfirmHold of the
             held id, interleaved, 3 rounds (--quick: 1); purchases/s of
             each and their ratio (two commands against one: about 0.5 is
             par)

  relay      a shopd process, shop-relay processes and a local HTTP receiver
             that answers at once: 20,000 deposits (--quick: 5,000)
             delivered by shop-relay from its start (1 and 8 in flight),
             and the same number of posts by a plain keep-alive HTTP
             client, interleaved, 3 rounds (--quick: 1), medians; then the
             relay's lag (head - checkpoint, sampled every 50 ms) behind
             shopd under the e2e mix at K x W, every buy delivered
  journal    1. the device's raw fdatasync rate (4 KiB appended before each);
             2. six shopd processes: in memory; --journal with --fsync always,
                interval and never (4 MiB segments); and --fsync always with
                --snapshot-every 0 and 100000: the e2e mix at 4 x 32,
                interleaved, 3 rounds (--quick: 1); medians, each mode / in
                memory, snapshots / none, and commands per fdatasync from
                shopd's stop log
  replay     in-process: a journal of 10M events (--quick: 1M; 1M customers,
             --quick: 100k) read and checked, then recovered into an engine
             (events/s, seconds); a snapshot written half an interval before
             the head (how long encoding took, its size); recovery from it
             and the journal's tail (seconds)

Latencies are measured from the intended send time (corrected for coordinated
omission). Progress goes to stderr; the tables to stdout. A server that does
not exit 0 on SIGTERM makes the bench exit 1 (after writing the JSON).
)";

struct Options {
  bool quick = false;
  std::string json;
  std::set<std::string> only;
  int connections = 2;
  int window = 16;
  std::string journalDir;
  bool runs(const std::string& s) const { return only.empty() || only.count(s); }
  // Measured rounds. CPU is read in 10 ms clock ticks: 5 s rounds resolve a
  // busy thread to 0.2 %, --quick's 1 s rounds to 1 %.
  double seconds() const { return quick ? 1.0 : 5.0; }
  // shopd's retention and dedupe window, filled before the steady-state
  // rounds; 0 = shopd's defaults (1,000,000 each).
  uint64_t shopdHistory() const { return quick ? 100'000 : 0; }
};

long rssBytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// ---- scenarios -----------------------------------------------------------------

struct EchoAndE2e {
  Figures echoMax, echoPaced, e2eMax, e2ePaced;  // at the headline configuration
};

struct LoadConfig {
  int connections = 1;
  int window = 1;
  std::string label() const { return std::to_string(connections) + "x" + std::to_string(window); }
  bool operator==(const LoadConfig&) const = default;
};

// One measured round against a server process, with that process's CPU.
struct Round {
  Figures figures{};
  uint64_t completed = 0, rejected = 0, lost = 0;
  std::map<std::string, double> cpuUs;  // server thread name -> CPU us per command
  double cpuUsTotal = 0;                // the whole server process, per command
  double clientCpuUs = 0;               // the bench's load threads, per command
};

Round measureRound(const ServerProcess& server, const LoadSpec& spec,
                   const std::function<FrameSet(int)>& frames) {
  CpuSample before = sampleCpu(server.pid());
  LoadResult r = runLoad(server.commands, spec, frames);
  CpuSample after = sampleCpu(server.pid());
  Round out;
  out.figures = {r.throughput(), LatencySummary::of(r.latency)};
  out.completed = r.completed;
  out.rejected = r.rejected;
  out.lost = r.lost;
  double commands = static_cast<double>(std::max<uint64_t>(1, r.completed));
  for (const auto& [name, seconds] : cpuSecondsByThread(before, after)) {
    out.cpuUs[name] = seconds * 1e6 / commands;
    out.cpuUsTotal += seconds * 1e6 / commands;
  }
  out.clientCpuUs = r.clientCpuSeconds * 1e6 / commands;
  if (r.lost) {
    progress("warning: %llu requests unanswered after 5 s",
             static_cast<unsigned long long>(r.lost));
  }
  return out;
}

// The configurations of the interleaved rounds; the headline one (--connections
// x --window, 2x16 by default) is added when it is not among them.
std::vector<LoadConfig> echoE2eConfigs(const LoadConfig& headline) {
  std::vector<LoadConfig> configs = {{1, 1}, {2, 16}, {4, 32}, {8, 64}};
  if (std::find(configs.begin(), configs.end(), headline) == configs.end()) {
    configs.push_back(headline);
  }
  return configs;
}

EchoAndE2e runEchoAndE2e(const Options& o, Report& report) {
  const LoadConfig headline{o.connections, o.window};
  const LoadConfig fillConfig{4, 32};
  const std::vector<LoadConfig> configs = echoE2eConfigs(headline);
  int maxConnections = fillConfig.connections, maxWindow = fillConfig.window;
  for (const auto& c : configs) {
    maxConnections = std::max(maxConnections, c.connections);
    maxWindow = std::max(maxWindow, c.window);
  }
  // Many more customers than requests in flight per connection, so that each
  // customer has at most one pending and the mix stays all accepted.
  int customers = std::max(o.quick ? 500 : 2000, 4 * maxWindow);
  std::vector<FrameSet> mix, jsonMix, deposits;
  for (int c = 0; c < maxConnections; ++c) {
    mix.push_back(framesOf(mixFor(c, customers)));
    jsonMix.push_back(jsonFramesOf(mixFor(c, customers)));
    deposits.push_back(framesOf(depositsFor(c, customers)));
  }
  auto mixSource = [&mix](int c) { return mix[static_cast<size_t>(c)]; };
  auto jsonMixSource = [&jsonMix](int c) { return jsonMix[static_cast<size_t>(c)]; };
  auto depositSource = [&deposits](int c) { return deposits[static_cast<size_t>(c)]; };
  const double seconds = o.seconds();

  // The fill makes shopd's dedupe window and event log full, as a server
  // that has run for a while has them.
  uint64_t history = o.shopdHistory();
  uint64_t fillCommands =
      history > 0 ? history
                  : std::max(shopdDefault("--retention"), shopdDefault("--dedupe-window"));

  auto echo = startEcho();
  auto echoHop = startEcho(true);
  auto shopd = startShopd(history);
  progress("shop-echo pid %d on %s; shopd pid %d on %s", static_cast<int>(echo->pid()),
           echo->commands.c_str(), static_cast<int>(shopd->pid()), shopd->commands.c_str());
  {
    zmq::context_t context(1);
    seedShop(context, shopd->commands, maxConnections, customers);
  }

  // 1. A fresh shopd: seeded, nothing else.
  LoadSpec spec{headline.connections, headline.window, 0, seconds, ReplyFormat::shopReply};
  progress("e2e %s on a fresh shopd, %.0f s", headline.label().c_str(), seconds);
  Round fresh = measureRound(*shopd, spec, mixSource);

  // 2. The fill, closed loop, as fast as it goes.
  LoadSpec fill{fillConfig.connections, fillConfig.window, 0, 0, ReplyFormat::shopReply};
  fill.requestsPerConnection = (fillCommands + static_cast<uint64_t>(fillConfig.connections) - 1) /
                               static_cast<uint64_t>(fillConfig.connections);
  progress("fill: %llu deposits at %s to fill shopd's dedupe window and event log",
           static_cast<unsigned long long>(fill.requestsPerConnection *
                                           static_cast<uint64_t>(fill.connections)),
           fillConfig.label().c_str());
  LoadResult filled = runLoad(shopd->commands, fill, depositSource);
  if (filled.rejected || filled.lost) {
    throw std::runtime_error("fill: " + std::to_string(filled.rejected) + " rejected, " +
                             std::to_string(filled.lost) + " unanswered");
  }

  // 3. Steady state, echo and e2e interleaved so that both see the same
  // machine load over time.
  std::map<std::string, Round> echoRounds, hopRounds, e2eRounds;
  for (const auto& c : configs) {
    LoadSpec s{c.connections, c.window, 0, seconds, ReplyFormat::echoedCommand};
    progress("echo %s, %.0f s", c.label().c_str(), seconds);
    echoRounds[c.label()] = measureRound(*echo, s, mixSource);
    progress("echo through a worker thread %s, %.0f s", c.label().c_str(), seconds);
    hopRounds[c.label()] = measureRound(*echoHop, s, mixSource);
    s.format = ReplyFormat::shopReply;
    progress("e2e %s (steady state), %.0f s", c.label().c_str(), seconds);
    e2eRounds[c.label()] = measureRound(*shopd, s, mixSource);
  }

  // 4. Moderate load: half of e2e's steady maximum at the headline
  // configuration, open loop, for both.
  EchoAndE2e out{};
  out.echoMax = echoRounds[headline.label()].figures;
  out.e2eMax = e2eRounds[headline.label()].figures;
  spec.ratePerConnection = out.e2eMax.throughput / 2 / headline.connections;
  progress("e2e %s paced at %.0f cmds/s", headline.label().c_str(),
           spec.ratePerConnection * headline.connections);
  Round e2ePaced = measureRound(*shopd, spec, mixSource);
  out.e2ePaced = e2ePaced.figures;
  spec.format = ReplyFormat::echoedCommand;
  progress("echo %s paced at %.0f cmds/s", headline.label().c_str(),
           spec.ratePerConnection * headline.connections);
  out.echoPaced = measureRound(*echo, spec, mixSource).figures;

  // 5. The JSON path (bus/json.h) at the headline configuration, steady
  // state: the same mix as JSON frames, then binary again right after, so
  // that the two see the same machine.
  LoadSpec jsonSpec{headline.connections, headline.window, 0, seconds, ReplyFormat::jsonReply};
  progress("e2e %s with JSON frames, %.0f s", headline.label().c_str(), seconds);
  Round json = measureRound(*shopd, jsonSpec, jsonMixSource);
  LoadSpec binarySpec{headline.connections, headline.window, 0, seconds, ReplyFormat::shopReply};
  progress("e2e %s with binary frames again, %.0f s", headline.label().c_str(), seconds);
  Round binary = measureRound(*shopd, binarySpec, mixSource);

  // Memory with the windows full (after every round, before stopping).
  double rssMb = static_cast<double>(rssBytesOf(shopd->pid())) / (1024.0 * 1024.0);
  report.set("e2e", "shopd_rss_mb_steady", rssMb);
  report.ratios["shopd_rss_mb_windows_full"] = rssMb;
  echo->stop(report);
  echoHop->stop(report);
  shopd->stop(report);
  std::printf("\nshopd RSS with its dedupe window and log full: %.0f MB (target <= 250)\n", rssMb);

  // ---- the figures
  size_t frameBytes = mix[0].frames[0].size();
  for (const char* s : {"echo", "e2e"}) {
    report.set(s, "connections", headline.connections);
    report.set(s, "window", headline.window);
    report.set(s, "seconds", seconds);
    report.set(s, "request_bytes", static_cast<double>(frameBytes));
    report.set(s, "customers_per_connection", customers);
  }
  record(report, "echo", "max_", out.echoMax);
  record(report, "echo", "paced_", out.echoPaced);
  record(report, "e2e", "max_", out.e2eMax);
  record(report, "e2e", "paced_", out.e2ePaced);
  record(report, "e2e", "fresh_", fresh.figures);
  report.set("e2e", "paced_rate", spec.ratePerConnection * headline.connections);
  report.set("e2e", "history", static_cast<double>(fillCommands));
  report.set("e2e", "fill_commands", static_cast<double>(filled.completed));
  report.set("e2e", "fill_seconds", filled.seconds);
  report.set("e2e", "fill_commands_per_s", filled.throughput());
  record(report, "e2e", "json_", json.figures);
  record(report, "e2e", "binary_beside_json_", binary.figures);
  report.set("e2e", "json_request_bytes", static_cast<double>(jsonMix[0].frames[0].size()));
  report.set("e2e", "json_cpu_us_per_command", json.cpuUsTotal);
  report.set("e2e", "binary_beside_json_cpu_us_per_command", binary.cpuUsTotal);
  report.ratios["e2e_json_vs_binary_throughput"] =
      json.figures.throughput / binary.figures.throughput;
  uint64_t rejected = fresh.rejected + e2ePaced.rejected + json.rejected + binary.rejected;
  for (const auto& c : configs) {
    std::string l = c.label();
    const Round& e = echoRounds[l];
    const Round& s = e2eRounds[l];
    record(report, "echo", "max_" + l + "_", e.figures);
    record(report, "e2e", "max_" + l + "_", s.figures);
    report.set("echo", "cpu_us_per_command_" + l, e.cpuUsTotal);
    report.set("e2e", "cpu_us_per_command_" + l, s.cpuUsTotal);
    report.set("echo", "client_cpu_us_per_command_" + l, e.clientCpuUs);
    report.set("e2e", "client_cpu_us_per_command_" + l, s.clientCpuUs);
    report.cpu["echo"][l] = e.cpuUs;
    report.cpu["echo"][l]["total"] = e.cpuUsTotal;
    report.cpu["e2e"][l] = s.cpuUs;
    report.cpu["e2e"][l]["total"] = s.cpuUsTotal;
    report.ratios["e2e_vs_echo_throughput_" + l] = s.figures.throughput / e.figures.throughput;
    const Round& h = hopRounds[l];
    record(report, "echo_hop", "max_" + l + "_", h.figures);
    report.set("echo_hop", "cpu_us_per_command_" + l, h.cpuUsTotal);
    report.cpu["echo_hop"][l] = h.cpuUs;
    report.cpu["echo_hop"][l]["total"] = h.cpuUsTotal;
    report.ratios["echo_hop_vs_echo_throughput_" + l] = h.figures.throughput / e.figures.throughput;
    report.ratios["e2e_vs_echo_hop_throughput_" + l] = s.figures.throughput / h.figures.throughput;
    rejected += s.rejected;
  }
  report.set("e2e", "rejected", static_cast<double>(rejected));
  report.ratios["e2e_vs_echo_throughput"] = out.e2eMax.throughput / out.echoMax.throughput;
  report.ratios["e2e_vs_echo_p99"] = out.e2ePaced.latency.p99Us / out.echoPaced.latency.p99Us;
  report.ratios["steady_vs_fresh_throughput"] = out.e2eMax.throughput / fresh.figures.throughput;
  if (e2eRounds.count("4x32")) {
    report.ratios["cpu_per_command_vs_echo_4x32"] =
        e2eRounds["4x32"].cpuUsTotal / echoRounds["4x32"].cpuUsTotal;
    report.ratios["echo_hop_cpu_per_command_vs_echo_4x32"] =
        hopRounds["4x32"].cpuUsTotal / echoRounds["4x32"].cpuUsTotal;
  }

  // ---- the tables
  printHeader(
      "echo vs e2e: shop-echo and shopd processes, same frames, same driver; "
      "e2e at steady state unless fresh");
  printRow(("e2e " + headline.label() + ", fresh shopd").c_str(), fresh.figures);
  std::printf("  %-34s %12.0f  %llu deposits in %.1f s\n", ("fill " + fillConfig.label()).c_str(),
              filled.throughput(), static_cast<unsigned long long>(filled.completed),
              filled.seconds);
  for (const auto& c : configs) {
    std::string l = c.label();
    printRow(("echo " + l).c_str(), echoRounds[l].figures);
    printRow(("echo through a worker " + l).c_str(), hopRounds[l].figures,
             "ratio to echo " + fixed(report.ratios["echo_hop_vs_echo_throughput_" + l]));
    printRow(("e2e " + l).c_str(), e2eRounds[l].figures,
             "ratio " + fixed(report.ratios["e2e_vs_echo_throughput_" + l]) +
                 (c == headline ? " (target >= 0.7)" : "") +
                 (e2eRounds[l].rejected ? ", " + std::to_string(e2eRounds[l].rejected) + " rejected"
                                        : ""));
  }
  printRow(("e2e " + headline.label() + ", paced").c_str(), out.e2ePaced);
  printRow(("echo " + headline.label() + ", paced").c_str(), out.echoPaced,
           "e2e p99 / echo p99 " + fixed(report.ratios["e2e_vs_echo_p99"]) + " (target <= 2)");
  std::printf("  steady / fresh throughput at %s: %.2f (target >= 0.95)\n",
              headline.label().c_str(), report.ratios["steady_vs_fresh_throughput"]);
  printRow(("e2e " + headline.label() + ", JSON frames").c_str(), json.figures,
           "CPU/cmd " + fixed(json.cpuUsTotal) + " us");
  printRow(("e2e " + headline.label() + ", binary beside it").c_str(), binary.figures,
           "CPU/cmd " + fixed(binary.cpuUsTotal) + " us; JSON / binary " +
               fixed(report.ratios["e2e_json_vs_binary_throughput"]));

  std::printf(
      "\nCPU us per command by server thread (/proc/<pid>/task/*/stat, %ld ticks/s); "
      "client = the bench's load threads\n",
      sysconf(_SC_CLK_TCK));
  for (const auto& c : configs) {
    std::string l = c.label();
    for (const auto& [server, rounds] :
         {std::pair{"echo", &echoRounds}, std::pair{"hop", &hopRounds},
          std::pair{"e2e", &e2eRounds}}) {
      const Round& r = (*rounds)[l];
      std::string threads;
      for (const auto& [name, us] : r.cpuUs) threads += "  " + name + " " + fixed(us);
      std::printf("  %-5s %-4s total %6.2f  client %6.2f |%s\n", l.c_str(), server, r.cpuUsTotal,
                  r.clientCpuUs, threads.c_str());
    }
  }
  if (report.ratios.count("cpu_per_command_vs_echo_4x32")) {
    std::printf("  shopd / shop-echo CPU per command at 4x32: %.2f (target <= 2)\n",
                report.ratios["cpu_per_command_vs_echo_4x32"]);
  }
  if (rejected)
    progress("warning: e2e had %llu rejected replies", static_cast<unsigned long long>(rejected));
  return out;
}

// Drives the engine in-process for `seconds` with `window` in flight. Its
// sinks take the views as the socket thread would and count them; nothing
// is decoded.
class EngineDriver : public EventSink, public ReplySink {
 public:
  void append(const PublishedEvent& event) override { bytes += event.message.size(); }
  void commit() override {}
  void reply(uint64_t, const ReplyView&) override { ++replies; }
  uint64_t replies = 0;
  uint64_t bytes = 0;
  uint64_t nextId = 0;
};

double engineThroughput(Engine& engine, EngineDriver& driver, const std::vector<Command>& mix,
                        double seconds, size_t window) {
  using Clock = std::chrono::steady_clock;
  uint64_t start = driver.replies, submitted = 0;
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(seconds);
  size_t next = 0;
  while (Clock::now() < end) {
    while (submitted - (driver.replies - start) < window) {
      Command c = mix[next];
      c.id = CommandId::fromNumber(0xE, driver.nextId++);  // unique across calls
      engine.submit(std::move(c), 1);
      ++submitted;
      next = (next + 1) % mix.size();
    }
    engine.wait(-1);
  }
  engine.drain();
  double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  return static_cast<double>(driver.replies - start) / elapsed;
}

void seedEngine(Engine& engine, int connections, int customers) {
  uint64_t n = 0;
  for (int k = 0; k < kProducts; ++k) {
    engine.submit(
        {CommandId::fromNumber(0xA, n++), AddProduct{productName(k), 1 + k, 1'000'000'000'000}}, 1);
  }
  for (int c = 0; c < connections; ++c) {
    for (int i = 0; i < customers; ++i) {
      engine.submit(
          {CommandId::fromNumber(0xA, n++), CreateCustomer{customerName(c, i), kBigBalance}}, 1);
      if (engine.inFlight() > 256) engine.wait(-1);
    }
  }
  engine.drain();
}

void runEngine(const Options& o, Report& report, const EchoAndE2e* e2e) {
  EngineDriver driver;
  // Steady state, as for e2e: the default windows (100k in a quick run), full.
  size_t windows = o.quick ? 100'000 : EngineConfig{}.retention;
  Engine engine(EngineConfig{.retention = windows, .dedupeWindow = windows}, driver, driver);
  int customers = o.quick ? 500 : 2000;
  seedEngine(engine, 1, customers);
  auto mix = mixFor(0, customers);
  while (engine.log().size() < engine.log().retention() ||
         engine.dedupe().size() < engine.dedupe().capacity()) {
    engineThroughput(engine, driver, mix, 0.2, 1024);
  }
  // The engine's own capacity: enough in flight that the shard is never
  // starved between the ingress's turns (the gate allows 5 per customer).
  size_t window = 1024;
  progress("engine: %zu in flight, %.0f s", window, o.seconds());
  double tput = engineThroughput(engine, driver, mix, o.seconds(), window);
  report.set("engine", "commands_per_s", tput);
  report.set("engine", "window", static_cast<double>(window));
  report.set("engine", "shards", engine.config().shards);
  std::printf("\nengine alone (no sockets)\n  %-34s %12.0f", "engine, max", tput);
  if (e2e) {
    report.ratios["engine_vs_e2e_throughput"] = tput / e2e->e2eMax.throughput;
    std::printf("  ratio to e2e %.2f (target >= 5)", report.ratios["engine_vs_e2e_throughput"]);
  }
  std::printf("\n");
}

void runIsolation(const Options& o, Report& report) {
  zmq::context_t context(1);
  auto shopd = startShopd();
  ServerProcess& server = *shopd;
  bus::Client client(context, server.commands);
  for (const char* c : {"quiet", "hot"}) {
    if (!client.call({CommandId::random(), CreateCustomer{c, 0}}).ok())
      throw std::runtime_error("setup failed");
  }
  double rate = kQuietRate;
  double seconds = o.quick ? 2.0 : 5.0;
  LoadSpec quiet = quietSpec(seconds);
  progress("isolation: quiet customer alone at %.0f/s, %.0f s", rate, seconds);
  Figures alone = measure(server.commands, quiet, depositsTo("quiet"));

  progress("isolation: quiet customer while a hot customer floods");
  LoadSpec hot{1, 64, 0, seconds, ReplyFormat::shopReply};
  LoadResult hotResult;
  std::thread flood([&] { hotResult = runLoad(server.commands, hot, depositsTo("hot")); });
  Figures withFlood = measure(server.commands, quiet, depositsTo("quiet"));
  flood.join();
  shopd->stop(report);

  record(report, "isolation", "alone_", alone);
  record(report, "isolation", "flood_", withFlood);
  report.set("isolation", "quiet_rate", rate);
  report.set("isolation", "hot_commands_per_s", hotResult.throughput());
  report.set("isolation", "hot_rejected", static_cast<double>(hotResult.rejected));
  report.ratios["isolation_p99"] = withFlood.latency.p99Us / alone.latency.p99Us;
  printHeader("isolation (quiet customer paced; hot customer closed loop, 64 in flight)");
  printRow("quiet alone", alone);
  printRow("quiet during flood", withFlood,
           "p99 ratio " + std::to_string(report.ratios["isolation_p99"]) + " (target <= 1.5)");
  std::printf("  %-34s %12.0f  (%llu rejected by the gate)\n", "hot customer",
              hotResult.throughput(), static_cast<unsigned long long>(hotResult.rejected));
}

void runScale(const Options& o, Report& report) {
  EngineDriver driver;
  // Small log and dedupe window: the figure is the aggregates' cost, not the
  // retained history's.
  Engine engine(EngineConfig{.retention = 10'000, .dedupeWindow = 10'000}, driver, driver);
  std::vector<int> sizes = {1'000, 100'000};
  if (!o.quick) sizes.push_back(1'000'000);
  malloc_trim(0);
  long base = rssBytes();
  int created = 0;
  uint64_t n = 0;
  std::mt19937 rng(1);
  std::printf(
      "\nscale (engine, retention 10k; RSS delta since the empty engine)\n  %-12s %14s %12s\n",
      "customers", "bytes/customer", "deposits/s");
  double last = 0;
  for (int size : sizes) {
    progress("scale: creating customers up to %d", size);
    for (; created < size; ++created) {
      engine.submit(
          {CommandId::fromNumber(0x5, n++), CreateCustomer{"s" + std::to_string(created), 1000}},
          1);
      if (engine.inFlight() > 512) engine.wait(-1);
    }
    engine.drain();
    double perCustomer = static_cast<double>(rssBytes() - base) / size;
    std::vector<Command> mix;
    for (int i = 0; i < 4096; ++i) {
      mix.push_back(
          {CommandId{}, Deposit{"s" + std::to_string(rng() % static_cast<unsigned>(size)), 1}});
    }
    double tput = engineThroughput(engine, driver, mix, o.quick ? 0.5 : 2.0, 256);
    std::printf("  %-12d %14.0f %12.0f\n", size, perCustomer, tput);
    report.set("scale", "bytes_per_customer_at_" + std::to_string(size), perCustomer);
    report.set("scale", "deposits_per_s_at_" + std::to_string(size), tput);
    last = perCustomer;
  }
  report.ratios["bytes_per_customer"] = last;
}

void runFanout(const Options& o, Report& report) {
  std::printf(
      "\nfanout (e2e closed loop while subscribers follow with catch-up)\n  %-12s %12s %10s %10s "
      "%12s %12s\n",
      "subscribers", "cmds/s", "p99 us", "p99.9 us", "gaps", "re-read");
  for (int subscribers : {1, 8, 32}) {
    zmq::context_t context(1);
    auto shopd = startShopd();
    ServerProcess& server = *shopd;
    int customers = 500;
    seedShop(context, server.commands, o.connections, customers);
    std::vector<FrameSet> frames;
    for (int c = 0; c < o.connections; ++c) frames.push_back(framesOf(mixFor(c, customers)));

    std::atomic<bool> loadDone{false};
    std::atomic<Seq> finalHead{0};
    std::vector<bus::SubscriberStats> stats(static_cast<size_t>(subscribers));
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int s = 0; s < subscribers; ++s) {
      threads.emplace_back([&, s] {
        bus::CatchUpSubscriber sub(context, server.events, server.commands, {.from = 1});
        sub.poll(0, [](const Event&) {});
        ++ready;
        while (!loadDone || sub.checkpoint() < finalHead) sub.poll(100, [](const Event&) {});
        stats[static_cast<size_t>(s)] = sub.stats();
      });
    }
    while (ready < subscribers) std::this_thread::yield();
    progress("fanout: %d subscriber(s)", subscribers);
    LoadSpec spec{o.connections, o.window, 0, o.seconds(), ReplyFormat::shopReply};
    Figures f =
        measure(server.commands, spec, [&frames](int c) { return frames[static_cast<size_t>(c)]; });
    bus::Client client(context, server.commands);
    auto head = client.call({CommandId::random(), ReadEvents{UINT64_MAX, 1}});
    finalHead = head.reply->reply.page.headSeq;
    loadDone = true;
    for (auto& t : threads) t.join();
    shopd->stop(report);
    uint64_t gaps = 0, reread = 0;
    for (auto& s : stats) {
      gaps += s.gapsDetected;
      reread += s.eventsReread;
    }
    std::printf("  %-12d %12.0f %10.1f %10.1f %12llu %12llu\n", subscribers, f.throughput,
                f.latency.p99Us, f.latency.p999Us, static_cast<unsigned long long>(gaps),
                static_cast<unsigned long long>(reread));
    std::string k = std::to_string(subscribers);
    report.set("fanout", "commands_per_s_" + k, f.throughput);
    report.set("fanout", "p99_us_" + k, f.latency.p99Us);
    report.set("fanout", "gaps_" + k, static_cast<double>(gaps));
    report.set("fanout", "events_reread_" + k, static_cast<double>(reread));
  }
}

// The same mix against two shopd processes, one plain and one with CURVE
// (both sockets encrypted, keys checked by the ZAP handler at connect),
// interleaved round by round; medians of each side.
void runCurve(const Options& o, Report& report) {
  char pattern[] = "/tmp/shop-bench-keys-XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  for (const char* name : {"server", "bench"}) {
    bus::writeKeyFiles(dir + "/" + name, bus::generateKeyPair());
  }
  std::filesystem::copy_file(dir + "/bench.pub", dir + "/admins");  // it seeds products
  bus::ClientCurve curve = bus::ClientCurve::fromFiles(dir + "/server.pub", dir + "/bench.key");

  zmq::context_t context(1);
  auto plain = startShopd();
  auto curved = std::make_unique<ServerProcess>(
      "shopd", std::vector<std::string>{"--no-catalog", "--commands", "tcp://127.0.0.1:*",
                                        "--events", "tcp://127.0.0.1:*", "--curve-secret-key",
                                        dir + "/server.key", "--admin-keys", dir + "/admins"});
  int customers = 500;
  seedShop(context, plain->commands, o.connections, customers);
  seedShop(context, curved->commands, o.connections, customers, curve);
  std::vector<FrameSet> frames;
  for (int c = 0; c < o.connections; ++c) frames.push_back(framesOf(mixFor(c, customers)));
  auto framesOfConnection = [&frames](int c) { return frames[static_cast<size_t>(c)]; };

  LoadSpec spec{o.connections, o.window, 0, o.seconds(), ReplyFormat::shopReply};
  LoadSpec curveSpec = spec;
  curveSpec.curve = &curve;
  std::vector<Figures> off, on;
  int rounds = o.quick ? 1 : 3;
  for (int r = 0; r < rounds; ++r) {
    progress("curve: round %d of %d, plain then CURVE, %dx%d", r + 1, rounds, o.connections,
             o.window);
    off.push_back(measure(plain->commands, spec, framesOfConnection));
    on.push_back(measure(curved->commands, curveSpec, framesOfConnection));
  }
  plain->stop(report);
  curved->stop(report);
  std::filesystem::remove_all(dir);

  report.set("curve", "plain_commands_per_s", medianOf(off, throughputOf));
  report.set("curve", "curve_commands_per_s", medianOf(on, throughputOf));
  report.set("curve", "plain_p99_us", medianOf(off, p99Of));
  report.set("curve", "curve_p99_us", medianOf(on, p99Of));
  report.ratios["curve_vs_plain_throughput"] =
      medianOf(on, throughputOf) / medianOf(off, throughputOf);
  report.ratios["curve_vs_plain_p99"] = medianOf(on, p99Of) / medianOf(off, p99Of);
  printHeader("curve (the e2e mix, plain and with CURVE, interleaved; medians)");
  printRow("plain", off[off.size() / 2]);
  printRow("CURVE", on[on.size() / 2],
           "throughput ratio " + std::to_string(report.ratios["curve_vs_plain_throughput"]));
}

// A JSON number, or null for what JSON cannot hold (a ratio to a zero).
std::string jsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream out;
  out << v;
  return out.str();
}

std::string jsonString(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x",
                    static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void writeJson(const std::string& path, const Options& o, const Report& report) {
  std::ostringstream j;
  j << "{\n  \"machine\": {\"cores\": " << std::thread::hardware_concurrency()
    << ", \"clock_ticks_per_s\": " << sysconf(_SC_CLK_TCK) << "},\n";
  j << "  \"parameters\": {\"quick\": " << (o.quick ? "true" : "false")
    << ", \"connections\": " << o.connections << ", \"window\": " << o.window
    << ", \"seconds\": " << o.seconds() << "},\n";
  j << "  \"scenarios\": {";
  const char* sep = "\n";
  for (const auto& [scenario, figures] : report.figures) {
    j << sep << "    " << jsonString(scenario) << ": {";
    const char* inner = "";
    for (const auto& [key, value] : figures) {
      j << inner << jsonString(key) << ": " << jsonNumber(value);
      inner = ", ";
    }
    j << "}";
    sep = ",\n";
  }
  j << "\n  },\n  \"cpu_us_per_command\": {";
  sep = "\n";
  for (const auto& [server, configs] : report.cpu) {
    j << sep << "    " << jsonString(server) << ": {";
    const char* mid = "";
    for (const auto& [config, threads] : configs) {
      j << mid << jsonString(config) << ": {";
      const char* inner = "";
      for (const auto& [thread, us] : threads) {
        j << inner << jsonString(thread) << ": " << jsonNumber(us);
        inner = ", ";
      }
      j << "}";
      mid = ", ";
    }
    j << "}";
    sep = ",\n";
  }
  j << "\n  },\n  \"failures\": [";
  sep = "";
  for (const auto& f : report.failures) {
    j << sep << jsonString(f);
    sep = ", ";
  }
  // The keys CI checks come first, null when their scenario did not run.
  j << "],\n  \"ratios\": {";
  static const std::vector<std::string> kChecked = {"e2e_vs_echo_throughput", "e2e_vs_echo_p99",
                                                    "engine_vs_e2e_throughput", "isolation_p99",
                                                    "bytes_per_customer"};
  sep = "";
  for (const auto& key : kChecked) {
    auto it = report.ratios.find(key);
    j << sep << jsonString(key) << ": "
      << (it == report.ratios.end() ? "null" : jsonNumber(it->second));
    sep = ", ";
  }
  for (const auto& [key, value] : report.ratios) {
    if (std::find(kChecked.begin(), kChecked.end(), key) != kChecked.end()) continue;
    j << sep << jsonString(key) << ": " << jsonNumber(value);
  }
  j << "}\n}\n";
  std::ofstream out(path);
  out << j.str();
  if (!out) throw std::runtime_error("cannot write " + path);
}

Options parse(int argc, char** argv) {
  Options o;
  CLI::App app{
      "shop-bench: shop's figures, each as a ratio to a baseline measured in the same "
      "run.",
      "shop-bench"};
  app.set_version_flag("--version", std::string("shop-bench ") + SHOP_VERSION);
  app.footer(kScenarios);
  app.add_flag("--quick", o.quick,
               "every scenario short (about 45 s in all on 2 cores): 1 s rounds, shopd "
               "--retention 100000 --dedupe-window 100000 so the fill is 100k commands (full "
               "run: shopd's defaults, 1M), scale stops at 100k, abuse at the sizes below");
  app.add_option("--json", o.json,
                 "write every figure, the parameters, the core count, CPU per command per "
                 "thread and `ratios`")
      ->type_name("FILE");
  std::vector<std::string> scenarios;
  app.add_option("--scenarios,--only", scenarios,
                 "run only these, comma-separated: scenario names below, or abuse (= "
                 "churn,never-reading,raw-tcp)")
      ->delimiter(',')
      ->type_name("LIST");
  app.add_option("--connections", o.connections,
                 "the headline configuration for echo/e2e/fanout and slow-subscriber")
      ->type_name("K")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--window", o.window, "requests in flight per connection")
      ->type_name("W")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--journal-dir", o.journalDir,
                 "where the journal and replay scenarios write (default: a temporary directory "
                 "in the current one; /tmp may be memory)")
      ->type_name("DIR");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) std::exit(app.exit(e));  // --help, --version
    std::string hint = cli::didYouMean(app, argc, argv);
    throw cli::UsageError(e.what() + (hint.empty() ? "" : "; " + hint));
  }
  static const std::map<std::string, std::vector<std::string>> groups = {
      {"abuse", {"churn", "never-reading", "raw-tcp"}}};
  static const std::vector<std::string> known = {
      "echo",   "e2e",         "engine",        "isolation", "scale",
      "fanout", "churn",       "never-reading", "raw-tcp",   "slow-subscriber",
      "curve",  "projections", "journal",       "replay",    "holds",
      "relay"};
  for (const auto& name : scenarios) {
    if (auto group = groups.find(name); group != groups.end()) {
      o.only.insert(group->second.begin(), group->second.end());
    } else if (std::find(known.begin(), known.end(), name) != known.end()) {
      o.only.insert(name);
    } else {
      std::string near = cli::closest(name, known);
      throw cli::UsageError("unknown scenario '" + name + "'" +
                            (near.empty() ? "" : "; did you mean '" + near + "'?"));
    }
  }
  return o;
}

}  // namespace
}  // namespace shop::bench

int main(int argc, char** argv) {
  using namespace shop::bench;
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const shop::cli::UsageError& e) {
    std::fprintf(stderr, "shop-bench: %s (see shop-bench --help)\n", e.what());
    return 2;
  }
  try {
    raiseOpenFileLimit();
    Report report;
    std::printf("shop-bench: %u cores, %s run\n", std::thread::hardware_concurrency(),
                o.quick ? "quick" : "full");
    // Scale first: its RSS deltas are only meaningful in a heap that the
    // other scenarios have not grown and fragmented.
    if (o.runs("scale")) runScale(o, report);
    std::optional<EchoAndE2e> e2e;
    if (o.runs("echo") || o.runs("e2e")) e2e = runEchoAndE2e(o, report);
    if (o.runs("engine")) runEngine(o, report, e2e ? &*e2e : nullptr);
    if (o.runs("isolation")) runIsolation(o, report);
    if (o.runs("fanout")) runFanout(o, report);
    if (o.runs("curve")) runCurve(o, report);
    AbuseOptions abuse{o.quick, o.connections, o.window};
    if (o.runs("churn")) runChurn(abuse, report);
    if (o.runs("never-reading")) runNeverReading(abuse, report);
    if (o.runs("raw-tcp")) runRawTcp(abuse, report);
    if (o.runs("slow-subscriber")) runSlowSubscriber(abuse, report);
    if (o.runs("projections")) {
      runProjections({o.quick, o.connections, o.window, o.seconds()}, report);
    }
    if (o.runs("holds")) runHolds({o.quick, o.seconds()}, report);
    if (o.runs("relay")) runRelay({o.quick, o.connections, o.window, o.seconds()}, report);
    if (o.runs("journal") || o.runs("replay")) {
      // 4 x 32, the configuration the durability targets are stated for.
      runDurability(
          {o.quick, 4, 32, o.seconds(), o.journalDir, o.runs("journal"), o.runs("replay")}, report);
    }
    if (!o.json.empty()) writeJson(o.json, o, report);
    std::printf("\nratios:");
    for (const auto& [k, v] : report.ratios) std::printf(" %s=%.3f", k.c_str(), v);
    std::printf("\n");
    if (!report.failures.empty()) {
      std::fprintf(stderr, "shop-bench: %zu server(s) did not stop cleanly\n",
                   report.failures.size());
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shop-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
