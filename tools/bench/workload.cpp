#include "tools/bench/workload.h"

#include <capnp/message.h>

#include <cstdio>
#include <stdexcept>
#include <string_view>

#include "bus/client.h"
#include "bus/codec.h"
#include "bus/json.h"

namespace shop::bench {

std::string customerName(int connection, int i) {
  char name[32];
  std::snprintf(name, sizeof name, "cust%02d-%06d", connection % 100, i % 1'000'000);
  return name;
}

std::string productName(int k) {
  return "bp" + std::to_string(k);
}

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

std::vector<Command> depositsFor(int connection, int customers) {
  std::vector<Command> out;
  for (int i = 0; i < customers; ++i)
    out.push_back({CommandId::random(), Deposit{customerName(connection, i), 1}});
  return out;
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

FrameSet jsonFramesOf(const std::vector<Command>& commands) {
  FrameSet set;
  set.hexIds = true;
  bus::JsonWire wire;
  for (const auto& c : commands) {
    std::string text = wire.commandText(c);
    constexpr std::string_view kStart = R"({"commandId":")";
    if (!text.starts_with(kStart)) throw std::logic_error("a JSON command starts with its id");
    set.idOffsets.push_back(kStart.size());
    set.frames.emplace_back(text.begin(), text.end());
  }
  return set;
}

void seedShop(zmq::context_t& context, const std::string& commands, int connections, int customers,
              const bus::ClientCurve& curve) {
  bus::Client client(context, commands, {.timeoutMs = 10'000, .retries = 0, .curve = curve});
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
  if (failed)
    throw std::runtime_error("seeding the shop failed for " + std::to_string(failed) + " commands");
}

LoadSpec quietSpec(double seconds) {
  return LoadSpec{1, 4, kQuietRate, seconds, ReplyFormat::shopReply};
}

std::function<FrameSet(int)> depositsTo(const std::string& customer) {
  return [customer](int) { return framesOf({Command{CommandId::random(), Deposit{customer, 1}}}); };
}

QuietClient::QuietClient(const std::string& endpoint)
    : thread_([this, endpoint] {
        LoadSpec spec = quietSpec(0);
        spec.until = &stop_;
        result_ = runLoad(endpoint, spec, depositsTo("quiet"));
      }) {}

LoadResult& QuietClient::stop() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
  return result_;
}

Figures measure(const std::string& endpoint, const LoadSpec& spec,
                const std::function<FrameSet(int)>& frames, LoadResult* raw) {
  LoadResult r = runLoad(endpoint, spec, frames);
  Figures f{r.throughput(), LatencySummary::of(r.latency)};
  if (raw) *raw = std::move(r);
  return f;
}

}  // namespace shop::bench
