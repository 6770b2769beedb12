// Load generation over DEALER sockets, shared by the echo baseline and the
// end-to-end scenarios so that both servers are driven the same way, with the
// same frames.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "bus/access.h"
#include "tools/bench/histogram.h"

namespace shop::bench {

// The request frames one connection cycles through. Each frame holds a
// commandId at `idOffset`; the driver writes a fresh id there per send so
// that dedupe never short-cuts a request. Ids are unique across every
// runLoad() of the process: a prefix per connection per run (high 8 bytes)
// and the request index (low 8 bytes).
struct FrameSet {
  std::vector<std::vector<uint8_t>> frames;
  std::vector<size_t> idOffsets;
  bool hexIds = false;  // JSON frames: the id is written as 32 hex digits
};

// What the driver needs to know about a reply: which request it answers.
enum class ReplyFormat { echoedCommand, shopReply, jsonReply };

struct LoadSpec {
  int connections = 2;
  int window = 16;  // requests in flight per connection
  double ratePerConnection =
      0;               // requests/s, open loop; 0 = closed loop (as fast as replies allow)
  double seconds = 2;  // how long to send; ignored when requestsPerConnection > 0
  ReplyFormat format = ReplyFormat::shopReply;
  uint64_t requestsPerConnection = 0;  // > 0: send exactly this many, then stop
  // Non-null: send until *until is true (and `seconds` is ignored), so that a
  // round lasts exactly as long as something that runs beside it. Owned by
  // the caller; it must outlive runLoad().
  const std::atomic<bool>* until = nullptr;
  // Non-null: every connection uses CURVE with these keys. Owned by the caller.
  const bus::ClientCurve* curve = nullptr;
};

struct LoadResult {
  uint64_t completed = 0;
  uint64_t rejected = 0;  // shop replies that were rejections
  uint64_t lost = 0;      // sent but unanswered when a connection gave up (5 s without a reply)
  double seconds = 0;     // from the common start to the last reply of any connection
  double clientCpuSeconds = 0;  // CPU of the load threads themselves
  LatencyRecorder latency;      // from the intended send time (coordinated omission corrected)
  double throughput() const { return seconds > 0 ? static_cast<double>(completed) / seconds : 0; }
};

// Runs `spec` against `endpoint`, one thread per connection; frames(i)
// gives connection i's frames. Blocks until done. Each connection has its
// own ZeroMQ context (its own I/O thread), as a client process would: one
// shared I/O thread would couple the connections the bench compares.
LoadResult runLoad(const std::string& endpoint, const LoadSpec& spec,
                   const std::function<FrameSet(int)>& frames);

// Byte offset of `id` inside `frame` (the encoder puts it there verbatim).
size_t findId(const std::vector<uint8_t>& frame, const uint8_t* id);

}  // namespace shop::bench
