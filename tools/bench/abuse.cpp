#include "tools/bench/abuse.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "bus/client.h"
#include "tools/bench/load.h"
#include "tools/bench/server_process.h"
#include "tools/bench/thread_cpu.h"
#include "tools/bench/workload.h"

namespace shop::bench {
namespace {

using Clock = std::chrono::steady_clock;

// shopd's --retention and --dedupe-window in these scenarios: small, and
// filled before anything is measured, so that what grows during a scenario
// is connection state, not history.
constexpr uint64_t kHistory = 10'000;
// shopd's --handshake-ms default (ZMQ_HANDSHAKE_IVL): only bounds the wait here.
constexpr double kHandshakeSeconds = 5.0;

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

Clock::time_point after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

void recordFootprint(Report& report, const std::string& scenario, const std::string& prefix,
                     const Footprint& f) {
  report.set(scenario, prefix + "fds", f.fds);
  report.set(scenario, prefix + "rss_mb", f.rssMb);
}

Figures figuresOf(LoadResult& r) {
  return {r.throughput(), LatencySummary::of(r.latency)};
}

// A shopd for one scenario: `connections` x `customers` seeded (workload.h
// names), a customer "quiet" for the quiet client, and the dedupe window and
// event log full.
struct Target {
  std::unique_ptr<ServerProcess> shopd;
  int restingFds = 0;  // open with no client connected, read before the first connected
  int port = 0;        // of the commands endpoint
};

Target startTarget(zmq::context_t& context, int connections, int customers) {
  Target t;
  t.shopd = startShopd(kHistory);
  t.restingFds = openFdsOf(t.shopd->pid());
  const std::string& endpoint = t.shopd->commands;
  t.port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  seedShop(context, endpoint, connections, customers);
  {
    bus::Client client(context, endpoint, {.timeoutMs = 10'000, .retries = 0});
    auto r = client.call({CommandId::random(), CreateCustomer{"quiet", 0}});
    if (!r.ok() || r.reply->reply.status != ReplyStatus::accepted)
      throw std::runtime_error("cannot create the quiet customer");
  }
  FrameSet deposits = framesOf(depositsFor(0, customers));
  LoadSpec fill{1, 16, 0, 0, ReplyFormat::shopReply};
  fill.requestsPerConnection = kHistory;
  LoadResult filled = runLoad(endpoint, fill, [&deposits](int) { return deposits; });
  if (filled.rejected || filled.lost) {
    throw std::runtime_error("fill: " + std::to_string(filled.rejected) + " rejected, " +
                             std::to_string(filled.lost) + " unanswered");
  }
  return t;
}

// The quiet client alone, for `seconds`; then every connection it and the
// setup made is gone from shopd (its fd count is back at rest).
Figures quietAlone(Target& t, double seconds) {
  Figures idle = measure(t.shopd->commands, quietSpec(seconds), depositsTo("quiet"));
  settleTo(t.shopd->pid(), t.restingFds, 10);
  return idle;
}

// Starts the quiet client and waits until shopd has accepted its
// connection; the footprint then is the scenario's "before".
std::unique_ptr<QuietClient> startQuiet(Target& t, Footprint& before) {
  auto quiet = std::make_unique<QuietClient>(t.shopd->commands);
  waitForAccepted(t.shopd->pid(), t.restingFds + 1, 10);
  before = footprintOf(t.shopd->pid());
  return quiet;
}

Seq headSeqOf(zmq::context_t& context, const std::string& endpoint) {
  bus::Client client(context, endpoint, {.timeoutMs = 10'000, .retries = 0});
  auto r = client.call({CommandId::random(), ReadEvents{UINT64_MAX, 1}});
  if (!r.ok()) throw std::runtime_error("ReadEvents failed: " + r.error);
  return r.reply->reply.page.headSeq;
}

// Writes a fresh commandId into frame k: `prefix` (8 bytes) then `n`.
void stampId(FrameSet& set, size_t k, uint64_t prefix, uint64_t n) {
  std::memcpy(set.frames[k].data() + set.idOffsets[k], &prefix, 8);
  std::memcpy(set.frames[k].data() + set.idOffsets[k] + 8, &n, 8);
}

uint64_t randomPrefix() {
  CommandId id = CommandId::random();
  uint64_t prefix;
  std::memcpy(&prefix, id.bytes.data(), 8);
  return prefix;
}

void requireOpenFiles(uint64_t needed, const char* scenario) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= needed) return;
  throw std::runtime_error(std::string(scenario) + " needs " + std::to_string(needed) +
                           " open files, and the limit is " + std::to_string(limit.rlim_cur) +
                           " (ulimit -Hn is the most the bench can raise it to)");
}

// The quiet client's p99 during the abuse over its p99 alone, recorded and
// printed.
double recordQuiet(Report& report, const std::string& scenario, Figures idle, Figures during) {
  record(report, scenario, "quiet_idle_", idle);
  record(report, scenario, "quiet_during_", during);
  double ratio = during.latency.p99Us / idle.latency.p99Us;
  std::printf("  quiet client p99: %.0f us alone, %.0f us during (%.0f samples/s): ratio %.2f\n",
              idle.latency.p99Us, during.latency.p99Us, during.throughput, ratio);
  return ratio;
}

// CPU seconds of every thread of a process between two samples.
double cpuSeconds(const CpuSample& before, const CpuSample& after) {
  double total = 0;
  for (const auto& [name, seconds] : cpuSecondsByThread(before, after)) total += seconds;
  return total;
}

// ---- connection churn --------------------------------------------------------

// One wave: `count` DEALERs connect, each sends one deposit as soon as its
// connection is up (with ZMQ_IMMEDIATE a send fails until then, so none is
// discarded by linger 0 for want of a connection), and all close unread.
// Returns how many sent.
int churnWave(zmq::context_t& context, const std::string& endpoint, FrameSet& frames,
              uint64_t prefix, uint64_t& nextId, int count, double timeout) {
  std::vector<zmq::socket_t> sockets;
  std::vector<zmq::pollitem_t> items;
  sockets.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    zmq::socket_t& s = sockets.emplace_back(context, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::immediate, true);
    s.connect(endpoint);
    items.push_back({s.handle(), 0, ZMQ_POLLOUT, 0});
  }
  int sent = 0;
  auto deadline = after(timeout);
  while (sent < count && Clock::now() < deadline) {
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
    for (size_t i = 0; i < items.size(); ++i) {
      if (!(items[i].revents & ZMQ_POLLOUT)) continue;
      size_t k = i % frames.frames.size();
      stampId(frames, k, prefix, nextId++);
      if (sockets[i].send(zmq::buffer(frames.frames[k]), zmq::send_flags::dontwait)) {
        ++sent;
        items[i].events = 0;
      }
    }
  }
  return sent;  // the sockets close here, their replies unread
}

}  // namespace

uint64_t raiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    rlim_t before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return before;
    progress("open files: soft limit raised from %llu to %llu",
             static_cast<unsigned long long>(before),
             static_cast<unsigned long long>(limit.rlim_cur));
  }
  return limit.rlim_cur;
}

void runChurn(const AbuseOptions& o, Report& report) {
  const int waves = o.quick ? 1 : 5;
  const int perWave = o.quick ? 200 : 1000;
  const double idleSeconds = o.quick ? 2 : 5;
  // Each DEALER holds a socket and an eventfd here, and zmq_close() hands
  // them to the reaper, so one wave's may still be open as the next starts.
  // (--quick's single wave of 200 fits a soft limit of 1,024.)
  uint64_t wavesOpen = waves > 1 ? 2 : 1;
  requireOpenFiles(2 * wavesOpen * static_cast<uint64_t>(perWave) + 256, "churn");
  zmq::context_t context(1);
  // ZeroMQ allows 1,023 sockets per context unless told otherwise.
  zmq::context_t clients(1, 4 * perWave + 64);
  Target t = startTarget(context, 1, perWave);
  pid_t pid = t.shopd->pid();
  const std::string& endpoint = t.shopd->commands;

  progress("churn: quiet client alone, %.0f s", idleSeconds);
  Figures idle = quietAlone(t, idleSeconds);
  Seq headBefore = headSeqOf(context, endpoint);
  settleTo(pid, t.restingFds, 10);

  Footprint before;
  auto quiet = startQuiet(t, before);
  FrameSet frames = framesOf(depositsFor(0, perWave));
  uint64_t prefix = randomPrefix(), nextId = 0;
  struct Wave {
    int sent;
    uint64_t synsDropped;  // by a full accept queue; the client retries after 1 s
    double seconds, settleSeconds;
    Footprint after;
  };
  std::vector<Wave> done;
  int sent = 0;
  CpuSample shopdCpu = sampleCpu(pid), benchCpu = sampleCpu(::getpid());
  auto wavesStart = Clock::now();
  for (int w = 1; w <= waves; ++w) {
    progress("churn: wave %d of %d: %d connections", w, waves, perWave);
    auto start = Clock::now();
    uint64_t overflows = listenOverflows();
    Wave wave{};
    wave.sent = churnWave(clients, endpoint, frames, prefix, nextId, perWave, 10);
    wave.seconds = secondsSince(start);
    wave.synsDropped = listenOverflows() - overflows;
    wave.settleSeconds = settleTo(pid, before.fds, 30).seconds;
    wave.after = footprintOf(pid);
    sent += wave.sent;
    done.push_back(wave);
  }
  double wavesSeconds = secondsSince(wavesStart);
  auto shopdThreads = cpuSecondsByThread(shopdCpu, sampleCpu(pid));
  auto benchThreads = cpuSecondsByThread(benchCpu, sampleCpu(::getpid()));
  LoadResult& q = quiet->stop();
  Figures during = figuresOf(q);
  Seq headAfter = headSeqOf(context, endpoint);
  // Every accepted deposit is one event; the quiet client's are the rest.
  double accepted =
      static_cast<double>(headAfter - headBefore) - static_cast<double>(q.completed - q.rejected);
  t.shopd->stop(report);

  const std::string s = "churn";
  report.set(s, "waves", waves);
  report.set(s, "connections_per_wave", perWave);
  report.set(s, "commands_sent", sent);
  report.set(s, "commands_accepted", accepted);
  recordFootprint(report, s, "before_", before);
  std::printf(
      "\nconnection churn (%d waves of %d DEALERs: connect, send one deposit, close "
      "unread, linger 0)\n  %-22s %8s %8s %10s %8s %10s %13s\n",
      waves, perWave, "shopd", "fds", "RSS MB", "wave s", "sent", "settled s", "SYNs dropped");
  std::printf("  %-22s %8d %8.1f\n", "before", before.fds, before.rssMb);
  for (size_t i = 0; i < done.size(); ++i) {
    const Wave& w = done[i];
    std::string k = "wave" + std::to_string(i + 1) + "_";
    recordFootprint(report, s, k, w.after);
    report.set(s, k + "seconds", w.seconds);
    report.set(s, k + "sent", w.sent);
    report.set(s, k + "settle_seconds", w.settleSeconds);
    report.set(s, k + "syns_dropped", static_cast<double>(w.synsDropped));
    std::printf("  %-22s %8d %8.1f %10.2f %8d %10.3f %13llu\n",
                ("after wave " + std::to_string(i + 1)).c_str(), w.after.fds, w.after.rssMb,
                w.seconds, w.sent, w.settleSeconds, static_cast<unsigned long long>(w.synsDropped));
  }
  std::printf("  %d deposits sent, %.0f accepted (events in the log)\n", sent, accepted);
  // Where the CPU of the waves went: on 2 cores the clients (this process)
  // and shopd compete with the quiet client for it.
  for (const auto& [who, threads] :
       {std::pair{"shopd", &shopdThreads}, std::pair{"bench", &benchThreads}}) {
    double total = 0;
    std::string line;
    for (const auto& [name, seconds] : *threads) {
      total += seconds;
      if (seconds > 0) line += "  " + name + " " + fixed(seconds);
    }
    report.set(s, std::string(who) + "_cpu_seconds", total);
    std::printf("  %s CPU during the waves (%.1f s): %.2f s |%s\n", who, wavesSeconds, total,
                line.c_str());
  }
  report.set(s, "waves_seconds", wavesSeconds);
  const Footprint& last = done.back().after;
  report.ratios["churn_quiet_p99_vs_idle"] = recordQuiet(report, s, idle, during);
  report.ratios["churn_rss_growth_mb"] = last.rssMb - before.rssMb;
  report.ratios["churn_fd_growth"] = last.fds - before.fds;
}

// ---- a client that never reads ----------------------------------------------

namespace {

// The count after "(..., " and before " refused)" in shopd's last "stopped
// after" line; -1 when there is none.
double refusedIn(const std::string& log) {
  size_t at = log.rfind("stopped after");
  size_t end = at == std::string::npos ? at : log.find(" refused)", at);
  if (end == std::string::npos) return -1;
  size_t start = log.rfind(' ', end - 1);
  std::string count = log.substr(start + 1, end - start - 1);
  char* rest = nullptr;
  double n = std::strtod(count.c_str(), &rest);
  return rest && *rest == '\0' && !count.empty() ? n : -1;
}

}  // namespace

void runNeverReading(const AbuseOptions& o, Report& report) {
  const uint64_t count = o.quick ? 20'000 : 200'000;
  const int customers = 1000;
  const double idleSeconds = o.quick ? 2 : 5;
  zmq::context_t context(1);
  Target t = startTarget(context, 1, customers);
  pid_t pid = t.shopd->pid();
  const std::string& endpoint = t.shopd->commands;

  progress("never-reading: quiet client alone, %.0f s", idleSeconds);
  CpuSample cpu = sampleCpu(pid);
  auto idleStart = Clock::now();
  Figures idle = quietAlone(t, idleSeconds);
  double idleCpu = cpuSeconds(cpu, sampleCpu(pid)) / secondsSince(idleStart);
  Footprint before;
  auto quiet = startQuiet(t, before);
  RssPeak peak(pid);

  progress("never-reading: %llu deposits from one DEALER that never reads",
           static_cast<unsigned long long>(count));
  uint64_t sent = 0;
  double sendSeconds = 0, drainSeconds = 0, heldCpu = 0;
  Footprint held;
  {
    zmq::socket_t flood(context, zmq::socket_type::dealer);
    flood.set(zmq::sockopt::linger, 0);
    flood.set(zmq::sockopt::sndtimeo, 10'000);  // a send blocked this long ends the flood
    flood.connect(endpoint);
    FrameSet frames = framesOf(depositsFor(0, customers));
    uint64_t prefix = randomPrefix();
    auto start = Clock::now();
    for (; sent < count; ++sent) {
      size_t k = sent % frames.frames.size();
      stampId(frames, k, prefix, sent);
      if (!flood.send(zmq::buffer(frames.frames[k]), zmq::send_flags::none)) {
        progress("warning: never-reading: a send blocked for 10 s; %llu sent",
                 static_cast<unsigned long long>(sent));
        break;
      }
    }
    sendSeconds = secondsSince(start);
    // Held open until shopd has read every request (none left in either
    // side's TCP queue), so that its backlog for this client is as large as
    // it will get.
    auto drained = Clock::now();
    auto deadline = after(60);
    while (unreadRequestBytes(t.port) > 0) {
      if (Clock::now() > deadline) {
        progress("warning: never-reading: shopd left requests unread for 60 s");
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    drainSeconds = secondsSince(drained);
    held = footprintOf(pid);
    // Then it stays connected, unread replies waiting, for as long as the
    // quiet client ran alone: while a backlog waits shopd's loop wakes every
    // millisecond to retry it, and this is what that costs.
    progress("never-reading: the client stays connected, not reading, %.0f s", idleSeconds);
    cpu = sampleCpu(pid);
    auto holdStart = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(idleSeconds));
    heldCpu = cpuSeconds(cpu, sampleCpu(pid)) / secondsSince(holdStart);
  }
  FdWait gone = settleTo(pid, before.fds, 30);
  Footprint afterClose = footprintOf(pid);
  double peakMb = peak.stopMb();
  Figures during = figuresOf(quiet->stop());
  bool refusing = t.shopd->log().find("refusing requests") != std::string::npos;
  t.shopd->stop(report);
  double refused = refusedIn(t.shopd->log());

  const std::string s = "never_reading";
  report.set(s, "commands_sent", static_cast<double>(sent));
  report.set(s, "send_seconds", sendSeconds);
  report.set(s, "drain_seconds", drainSeconds);
  report.set(s, "close_settle_seconds", gone.seconds);
  report.set(s, "refusing_logged", refusing ? 1 : 0);
  report.set(s, "requests_refused", refused);
  recordFootprint(report, s, "before_", before);
  recordFootprint(report, s, "held_", held);
  recordFootprint(report, s, "after_", afterClose);
  report.set(s, "peak_rss_mb", peakMb);
  report.set(s, "shopd_cpu_per_s_idle", idleCpu);
  report.set(s, "shopd_cpu_per_s_held", heldCpu);
  std::printf(
      "\nnever-reading client (one DEALER sends %llu deposits and reads nothing)\n"
      "  %-34s %8s %8s\n",
      static_cast<unsigned long long>(count), "shopd", "fds", "RSS MB");
  std::printf("  %-34s %8d %8.1f\n", "before", before.fds, before.rssMb);
  std::printf("  %-34s %8s %8.1f\n", "peak", "", peakMb);
  std::printf("  %-34s %8d %8.1f\n", "all read, client still connected", held.fds, held.rssMb);
  std::printf("  %-34s %8d %8.1f\n", "client gone", afterClose.fds, afterClose.rssMb);
  std::printf("  sent in %.2f s, read by shopd %.2f s later; shopd %s, %.0f requests refused\n",
              sendSeconds, drainSeconds,
              refusing ? "logged \"refusing requests\"" : "refused nothing", refused);
  std::printf(
      "  shopd CPU, seconds per second: %.3f with the quiet client alone, %.3f while the "
      "client sat on its backlog\n",
      idleCpu, heldCpu);
  report.ratios["never_reading_quiet_p99_vs_idle"] = recordQuiet(report, s, idle, during);
  report.ratios["never_reading_rss_peak_mb"] = peakMb;
}

// ---- raw TCP -----------------------------------------------------------------

void runRawTcp(const AbuseOptions& o, Report& report) {
  const int count = o.quick ? 200 : 2000;
  const double idleSeconds = o.quick ? 2 : 5;
  // The listen backlog ZeroMQ asks for is 100 (ZMQ_BACKLOG); SYNs past a
  // full accept queue are dropped and retried a second later, so sockets
  // connect in batches that shopd accepts before the next.
  const int batch = 50;
  requireOpenFiles(static_cast<uint64_t>(count) + 256, "raw-tcp");
  zmq::context_t context(1);
  Target t = startTarget(context, 1, 100);
  pid_t pid = t.shopd->pid();

  progress("raw-tcp: quiet client alone, %.0f s", idleSeconds);
  Figures idle = quietAlone(t, idleSeconds);
  Footprint before;
  auto quiet = startQuiet(t, before);

  progress("raw-tcp: %d TCP connections, half sending one byte", count);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(t.port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<int> fds;
  std::vector<Clock::time_point> connectedAt;
  auto closeAll = [&fds] {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
    fds.clear();
  };
  auto start = Clock::now();
  try {
    timeval connectTimeout{5, 0};
    for (int i = 0; i < count; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) throw std::runtime_error("socket: " + std::string(strerror(errno)));
      fds.push_back(fd);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &connectTimeout, sizeof connectTimeout);
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
        throw std::runtime_error("connect: " + std::string(strerror(errno)));
      connectedAt.push_back(Clock::now());
      // 0xFF: the first byte of a ZMTP 3 greeting, and then nothing more.
      const char first = static_cast<char>(0xFF);
      if (i % 2 == 0 && ::send(fd, &first, 1, MSG_NOSIGNAL) != 1)
        throw std::runtime_error("send: " + std::string(strerror(errno)));
      bool batchDone = (i + 1) % batch == 0 || i + 1 == count;
      if (batchDone && !waitForAccepted(pid, before.fds + i + 1, 10).ok) {
        progress("warning: raw-tcp: shopd does not hold %d connections; stopping there", i + 1);
        break;
      }
    }
  } catch (...) {
    closeAll();
    throw;
  }
  const int opened = static_cast<int>(fds.size());
  double connectSeconds = secondsSince(start);
  Footprint open = footprintOf(pid);

  // Held, reading what shopd sends (its greeting), until shopd has closed
  // each one (end of file or reset) or well past its handshake deadline.
  std::vector<pollfd> polls;
  for (int fd : fds) polls.push_back({fd, POLLIN, 0});
  int closedByServer = 0;
  double firstClose = 0, lastClose = 0;  // seconds from a socket's connect to shopd closing it
  auto deadline = after(kHandshakeSeconds + 10);
  while (closedByServer < opened && Clock::now() < deadline) {
    if (::poll(polls.data(), polls.size(), 100) <= 0) continue;
    for (size_t i = 0; i < polls.size(); ++i) {
      if (polls[i].fd < 0 || polls[i].revents == 0) continue;
      char buf[256];
      ssize_t n;
      while ((n = ::recv(polls[i].fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      double age = std::chrono::duration<double>(Clock::now() - connectedAt[i]).count();
      firstClose = closedByServer == 0 ? age : std::min(firstClose, age);
      lastClose = std::max(lastClose, age);
      ++closedByServer;
      polls[i].fd = -1;  // poll() skips it from now on
    }
  }
  Footprint serverClosed = footprintOf(pid);
  closeAll();
  FdWait gone = settleTo(pid, before.fds, 30);
  Footprint afterClose = footprintOf(pid);
  Figures during = figuresOf(quiet->stop());
  t.shopd->stop(report);

  const std::string s = "raw_tcp";
  report.set(s, "connections", opened);
  report.set(s, "connect_seconds", connectSeconds);
  report.set(s, "closed_by_server", closedByServer);
  report.set(s, "server_close_first_s", firstClose);
  report.set(s, "server_close_last_s", lastClose);
  report.set(s, "close_settle_seconds", gone.seconds);
  recordFootprint(report, s, "before_", before);
  recordFootprint(report, s, "open_", open);
  recordFootprint(report, s, "server_closed_", serverClosed);
  recordFootprint(report, s, "after_", afterClose);
  std::printf(
      "\nraw TCP (%d connections to the commands port, half sending one byte, no "
      "handshake)\n  %-34s %8s %8s\n",
      count, "shopd", "fds", "RSS MB");
  std::printf("  %-34s %8d %8.1f\n", "before", before.fds, before.rssMb);
  std::printf("  %-34s %8d %8.1f\n", "all open", open.fds, open.rssMb);
  std::printf("  %-34s %8d %8.1f\n", "after shopd's handshake deadline", serverClosed.fds,
              serverClosed.rssMb);
  std::printf("  %-34s %8d %8.1f\n", "after the bench closed them", afterClose.fds,
              afterClose.rssMb);
  std::printf("  shopd closed %d of %d, %.1f to %.1f s after they connected (deadline %.0f s)\n",
              closedByServer, opened, firstClose, lastClose, kHandshakeSeconds);
  report.ratios["raw_tcp_quiet_p99_vs_idle"] = recordQuiet(report, s, idle, during);
  report.ratios["raw_tcp_fds_after_close"] = afterClose.fds - before.fds;
}

// ---- a subscriber that never reads -------------------------------------------

namespace {

// A SUB on shopd's events, subscribed to everything, that never reads: small
// ZMQ_RCVHWM and SO_RCVBUF, so that shopd's PUB queue for it fills at once.
// Returns once it is attached: an event has reached it (a deposit from the
// quiet customer, repeated, since one published before the subscription
// arrived is not sent to it). The event stays unread.
zmq::socket_t attachSlowSubscriber(zmq::context_t& context, const Target& t) {
  zmq::socket_t sub(context, zmq::socket_type::sub);
  sub.set(zmq::sockopt::rcvhwm, 1000);
  sub.set(zmq::sockopt::rcvbuf, 4096);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::subscribe, "");
  sub.connect(t.shopd->events);
  bus::Client client(context, t.shopd->commands, {.timeoutMs = 10'000, .retries = 0});
  auto deadline = after(10);
  for (;;) {
    if (!client.call({CommandId::random(), Deposit{"quiet", 1}}).ok())
      throw std::runtime_error("slow-subscriber: a deposit failed");
    zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(100));
    if (item.revents & ZMQ_POLLIN) return sub;
    if (Clock::now() > deadline)
      throw std::runtime_error("slow-subscriber: no event reached the subscriber in 10 s");
  }
}

// Rounds of one kind, added up.
struct Rounds {
  uint64_t completed = 0, rejected = 0, lost = 0;
  double seconds = 0;
  LatencyRecorder latency;
  void add(const LoadResult& r) {
    completed += r.completed;
    rejected += r.rejected;
    lost += r.lost;
    seconds += r.seconds;
    latency.merge(r.latency);
  }
  Figures figures() {
    return {seconds > 0 ? static_cast<double>(completed) / seconds : 0,
            LatencySummary::of(latency)};
  }
};

}  // namespace

void runSlowSubscriber(const AbuseOptions& o, Report& report) {
  const int customers = std::max(o.quick ? 500 : 2000, 4 * o.window);
  const double seconds = o.quick ? 1 : 5;
  const int pairs = o.quick ? 2 : 3;
  zmq::context_t context(1);
  Target t = startTarget(context, o.connections, customers);
  pid_t pid = t.shopd->pid();
  std::vector<FrameSet> mix;
  for (int c = 0; c < o.connections; ++c) mix.push_back(framesOf(mixFor(c, customers)));
  LoadSpec spec{o.connections, o.window, 0, seconds, ReplyFormat::shopReply};
  std::string label = std::to_string(o.connections) + "x" + std::to_string(o.window);

  Rounds alone, slow;
  double peakMb = 0;
  int resting = t.restingFds;
  for (int pair = 0; pair < pairs; ++pair) {
    // ABBA order, so that a drift in the machine's load over the run falls
    // on both kinds alike.
    for (bool attached : pair % 2 == 0 ? std::vector{false, true} : std::vector{true, false}) {
      settleTo(pid, resting, 10);
      std::optional<zmq::socket_t> sub;
      if (attached) sub = attachSlowSubscriber(context, t);
      progress("slow-subscriber: %s, %s, %.0f s", label.c_str(),
               attached ? "a subscriber that never reads attached" : "no subscriber", seconds);
      RssPeak peak(pid);
      LoadResult r =
          runLoad(t.shopd->commands, spec, [&mix](int c) { return mix[static_cast<size_t>(c)]; });
      double roundPeak = peak.stopMb();
      (attached ? slow : alone).add(r);
      if (attached) peakMb = std::max(peakMb, roundPeak);
    }
  }
  settleTo(pid, resting, 10);
  Footprint end = footprintOf(pid);
  t.shopd->stop(report);

  Figures a = alone.figures(), b = slow.figures();
  const std::string s = "slow_subscriber";
  record(report, s, "alone_", a);
  record(report, s, "subscriber_", b);
  report.set(s, "rounds_each", pairs);
  report.set(s, "seconds", seconds);
  report.set(s, "subscriber_peak_rss_mb", peakMb);
  report.set(s, "end_rss_mb", end.rssMb);
  report.set(s, "rejected", static_cast<double>(alone.rejected + slow.rejected));
  report.set(s, "lost", static_cast<double>(alone.lost + slow.lost));
  report.ratios["slow_subscriber_throughput"] = b.throughput / a.throughput;
  report.ratios["slow_subscriber_p99"] = b.latency.p99Us / a.latency.p99Us;
  printHeader(("slow subscriber (" + label + " closed loop, " + std::to_string(pairs) +
               " interleaved rounds each; the SUB never reads, RCVHWM 1000, SO_RCVBUF 4 KiB)")
                  .c_str());
  printRow("no subscriber", a);
  printRow("one subscriber that never reads", b,
           "throughput ratio " + fixed(report.ratios["slow_subscriber_throughput"]) +
               " (target >= 0.95), p99 ratio " + fixed(report.ratios["slow_subscriber_p99"]));
  std::printf("  shopd peak RSS with the subscriber attached %.1f MB\n", peakMb);
}

}  // namespace shop::bench
