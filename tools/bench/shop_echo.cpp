// shop-echo: the baseline server for shop-bench. The same process layout as
// shopd (one ZeroMQ context with one I/O thread, one ROUTER socket read by
// the main thread in zmq_poll, a signalfd in the poll set to stop), but each
// request is sent back as it came instead of going through the engine.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include <concurrentqueue/blockingconcurrentqueue.h>
#include <concurrentqueue/concurrentqueue.h>
#include <zmq.hpp>

#include "core/log.h"
#include "core/wakeup.h"
#include "tools/cli.h"

namespace {

constexpr const char* kAbout = R"(shop-echo: the baseline server for shop-bench.

A ZeroMQ ROUTER socket that sends every request back unchanged (all frames,
identity first). It has shopd's layout: one ZeroMQ context with one I/O
thread, and the main thread reading the ROUTER in zmq_poll, in batches of up
to 256 requests, with the ZeroMQ default high-water marks, as shopd's
command socket has.

With --hop, each request also makes shopd's round trip through a second
thread before it is sent back: staged and handed over in bulk once per turn
(a moodycamel BlockingConcurrentQueue), returned through a ConcurrentQueue
and an eventfd written only while the socket thread sleeps, in shopd's loop
(busy turns skip zmq_poll). It is shopd with nothing to decide: the cost of
the single-writer hand-off alone.)";

// shopd's values (bus/server.cpp): requests read per turn, and the size over
// which a peer is disconnected.
constexpr int kReadBatch = 256;
constexpr int64_t kMaxMessageBytes = 1024 * 1024;
constexpr int kLingerMs = 1000;

// Log lines in shopd's format, "<UTC time> shop-echo: <message>".
template <typename... Args>
void logLine(const char* format, Args... args) {
  shop::logLine("shop-echo", format, args...);
}

// Sends back every message waiting on the ROUTER, up to kReadBatch, without
// blocking. Returns how many were echoed.
uint64_t echoBatch(zmq::socket_t& router, std::vector<zmq::message_t>& frames) {
  uint64_t echoed = 0;
  for (int i = 0; i < kReadBatch; ++i) {
    frames.clear();
    zmq::message_t frame;
    if (!router.recv(frame, zmq::recv_flags::dontwait)) break;
    frames.push_back(std::move(frame));
    while (frames.back().more()) {
      zmq::message_t part;
      // The rest of a multipart message is already here: ZeroMQ delivers it whole.
      (void)router.recv(part, zmq::recv_flags::none);
      frames.push_back(std::move(part));
    }
    // ROUTER drops a message to a peer that has gone; nothing to do then.
    for (size_t k = 0; k < frames.size(); ++k) {
      router.send(frames[k],
                  k + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
    ++echoed;
  }
  return echoed;
}

// A request on its way through the worker thread and back.
struct Hop {
  zmq::message_t identity;
  zmq::message_t body;
};

// GCC 12 reports a false -Wstringop-overflow inside moodycamel's bulk enqueue
// (as in core/shard.cpp); GCC 13 does not.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overflow"
// The worker: shopd's shard minus the deciding. Owned by its thread; the
// socket thread is the only producer of `inbox`, the worker the only
// producer of `outbox`.
class Worker {
 public:
  Worker(moodycamel::ConcurrentQueue<Hop>& outbox, shop::Wakeup& wakeup)
      : outbox_(outbox), wakeup_(wakeup), thread_([this] { run(); }) {}
  ~Worker() {
    stop_.store(true);
    inbox_.enqueue(Hop{});
    thread_.join();
  }
  // Producer side: the socket thread only.
  void submitBulk(std::vector<Hop>& hops) {
    inbox_.enqueue_bulk(std::make_move_iterator(hops.begin()), hops.size());
    hops.clear();
  }

 private:
  void run() {
    pthread_setname_np(pthread_self(), "shop-echo-hop");
    moodycamel::ConsumerToken token(inbox_);
    moodycamel::ProducerToken out(outbox_);
    Hop batch[64];
    while (!stop_.load()) {
      size_t n = inbox_.wait_dequeue_bulk(token, batch, 64);
      size_t real = 0;
      for (size_t i = 0; i < n; ++i) {
        if (batch[i].body.size() != 0) batch[real++] = std::move(batch[i]);
      }
      outbox_.enqueue_bulk(out, std::make_move_iterator(batch), real);
      wakeup_.notifyIfArmed();
    }
  }
  moodycamel::ConcurrentQueue<Hop>& outbox_;
  shop::Wakeup& wakeup_;
  // No spinning before sleeping, as shopd's shard inbox (core/shard.h).
  struct Traits : moodycamel::ConcurrentQueueDefaultTraits {
    static const int MAX_SEMA_SPINS = 0;
  };
  moodycamel::BlockingConcurrentQueue<Hop, Traits> inbox_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

#pragma GCC diagnostic pop

// shopd's loop around the worker: outcomes, then a batch of requests, then
// the hand-off; zmq_poll only to sleep or every 64 busy turns. Returns the
// requests echoed.
uint64_t serveWithHop(zmq::socket_t& router, int signalFd) {
  moodycamel::ConcurrentQueue<Hop> outbox;
  shop::Wakeup wakeup;
  Worker worker(outbox, wakeup);
  moodycamel::ConsumerToken outToken(outbox);
  std::vector<Hop> staged, drained(256);
  uint64_t echoed = 0, inFlight = 0, busyTurns = 0;
  zmq::pollitem_t items[] = {
      {router.handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, wakeup.fd(), ZMQ_POLLIN, 0},
      {nullptr, signalFd, ZMQ_POLLIN, 0},
  };
  auto turn = [&] {
    size_t outcomes = 0;
    while (size_t n = outbox.try_dequeue_bulk(outToken, drained.begin(), drained.size())) {
      for (size_t i = 0; i < n; ++i) {
        router.send(drained[i].identity, zmq::send_flags::sndmore);
        router.send(drained[i].body, zmq::send_flags::none);
        drained[i] = Hop{};
      }
      outcomes += n;
    }
    size_t requests = 0;
    for (; requests < kReadBatch; ++requests) {
      Hop hop;
      if (!router.recv(hop.identity, zmq::recv_flags::dontwait)) break;
      (void)router.recv(hop.body, zmq::recv_flags::none);  // DEALER: [identity, body]
      while (hop.body.more()) {
        zmq::message_t rest;  // not a DEALER request: drop the extra frames
        (void)router.recv(rest, zmq::recv_flags::none);
      }
      staged.push_back(std::move(hop));
    }
    if (!staged.empty()) worker.submitBulk(staged);
    echoed += outcomes;
    inFlight += requests;
    inFlight -= outcomes;
    return outcomes + requests;
  };
  for (;;) {
    bool busy = turn() > 0;
    if (busy && ++busyTurns % 64 != 0) continue;
    bool sleep = false;
    if (!busy) {
      wakeup.arm();
      sleep = outbox.size_approx() == 0;
      if (!sleep) wakeup.disarm();
    }
    zmq::poll(items, 3, std::chrono::milliseconds(sleep ? -1 : 0));
    if (sleep) {
      wakeup.disarm();
      if (items[1].revents & ZMQ_POLLIN) wakeup.clear();
    }
    if (items[2].revents & ZMQ_POLLIN) break;
  }
  while (inFlight > 0) {  // answer what was sent, as shopd does
    if (turn() > 0) continue;
    wakeup.arm();
    bool readable = outbox.size_approx() == 0 && wakeup.wait(-1);
    wakeup.disarm();
    if (readable) wakeup.clear();
  }
  return echoed;
}

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint = "tcp://127.0.0.1:5555";
  bool hop = false;
  CLI::App app{kAbout, "shop-echo"};
  app.set_version_flag("--version", std::string("shop-echo ") + SHOP_VERSION);
  app.footer(
      "On start it logs \"serving commands on ENDPOINT (...)\" on stderr, with the port\n"
      "actually bound. Stops on SIGINT or SIGTERM and exits 0.");
  app.add_option("--commands", endpoint, "ROUTER endpoint; tcp://127.0.0.1:* picks a port")
      ->type_name("ENDPOINT")
      ->capture_default_str();
  app.add_flag("--hop", hop, "pass every request through a worker thread, as shopd's shard");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::string hint = shop::cli::didYouMean(app, argc, argv);
    std::fprintf(stderr, "shop-echo: %s%s (see shop-echo --help)\n", e.what(),
                 hint.empty() ? "" : ("; " + hint).c_str());
    return 2;
  }

  // As in shopd: signals become a readable fd in the poll set. Blocked before
  // the ZeroMQ threads start, so they inherit the mask.
  int signalFd = shop::cli::signalFdFor({SIGINT, SIGTERM});
  if (signalFd < 0) {
    std::perror("shop-echo: signalfd");
    return 1;
  }

  uint64_t echoed = 0;
  try {
    zmq::context_t context(1);  // one I/O thread, as shopd
    zmq::socket_t router(context, zmq::socket_type::router);
    // shopd's ROUTER options; the high-water marks stay at ZeroMQ's defaults there too.
    router.set(zmq::sockopt::linger, kLingerMs);
    router.set(zmq::sockopt::maxmsgsize, kMaxMessageBytes);
    router.bind(endpoint);
    std::string bound = router.get(zmq::sockopt::last_endpoint);
    logLine("serving commands on %s (echo%s, 1 I/O thread, hwm %d/%d)", bound.c_str(),
            hop ? " through a worker thread" : "", router.get(zmq::sockopt::sndhwm),
            router.get(zmq::sockopt::rcvhwm));
    if (hop) {
      echoed = serveWithHop(router, signalFd);
      logLine("stopped after %llu requests", static_cast<unsigned long long>(echoed));
      return 0;
    }

    zmq::pollitem_t items[] = {
        {router.handle(), 0, ZMQ_POLLIN, 0},
        {nullptr, signalFd, ZMQ_POLLIN, 0},
    };
    std::vector<zmq::message_t> frames;
    for (;;) {
      zmq::poll(items, 2, std::chrono::milliseconds(-1));
      if (items[1].revents & ZMQ_POLLIN) break;
      if (items[0].revents & ZMQ_POLLIN) echoed += echoBatch(router, frames);
    }
    // What clients already sent is answered, as shopd does.
    while (uint64_t n = echoBatch(router, frames)) echoed += n;
    signalfd_siginfo info{};
    if (::read(signalFd, &info, sizeof info) == sizeof info) {
      logLine("stopped by %s after %llu requests", strsignal(static_cast<int>(info.ssi_signo)),
              static_cast<unsigned long long>(echoed));
    }
  } catch (const zmq::error_t& e) {
    logLine("cannot serve: %s", e.what());
    return 1;
  }
  return 0;
}
