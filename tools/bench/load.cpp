#include "tools/bench/load.h"

#include <poll.h>
#include <pthread.h>
#include <time.h>

#include <capnp/serialize.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include <thread>

#include "schemas/shop.capnp.h"

namespace shop::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kRing = 1 << 16;  // intended send times by request index
// A connection that waits this long for any reply gives up on the rest.
constexpr int64_t kGiveUpNs = 5'000'000'000;

// The next commandId prefix: one per connection per runLoad(), so that no two
// requests of a process share an id (a shared id would be answered by dedupe).
std::atomic<uint64_t> nextPrefix{0xB0000000ull};

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// `value`'s 8 bytes, in memory order, as 16 hex digits (a JSON commandId's half).
void writeHex(uint8_t* out, uint64_t value) {
  static constexpr char kDigits[] = "0123456789abcdef";
  uint8_t bytes[8];
  std::memcpy(bytes, &value, 8);
  for (size_t i = 0; i < 8; ++i) {
    out[2 * i] = static_cast<uint8_t>(kDigits[bytes[i] >> 4]);
    out[2 * i + 1] = static_cast<uint8_t>(kDigits[bytes[i] & 15]);
  }
}

// The request index a reply answers: the low 8 bytes of its commandId.
// Returns false (and counts nothing) for a reply that cannot be read.
bool replyIndex(const zmq::message_t& frame, ReplyFormat format, uint64_t& index, bool& rejected) {
  if (format == ReplyFormat::jsonReply) {
    // {"commandId":"<32 hex digits>",...: the index is the last 16 digits.
    std::string_view text(frame.data<char>(), frame.size());
    constexpr std::string_view kStart = R"({"commandId":")";
    if (!text.starts_with(kStart) || text.size() < kStart.size() + 32) return false;
    uint8_t bytes[8];
    for (size_t i = 0; i < 8; ++i) {
      auto digit = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
      size_t at = kStart.size() + 16 + 2 * i;
      bytes[i] = static_cast<uint8_t>(digit(text[at]) << 4 | digit(text[at + 1]));
    }
    std::memcpy(&index, bytes, 8);
    rejected = text.find(R"("rejected":)") != std::string_view::npos ||
               text.find(R"("malformed":)") != std::string_view::npos;
    return true;
  }
  if (frame.size() % 8 != 0) return false;
  try {
    kj::ArrayPtr<const capnp::word> words(static_cast<const capnp::word*>(frame.data()),
                                          frame.size() / 8);
    kj::Array<capnp::word> copy;
    if (reinterpret_cast<uintptr_t>(frame.data()) % 8 != 0) {
      copy = kj::heapArray<capnp::word>(words.size());
      std::memcpy(copy.begin(), frame.data(), frame.size());
      words = copy;
    }
    capnp::FlatArrayMessageReader reader(words);
    capnp::Data::Reader id;
    if (format == ReplyFormat::echoedCommand) {
      id = reader.getRoot<wire::Command>().getCommandId();
      rejected = false;
    } else {
      auto reply = reader.getRoot<wire::Reply>();
      id = reply.getCommandId();
      rejected = reply.isRejected() || reply.isMalformed();
    }
    if (id.size() != 16) return false;
    std::memcpy(&index, id.begin() + 8, 8);
    return true;
  } catch (const kj::Exception&) {
    return false;
  }
}

struct ConnectionResult {
  uint64_t completed = 0;
  uint64_t rejected = 0;
  uint64_t lost = 0;
  int64_t lastReplyNs = 0;
  double cpuSeconds = 0;
  LatencyRecorder latency;
};

// The common start: set once every connection is connected (a barrier's
// completion), so that a thread that was slow to start or connect does not
// count its own lateness as the server's latency.
struct StartLine {
  explicit StartLine(int connections) : ready(connections, Completion{this}) {}
  struct Completion {
    StartLine* line;
    void operator()() noexcept { line->startNs.store(nowNs() + 2'000'000); }
  };
  std::atomic<int64_t> startNs{0};
  std::barrier<Completion> ready;
};

void drive(const std::string& endpoint, const LoadSpec& spec, FrameSet frames, int connection,
           uint64_t prefix, StartLine& line, ConnectionResult& out) {
  pthread_setname_np(pthread_self(), ("bench-load-" + std::to_string(connection)).c_str());
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::sndhwm, 0);
  socket.set(zmq::sockopt::rcvhwm, 0);
  if (spec.curve) bus::secureClient(socket, *spec.curve);
  socket.connect(endpoint);
  int fd = socket.get(zmq::sockopt::fd);

  std::vector<int64_t> intended(kRing, 0);
  line.ready.arrive_and_wait();
  int64_t startNs = line.startNs.load();
  Clock::time_point start{std::chrono::nanoseconds(startNs)};
  bool counted = spec.requestsPerConnection > 0;
  int64_t endNs =
      counted || spec.until ? INT64_MAX : startNs + static_cast<int64_t>(spec.seconds * 1e9);
  uint64_t limit = counted ? spec.requestsPerConnection : UINT64_MAX;
  double intervalNs = spec.ratePerConnection > 0 ? 1e9 / spec.ratePerConnection : 0;
  uint64_t sent = 0, done = 0;
  size_t next = 0;

  std::this_thread::sleep_until(start);  // all connections begin together
  int64_t lastProgressNs = nowNs();
  for (;;) {
    int64_t now = nowNs();
    if (spec.until && endNs == INT64_MAX && spec.until->load(std::memory_order_acquire)) {
      endNs = now;
    }
    // Send what is due and fits in the window.
    while (now < endNs && sent < limit && sent - done < static_cast<uint64_t>(spec.window)) {
      int64_t due = intervalNs > 0
                        ? startNs + static_cast<int64_t>(static_cast<double>(sent) * intervalNs)
                        : now;
      if (due > now) break;
      auto& frame = frames.frames[next];
      size_t at = frames.idOffsets[next];
      if (frames.hexIds) {
        writeHex(frame.data() + at, prefix);
        writeHex(frame.data() + at + 16, sent);
      } else {
        std::memcpy(frame.data() + at, &prefix, 8);
        std::memcpy(frame.data() + at + 8, &sent, 8);
      }
      intended[sent % kRing] = due;
      socket.send(zmq::buffer(frame), zmq::send_flags::none);
      ++sent;
      next = (next + 1) % frames.frames.size();
    }
    // Receive every reply that is here.
    zmq::message_t reply;
    while (socket.recv(reply, zmq::recv_flags::dontwait)) {
      uint64_t index;
      bool rejected;
      if (!replyIndex(reply, spec.format, index, rejected)) continue;
      now = nowNs();
      out.latency.record(now - intended[index % kRing]);
      out.rejected += rejected ? 1 : 0;
      out.lastReplyNs = now;
      lastProgressNs = now;
      ++done;
    }
    now = nowNs();
    bool sending = now < endNs && sent < limit;
    if (!sending && done == sent) break;
    if (done < sent && now - lastProgressNs > kGiveUpNs) {  // replies lost: stop anyway
      out.lost = sent - done;
      break;
    }
    // Closed loop with room in the window: send again at once (sleeping here
    // would add up to the 1 ms below to every round trip at a small window).
    bool room = sending && sent - done < static_cast<uint64_t>(spec.window);
    if (room && intervalNs == 0) continue;
    // Block until a reply may be readable or the next send is due. ZMQ_FD is
    // edge-triggered, so check ZMQ_EVENTS before sleeping on it; the 1 ms
    // bound is only a safety net.
    if (socket.get(zmq::sockopt::events) & ZMQ_POLLIN) continue;
    int64_t waitNs = 1'000'000;
    if (room) {
      waitNs = std::max<int64_t>(
          0, startNs + static_cast<int64_t>(static_cast<double>(sent) * intervalNs) - now);
    }
    timespec ts{static_cast<time_t>(waitNs / 1'000'000'000),
                static_cast<long>(waitNs % 1'000'000'000)};
    pollfd p{fd, POLLIN, 0};
    ::ppoll(&p, 1, &ts, nullptr);
  }
  out.completed = done;
  timespec cpu{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
  out.cpuSeconds = static_cast<double>(cpu.tv_sec) + static_cast<double>(cpu.tv_nsec) / 1e9;
}

}  // namespace

size_t findId(const std::vector<uint8_t>& frame, const uint8_t* id) {
  for (size_t i = 0; i + 16 <= frame.size(); ++i) {
    if (std::memcmp(frame.data() + i, id, 16) == 0) return i;
  }
  throw std::logic_error("commandId not found in its frame");
}

LoadResult runLoad(const std::string& endpoint, const LoadSpec& spec,
                   const std::function<FrameSet(int)>& frames) {
  std::vector<ConnectionResult> results(static_cast<size_t>(spec.connections));
  std::vector<FrameSet> sets;
  for (int i = 0; i < spec.connections; ++i) sets.push_back(frames(i));
  StartLine line(spec.connections);
  std::vector<std::thread> threads;
  for (int i = 0; i < spec.connections; ++i) {
    threads.emplace_back(drive, std::cref(endpoint), std::cref(spec),
                         std::move(sets[static_cast<size_t>(i)]), i, nextPrefix++, std::ref(line),
                         std::ref(results[static_cast<size_t>(i)]));
  }
  for (auto& t : threads) t.join();
  LoadResult total;
  int64_t startNs = line.startNs.load();
  int64_t lastNs = startNs;
  for (auto& r : results) {
    total.completed += r.completed;
    total.rejected += r.rejected;
    total.lost += r.lost;
    total.clientCpuSeconds += r.cpuSeconds;
    total.latency.merge(r.latency);
    lastNs = std::max(lastNs, r.lastReplyNs);
  }
  total.seconds = static_cast<double>(lastNs - startNs) / 1e9;
  return total;
}

}  // namespace shop::bench
