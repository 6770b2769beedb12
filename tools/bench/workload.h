// The commands the bench sends: the customers and products it seeds, the
// mix the load driver cycles through, and their frames.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "core/domain.h"
#include "tools/bench/load.h"
#include "tools/bench/report.h"

namespace shop::bench {

constexpr int kProducts = 16;
constexpr int64_t kBigBalance = 1'000'000'000'000;

// 13 bytes, the id length the performance targets are stated for.
std::string customerName(int connection, int i);
std::string productName(int k);

// Per customer, in order: buy, buy, return one, deposit. With many more
// customers than requests in flight, each customer has at most one pending,
// so every return has a unit to give back: the mix is all accepted.
std::vector<Command> mixFor(int connection, int customers);
// One deposit per customer of a connection: the fill's commands, all accepted.
std::vector<Command> depositsFor(int connection, int customers);
FrameSet framesOf(const std::vector<Command>& commands);
// The same commands as JSON frames (bus/json.h), for the JSON path's figures.
FrameSet jsonFramesOf(const std::vector<Command>& commands);

// Creates the products and every connection's customers, 64 at a time.
// `curve`: the keys of an admin client, for a shopd with CURVE on.
void seedShop(zmq::context_t& context, const std::string& commands, int connections, int customers,
              const bus::ClientCurve& curve = {});

// The quiet client: one connection paced at kQuietRate deposits/s to one
// customer, 4 in flight. Its p99 is what an ordinary client sees; scenarios
// compare it alone with it beside a client that misbehaves.
constexpr double kQuietRate = 2000;
LoadSpec quietSpec(double seconds);
// Frames for runLoad(): every connection sends deposits of 1 to `customer`.
std::function<FrameSet(int)> depositsTo(const std::string& customer);

// Owned by the thread that constructs it, which alone calls stop(). The
// quiet client, depositing to customer "quiet", on a thread of its own from
// construction until stop(): it measures exactly as long as whatever runs
// beside it.
class QuietClient {
 public:
  explicit QuietClient(const std::string& endpoint);
  ~QuietClient() { stop(); }
  QuietClient(const QuietClient&) = delete;
  QuietClient& operator=(const QuietClient&) = delete;

  // Stops sending and returns what it measured, once its replies are in.
  // Idempotent.
  LoadResult& stop();

 private:
  std::atomic<bool> stop_{false};
  LoadResult result_;  // written by thread_ until it is joined
  std::thread thread_;
};

// runLoad(), summarised; `raw` gets the whole result when given.
Figures measure(const std::string& endpoint, const LoadSpec& spec,
                const std::function<FrameSet(int)>& frames, LoadResult* raw = nullptr);

}  // namespace shop::bench
