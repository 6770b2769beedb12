// shop-bench: the performance contract, measured side by side in one run.
// Every headline figure is a ratio to a baseline from the same invocation,
// because these machines are shared and noisy.
#include <capnp/message.h>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "bus/client.h"
#include "bus/codec.h"
#include "bus/server.h"
#include "bus/subscriber.h"
#include "core/engine.h"
#include "tools/bench/load.h"
#include "tools/cli.h"

namespace shop::bench {
namespace {

constexpr const char* kUsage = R"(usage: shop-bench [--quick] [--json FILE] [--only SCENARIO,...] [--connections K] [--window W]

Scenarios (all by default): echo, e2e, engine, isolation, scale, fanout.
  echo       raw ZeroMQ DEALER->ROUTER echo: the baseline for e2e
  e2e        a real shopd in-process, K connections x W in flight, a buy/return/deposit mix
  engine     the engine alone, no sockets
  isolation  a quiet customer's p99 alone, then while a hot customer floods
  scale      1k -> 100k -> 1M customers: RSS per customer, throughput as it grows
  fanout     1, 8, 32 subscribers: the command path, and events lost then recovered

  --quick          every scenario short (< 60 s in all); scale stops at 100k
  --json FILE      write every figure, the parameters, the core count and `ratios`
  --connections K  client connections for echo/e2e/fanout (default 2)
  --window W       requests in flight per connection (default 16)
  -h, --help       this text

Latencies are measured from the intended send time (corrected for coordinated
omission). Progress goes to stderr; the tables to stdout.
)";

struct Options {
  bool quick = false;
  std::string json;
  std::set<std::string> only;
  int connections = 2;
  int window = 16;
  bool runs(const std::string& s) const { return only.empty() || only.count(s); }
  double seconds() const { return quick ? 1.0 : 5.0; }
};

void progress(const char* fmt, auto... args) {
  std::fprintf(stderr, "shop-bench: ");
  std::fprintf(stderr, fmt, args...);
  std::fprintf(stderr, "\n");
}

// Figures collected for the JSON file: scenario -> key -> value.
struct Report {
  std::map<std::string, std::map<std::string, double>> figures;
  std::map<std::string, double> ratios;
  void set(const std::string& scenario, const std::string& key, double v) { figures[scenario][key] = v; }
};

long rssBytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// ---- a server in-process, on its own thread ----------------------------------

// The server gets its own ZeroMQ context, as the shopd process would.
class ServerThread {
 public:
  explicit ServerThread(EngineConfig engine = {}) : context_(1) {
    bus::ServerConfig config;
    config.commandsEndpoint = "tcp://127.0.0.1:*";
    config.eventsEndpoint = "tcp://127.0.0.1:*";
    config.engine = engine;
    std::promise<bus::Server*> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, config, &ready] {
      pthread_setname_np(pthread_self(), "shop-socket");
      bus::Server server(context_, config);
      ready.set_value(&server);
      server.run();
    });
    server_ = started.get();
    commands = server_->commandsEndpoint();
    events = server_->eventsEndpoint();
  }
  ~ServerThread() {
    server_->requestStop();
    thread_.join();
  }
  std::string commands, events;

 private:
  zmq::context_t context_;
  bus::Server* server_;
  std::thread thread_;
};

// ---- the echo baseline ---------------------------------------------------------

class EchoServer {
 public:
  EchoServer() : context_(1), router_(context_, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    router_.set(zmq::sockopt::sndhwm, 0);
    router_.set(zmq::sockopt::rcvhwm, 0);
    router_.bind("tcp://127.0.0.1:*");
    endpoint = router_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "bench-echo");
      run();
    });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
  }
  std::string endpoint;

 private:
  void run() {
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    while (!stop_) {
      // The 50 ms timeout only notices stop_; under load poll returns at once.
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
      zmq::message_t identity, body;
      while (router_.recv(identity, zmq::recv_flags::dontwait)) {
        (void)router_.recv(body, zmq::recv_flags::none);
        router_.send(identity, zmq::send_flags::sndmore);
        router_.send(body, zmq::send_flags::none);
      }
    }
  }
  zmq::context_t context_;
  zmq::socket_t router_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

// ---- the command mix -------------------------------------------------------------

constexpr int kProducts = 16;
constexpr int64_t kBigBalance = 1'000'000'000'000;

std::string customerName(int connection, int i) {
  return "b" + std::to_string(connection) + "-" + std::to_string(i);
}
std::string productName(int k) { return "bp" + std::to_string(k); }

// Per customer, in order: buy, buy, return one, deposit. With many more
// customers than requests in flight, each customer has at most one pending,
// so every return has a unit to give back: the mix is all accepted.
std::vector<Command> mixFor(int connection, int customers) {
  std::vector<Command> out;
  for (int i = 0; i < customers; ++i) {
    std::string c = customerName(connection, i);
    std::string p = productName(i % kProducts);
    out.push_back({CommandId::random(), BuyProduct{c, p, 1}});
    out.push_back({CommandId::random(), BuyProduct{c, p, 1}});
    out.push_back({CommandId::random(), ReturnProduct{c, p, 1}});
    out.push_back({CommandId::random(), Deposit{c, 100}});
  }
  // Round-robin over customers: step i of customer j sits at j*4+i; send
  // all customers' step 0, then all step 1, ...
  std::vector<Command> ordered;
  for (int step = 0; step < 4; ++step) {
    for (int i = 0; i < customers; ++i) ordered.push_back(out[static_cast<size_t>(i * 4 + step)]);
  }
  return ordered;
}

FrameSet framesOf(const std::vector<Command>& commands) {
  FrameSet set;
  for (const auto& c : commands) {
    capnp::MallocMessageBuilder message;
    bus::toWire(c, message.initRoot<wire::Command>());
    zmq::message_t frame = bus::toFrame(message);
    std::vector<uint8_t> bytes(static_cast<uint8_t*>(frame.data()),
                               static_cast<uint8_t*>(frame.data()) + frame.size());
    set.idOffsets.push_back(findId(bytes, c.id.bytes.data()));
    set.frames.push_back(std::move(bytes));
  }
  return set;
}

// Creates the products and every connection's customers, W at a time.
void seedShop(zmq::context_t& context, const std::string& commands, int connections, int customers) {
  bus::Client client(context, commands, {.timeoutMs = 10'000, .retries = 0});
  std::vector<Command> setup;
  for (int k = 0; k < kProducts; ++k) {
    setup.push_back({CommandId::random(), AddProduct{productName(k), 1 + k, 1'000'000'000'000}});
  }
  for (int c = 0; c < connections; ++c) {
    for (int i = 0; i < customers; ++i) {
      setup.push_back({CommandId::random(), CreateCustomer{customerName(c, i), kBigBalance}});
    }
  }
  size_t failed = 0;
  for (const auto& cmd : setup) {
    client.send(cmd, [&failed](const bus::CallResult& r) {
      if (!r.ok() || r.reply->reply.status != ReplyStatus::accepted) ++failed;
    });
    while (client.inFlight() >= 64) client.poll(-1);
  }
  while (client.inFlight() > 0) client.poll(-1);
  if (failed) throw std::runtime_error("seeding the shop failed for " + std::to_string(failed) + " commands");
}

struct Figures {
  double throughput;
  LatencySummary latency;
};

void printRow(const char* name, const Figures& f, const std::string& note = "") {
  std::printf("  %-34s %12.0f %10.1f %10.1f %10.1f  %s\n", name, f.throughput, f.latency.p50Us,
              f.latency.p99Us, f.latency.p999Us, note.c_str());
}
void printHeader(const char* title) {
  std::printf("\n%s\n  %-34s %12s %10s %10s %10s\n", title, "", "cmds/s", "p50 us", "p99 us",
              "p99.9 us");
}

Figures measure(const std::string& endpoint, const LoadSpec& spec,
                const std::function<FrameSet(int)>& frames, LoadResult* raw = nullptr) {
  LoadResult r = runLoad(endpoint, spec, frames);
  Figures f{r.throughput(), LatencySummary::of(r.latency)};
  if (raw) *raw = std::move(r);
  return f;
}

void record(Report& report, const std::string& scenario, const std::string& prefix, const Figures& f) {
  report.set(scenario, prefix + "commands_per_s", f.throughput);
  report.set(scenario, prefix + "p50_us", f.latency.p50Us);
  report.set(scenario, prefix + "p99_us", f.latency.p99Us);
  report.set(scenario, prefix + "p999_us", f.latency.p999Us);
}

// ---- scenarios -----------------------------------------------------------------

struct EchoAndE2e {
  Figures echoMax, echoPaced, e2eMax, e2ePaced;
};

EchoAndE2e runEchoAndE2e(const Options& o, Report& report) {
  zmq::context_t context(1);
  int customers = o.quick ? 500 : 2000;
  std::vector<FrameSet> frames;
  for (int c = 0; c < o.connections; ++c) frames.push_back(framesOf(mixFor(c, customers)));
  auto frameSource = [&frames](int c) { return frames[static_cast<size_t>(c)]; };
  LoadSpec spec{o.connections, o.window, 0, o.seconds(), ReplyFormat::echoedCommand};
  EchoAndE2e out{};

  {
    progress("echo: %d connections x %d in flight, %.0f s", o.connections, o.window, spec.seconds);
    EchoServer echo;
    out.echoMax = measure(echo.endpoint, spec, frameSource);
  }
  {
    ServerThread server;
    seedShop(context, server.commands, o.connections, customers);
    progress("e2e: %d connections x %d in flight over %d customers, %.0f s", o.connections,
             o.window, o.connections * customers, spec.seconds);
    spec.format = ReplyFormat::shopReply;
    LoadResult raw;
    out.e2eMax = measure(server.commands, spec, frameSource, &raw);
    report.set("e2e", "rejected", static_cast<double>(raw.rejected));
    // Moderate load: half of e2e's maximum, open loop, for both.
    spec.ratePerConnection = out.e2eMax.throughput / 2 / o.connections;
    progress("e2e paced at %.0f cmds/s", spec.ratePerConnection * o.connections);
    out.e2ePaced = measure(server.commands, spec, frameSource);
  }
  {
    EchoServer echo;
    spec.format = ReplyFormat::echoedCommand;
    progress("echo paced at %.0f cmds/s", spec.ratePerConnection * o.connections);
    out.echoPaced = measure(echo.endpoint, spec, frameSource);
  }
  size_t frameBytes = frames[0].frames[0].size();
  for (const char* s : {"echo", "e2e"}) {
    report.set(s, "connections", o.connections);
    report.set(s, "window", o.window);
    report.set(s, "seconds", spec.seconds);
    report.set(s, "request_bytes", static_cast<double>(frameBytes));
  }
  record(report, "echo", "max_", out.echoMax);
  record(report, "echo", "paced_", out.echoPaced);
  record(report, "e2e", "max_", out.e2eMax);
  record(report, "e2e", "paced_", out.e2ePaced);
  report.set("e2e", "paced_rate", spec.ratePerConnection * o.connections);
  report.ratios["e2e_vs_echo_throughput"] = out.e2eMax.throughput / out.echoMax.throughput;
  report.ratios["e2e_vs_echo_p99"] = out.e2ePaced.latency.p99Us / out.echoPaced.latency.p99Us;

  printHeader("echo vs e2e (same frames, same window; paced = half of e2e max, open loop)");
  printRow("echo, max", out.echoMax);
  printRow("e2e, max", out.e2eMax,
           "ratio " + std::to_string(report.ratios["e2e_vs_echo_throughput"]) + " (target >= 0.7)");
  printRow("echo, paced", out.echoPaced);
  printRow("e2e, paced", out.e2ePaced,
           "p99 ratio " + std::to_string(report.ratios["e2e_vs_echo_p99"]) + " (target <= 2)");
  return out;
}

// Drives the engine in-process for `seconds` with `window` in flight.
class EngineDriver : public EngineListener {
 public:
  void onEvent(const Event&) override {}
  void onReply(uint64_t, const Reply&) override { ++replies; }
  uint64_t replies = 0;
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
      c.id = CommandId::fromNumber(0xE, submitted);
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
    engine.submit({CommandId::fromNumber(0xA, n++), AddProduct{productName(k), 1 + k, 1'000'000'000'000}}, 1);
  }
  for (int c = 0; c < connections; ++c) {
    for (int i = 0; i < customers; ++i) {
      engine.submit({CommandId::fromNumber(0xA, n++), CreateCustomer{customerName(c, i), kBigBalance}}, 1);
      if (engine.inFlight() > 256) engine.wait(-1);
    }
  }
  engine.drain();
}

void runEngine(const Options& o, Report& report, const EchoAndE2e* e2e) {
  EngineDriver driver;
  Engine engine(EngineConfig{}, driver);
  int customers = o.quick ? 500 : 2000;
  seedEngine(engine, 1, customers);
  size_t window = static_cast<size_t>(o.connections * o.window);
  progress("engine: %zu in flight, %.0f s", window, o.seconds());
  double tput = engineThroughput(engine, driver, mixFor(0, customers), o.seconds(), window);
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
  ServerThread server;
  bus::Client client(context, server.commands);
  for (const char* c : {"quiet", "hot"}) {
    if (!client.call({CommandId::random(), CreateCustomer{c, 0}}).ok()) throw std::runtime_error("setup failed");
  }
  auto deposits = [](const char* customer) {
    return [customer](int) { return framesOf({Command{CommandId::random(), Deposit{customer, 1}}}); };
  };
  double rate = 2000;
  double seconds = o.quick ? 2.0 : 5.0;
  LoadSpec quiet{1, 4, rate, seconds, ReplyFormat::shopReply};
  progress("isolation: quiet customer alone at %.0f/s, %.0f s", rate, seconds);
  Figures alone = measure(server.commands, quiet, deposits("quiet"));

  progress("isolation: quiet customer while a hot customer floods");
  LoadSpec hot{1, 64, 0, seconds, ReplyFormat::shopReply};
  LoadResult hotResult;
  std::thread flood([&] { hotResult = runLoad(server.commands, hot, deposits("hot")); });
  Figures withFlood = measure(server.commands, quiet, deposits("quiet"));
  flood.join();

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
  std::printf("  %-34s %12.0f  (%llu rejected by the gate)\n", "hot customer", hotResult.throughput(),
              static_cast<unsigned long long>(hotResult.rejected));
}

void runScale(const Options& o, Report& report) {
  EngineDriver driver;
  // Small log and dedupe window: the figure is the aggregates' cost, not the
  // retained history's.
  Engine engine(EngineConfig{.retention = 10'000, .dedupeWindow = 10'000}, driver);
  std::vector<int> sizes = {1'000, 100'000};
  if (!o.quick) sizes.push_back(1'000'000);
  malloc_trim(0);
  long base = rssBytes();
  int created = 0;
  uint64_t n = 0;
  std::mt19937 rng(1);
  std::printf("\nscale (engine, retention 10k; RSS delta since the empty engine)\n  %-12s %14s %12s\n",
              "customers", "bytes/customer", "deposits/s");
  double last = 0;
  for (int size : sizes) {
    progress("scale: creating customers up to %d", size);
    for (; created < size; ++created) {
      engine.submit({CommandId::fromNumber(0x5, n++), CreateCustomer{"s" + std::to_string(created), 1000}}, 1);
      if (engine.inFlight() > 512) engine.wait(-1);
    }
    engine.drain();
    double perCustomer = static_cast<double>(rssBytes() - base) / size;
    std::vector<Command> mix;
    for (int i = 0; i < 4096; ++i) {
      mix.push_back({CommandId{}, Deposit{"s" + std::to_string(rng() % static_cast<unsigned>(size)), 1}});
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
  std::printf("\nfanout (e2e closed loop while subscribers follow with catch-up)\n  %-12s %12s %10s %10s %12s %12s\n",
              "subscribers", "cmds/s", "p99 us", "p99.9 us", "gaps", "re-read");
  for (int subscribers : {1, 8, 32}) {
    zmq::context_t context(1);
    ServerThread server;
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
    Figures f = measure(server.commands, spec, [&frames](int c) { return frames[static_cast<size_t>(c)]; });
    bus::Client client(context, server.commands);
    auto head = client.call({CommandId::random(), ReadEvents{UINT64_MAX, 1}});
    finalHead = head.reply->reply.page.headSeq;
    loadDone = true;
    for (auto& t : threads) t.join();
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

void writeJson(const std::string& path, const Options& o, const Report& report) {
  std::ostringstream j;
  j << "{\n  \"machine\": {\"cores\": " << std::thread::hardware_concurrency() << "},\n";
  j << "  \"parameters\": {\"quick\": " << (o.quick ? "true" : "false")
    << ", \"connections\": " << o.connections << ", \"window\": " << o.window << "},\n";
  j << "  \"scenarios\": {";
  const char* sep = "\n";
  for (const auto& [scenario, figures] : report.figures) {
    j << sep << "    \"" << scenario << "\": {";
    const char* inner = "";
    for (const auto& [key, value] : figures) {
      j << inner << "\"" << key << "\": " << value;
      inner = ", ";
    }
    j << "}";
    sep = ",\n";
  }
  j << "\n  },\n  \"ratios\": {";
  sep = "";
  for (const char* key : {"e2e_vs_echo_throughput", "e2e_vs_echo_p99", "engine_vs_e2e_throughput",
                          "isolation_p99", "bytes_per_customer"}) {
    auto it = report.ratios.find(key);
    j << sep << "\"" << key << "\": ";
    if (it == report.ratios.end()) {
      j << "null";
    } else {
      j << it->second;
    }
    sep = ", ";
  }
  j << "}\n}\n";
  std::ofstream out(path);
  out << j.str();
  if (!out) throw std::runtime_error("cannot write " + path);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--json") {
      o.json = cli::value(argc, argv, i);
    } else if (a == "--only") {
      std::stringstream list(cli::value(argc, argv, i));
      for (std::string s; std::getline(list, s, ',');) {
        static const std::set<std::string> known = {"echo", "e2e", "engine", "isolation", "scale", "fanout"};
        if (!known.count(s)) throw cli::UsageError("unknown scenario '" + s + "'");
        o.only.insert(s);
      }
    } else if (a == "--connections") {
      o.connections = static_cast<int>(cli::unsignedValue(a, cli::value(argc, argv, i), 1, 64));
    } else if (a == "--window") {
      o.window = static_cast<int>(cli::unsignedValue(a, cli::value(argc, argv, i), 1, 4096));
    } else {
      throw cli::UsageError("unknown option '" + a + "'");
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
    if (!o.json.empty()) writeJson(o.json, o, report);
    std::printf("\nratios:");
    for (const auto& [k, v] : report.ratios) std::printf(" %s=%.3f", k.c_str(), v);
    std::printf("\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shop-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
