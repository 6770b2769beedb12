#include "relay/relay.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>

#include "bus/codec.h"
#include "bus/subscriber.h"
#include "core/log.h"

namespace shop::relay {

using json = nlohmann::json;

namespace {
// Thrown out of a delivery that waits for room when a stop is asked for.
struct Stopping {};
}  // namespace

Relay::Relay(Config config)
    : config_(std::move(config)), control_(context_, zmq::socket_type::rep) {
  for (const auto& d : config_.destinations) {
    destinations_.push_back(std::make_unique<DestinationRunner>(d, config_.stateDir));
  }
  control_.set(zmq::sockopt::linger, 0);
  control_.set(zmq::sockopt::rcvtimeo, 200);
  try {
    control_.bind(config_.control);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot bind the control socket " + config_.control + ": " + e.what());
  }
  controlEndpoint_ = control_.get(zmq::sockopt::last_endpoint);
  controlThread_ = std::thread([this] { serveControl(); });
}

Relay::~Relay() {
  controlStop_ = true;
  if (controlThread_.joinable()) controlThread_.join();
  for (auto& d : destinations_) d->stop();
}

void Relay::serveControl() {
  while (!controlStop_.load()) {
    zmq::message_t request;
    try {
      if (!control_.recv(request, zmq::recv_flags::none)) continue;  // the 200 ms timeout
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      logLine("relay", "the control socket failed: %s", e.what());
      return;
    }
    // A request of several frames: the rest is read (REP must, before it
    // answers) and the request refused.
    bool multipart = control_.get(zmq::sockopt::rcvmore);
    while (control_.get(zmq::sockopt::rcvmore)) {
      zmq::message_t rest;
      if (!control_.recv(rest, zmq::recv_flags::none)) break;
    }
    json answer;
    try {
      if (multipart) throw std::runtime_error("one frame per request");
      answer = handle(json::parse(request.to_string()));
    } catch (const std::exception& e) {
      answer = {{"error", std::string("bad request: ") + e.what()}};
    }
    std::string text = answer.dump(-1, ' ', false, json::error_handler_t::replace);
    for (;;) {
      try {
        control_.send(zmq::buffer(text), zmq::send_flags::none);
        break;
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        logLine("relay", "the control socket failed: %s", e.what());
        return;
      }
    }
  }
}

json Relay::handle(const json& request) {
  auto find = [&](const json& args) -> DestinationRunner* {
    std::string name = args.at("destination").get<std::string>();
    for (auto& d : destinations_) {
      if (d->config().name == name) return d.get();
    }
    return nullptr;
  };
  if (request.contains("status")) {
    json out = json::array();
    for (const auto& d : destinations_) out.push_back(d->status());
    return {{"serverId", serverIdHex(serverId_.load())},
            {"head", head_.load()},
            {"destinations", std::move(out)}};
  }
  if (request.contains("parked")) {
    DestinationRunner* d = find(request["parked"]);
    if (!d) return {{"error", "no destination named so"}};
    return {{"parked", d->parked()}};
  }
  if (request.contains("replay")) {
    DestinationRunner* d = find(request["replay"]);
    if (!d) return {{"error", "no destination named so"}};
    // A key (SERVERID-SEQ) or a seq, as a string or a number.
    const json& id =
        request["replay"].contains("id") ? request["replay"]["id"] : request["replay"].at("seq");
    try {
      return {{"replaying",
               d->redrive(id.is_string() ? id.get<std::string>() : std::to_string(id.get<Seq>()))}};
    } catch (const std::runtime_error& e) {
      return {{"error", e.what()}};
    }
  }
  return {{"error", "unknown request: status, parked or replay"}};
}

void Relay::run(const std::atomic<bool>& stop) {
  bus::SubscriberOptions options;
  options.client.timeoutMs = 2000;
  options.client.retries = 2;
  options.client.curve = config_.curve;
  // After the oldest checkpoint; a destination without one (new in the
  // config) starts there too. With no checkpoint at all, or with checkpoints
  // of different streams (shopd restarted without its journal while a
  // destination's checkpoint still named the old one), from seq 1: each
  // destination skips what it did (deliver, below).
  std::optional<Checkpoint> oldest;
  bool oneStream = true;
  for (const auto& d : destinations_) {
    auto cp = d->initialCheckpoint();
    if (!cp) continue;
    if (oldest && cp->serverId != oldest->serverId) oneStream = false;
    if (!oldest || cp->seq < oldest->seq) oldest = cp;
  }
  if (oldest && oneStream) {
    options.from = oldest->seq + 1;
    options.serverId = oldest->serverId;
  }
  if (!oneStream) {
    logLine("relay",
            "the destinations' checkpoints name different streams of shopd: reading "
            "from the oldest event, each destination skipping what it did");
  }
  options.onReset = [this, &stop](const bus::StreamReset& reset) {
    // shopd restarted without its journal: its seqs begin again. What was
    // queued from the old stream is delivered first, with its own keys.
    logLine("relay", "shopd's stream was reset (%s); following the new one from seq %llu",
            reset.reason.c_str(), static_cast<unsigned long long>(reset.from));
    for (auto& d : destinations_) {
      while (!d->waitIdle(std::chrono::milliseconds(100))) {
        if (stop.load()) throw Stopping{};
      }
    }
  };
  options.onSkipped = [](Seq seq, const std::string& why) {
    logLine("relay", "event %llu cannot be decoded (a newer shopd?), not delivered: %s",
            static_cast<unsigned long long>(seq), why.c_str());
  };
  // Whether starting at `oldest` (shopd's oldest retained event, when the
  // start point has left its retention) loses nothing a destination's
  // checkpoint on that stream still waits for. A destination without a
  // checkpoint, or with one of another stream, starts at the oldest
  // retained event: what is older cannot be had.
  auto canStartAt = [&](Seq oldestRetained, uint64_t serverId) {
    for (const auto& d : destinations_) {
      auto cp = d->initialCheckpoint();
      if (cp && cp->serverId == serverId && cp->seq + 1 < oldestRetained) return false;
    }
    return true;
  };
  auto subscriber =
      std::make_unique<bus::CatchUpSubscriber>(context_, config_.events, config_.commands, options);
  capnp::JsonCodec codec;
  codec.handleByAnnotation<wire::Event>();
  logLine("relay", "following %s from seq %llu for %zu destinations%s; control on %s",
          config_.events.c_str(), static_cast<unsigned long long>(options.from),
          destinations_.size(), config_.curve.on() ? " over CURVE" : "", controlEndpoint_.c_str());

  auto deliver = [&](Event&& event) {
    uint64_t serverId = subscriber->serverId();
    serverId_ = serverId;
    head_ = event.seq;
    std::string body;
    for (auto& d : destinations_) {
      auto cp = d->initialCheckpoint();
      if (cp && cp->serverId == serverId && event.seq <= cp->seq) continue;  // done before
      if (!d->selects(event)) {
        d->seen(serverId, event.seq);
        continue;
      }
      if (body.empty()) {
        capnp::MallocMessageBuilder message(256);
        auto root = message.initRoot<wire::Event>();
        bus::toWire(event, root);
        body = codec.encode(root.asReader()).cStr();
      }
      // Back-pressure inside a catch-up too: one poll may read far ahead.
      while (!d->waitForRoom(std::chrono::milliseconds(100))) {
        if (stop.load()) throw Stopping{};
      }
      d->offer(Message{event.seq, serverId, std::string(eventName(event.body)), body});
    }
  };
  while (!stop.load()) {
    // Back-pressure: a destination whose queue is full holds the stream
    // still; the subscriber catches up from shopd afterwards.
    bool room = true;
    for (auto& d : destinations_) {
      if (!d->waitForRoom(std::chrono::milliseconds(100))) room = false;
    }
    if (!room) continue;
    try {
      subscriber->poll(200, deliver);
    } catch (const Stopping&) {
      break;
    } catch (const bus::TruncatedError& e) {
      if (head_.load() == 0 && canStartAt(e.oldest, subscriber->serverId())) {
        logLine("relay", "starting at seq %llu, the oldest shopd retains",
                static_cast<unsigned long long>(e.oldest));
        options.from = e.oldest;
        options.serverId = subscriber->serverId();
        subscriber = std::make_unique<bus::CatchUpSubscriber>(context_, config_.events,
                                                              config_.commands, options);
        continue;
      }
      throw StreamTruncated(std::string(e.what()) + ": events " + std::to_string(e.wanted) +
                            " to " + std::to_string(e.oldest - 1) +
                            " left shopd's retention before the relay read them, and can never "
                            "be delivered (run shopd with --journal to keep them)");
    } catch (const std::runtime_error& e) {
      // shopd unreachable for a while: say so, and keep trying.
      logLine("relay", "%s; trying again", e.what());
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;  // a signal: the loop looks at `stop`
    }
  }
  for (auto& d : destinations_) d->stop();
}

}  // namespace shop::relay
