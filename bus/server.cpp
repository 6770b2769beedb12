#include "bus/server.h"

#include <capnp/message.h>

#include "bus/codec.h"
#include "bus/topic.h"
#include "core/log.h"

namespace shop::bus {
namespace {

// Requests read per turn before the loop looks at shard outcomes again, so
// that a flood of requests cannot starve replies.
constexpr int kReadBatch = 256;
// Malformed requests are logged in full up to this count, then sampled.
constexpr uint64_t kMalformedLogged = 20;

constexpr uint64_t kLocalTag = 0;  // commands submitted by the server itself

std::string lastEndpoint(zmq::socket_t& socket) {
  return socket.get(zmq::sockopt::last_endpoint);
}

}  // namespace

Server::Server(zmq::context_t& context, const ServerConfig& config)
    : config_(config),
      router_(context, zmq::socket_type::router),
      pub_(context, zmq::socket_type::pub),
      engine_(config.engine, *this) {
  router_.set(zmq::sockopt::linger, config_.lingerMs);
  router_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kDisconnectFrameBytes));
  pub_.set(zmq::sockopt::linger, config_.lingerMs);
  pub_.set(zmq::sockopt::sndhwm, config_.eventsSendHwm);
  if (config_.eventsSendBuffer > 0) pub_.set(zmq::sockopt::sndbuf, config_.eventsSendBuffer);
  router_.bind(config_.commandsEndpoint);
  pub_.bind(config_.eventsEndpoint);
  commandsEndpoint_ = lastEndpoint(router_);
  eventsEndpoint_ = lastEndpoint(pub_);
}

Server::~Server() = default;

void Server::requestStop() {
  stopRequested_.store(true, std::memory_order_release);
  control_.notify();
}

void Server::post(std::function<void(Engine&)> fn) {
  posted_.enqueue(std::move(fn));
  control_.notify();
}

void Server::runPosted() {
  std::function<void(Engine&)> fn;
  while (posted_.try_dequeue(fn)) fn(engine_);
}

void Server::submitLocal(Command command) { engine_.submit(std::move(command), kLocalTag); }

void Server::run() {
  logLine("shopd", "serving commands on %s, events on %s (%u shards, max %u pending per customer)",
          commandsEndpoint_.c_str(), eventsEndpoint_.c_str(), engine_.config().shards,
          engine_.config().maxPending);
  std::vector<zmq::pollitem_t> items = {
      {router_.handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, engine_.wakeFd(), ZMQ_POLLIN, 0},
      {nullptr, control_.fd(), ZMQ_POLLIN, 0},
  };
  if (config_.stopFd >= 0) items.push_back({nullptr, config_.stopFd, ZMQ_POLLIN, 0});

  for (;;) {
    bool sleep = engine_.prepareToSleep();
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds(sleep ? -1 : 0));
    engine_.wokeUp(items[1].revents & ZMQ_POLLIN);
    if (items[2].revents & ZMQ_POLLIN) {
      control_.clear();
      runPosted();
    }
    if (stopRequested_.load(std::memory_order_acquire) ||
        (items.size() > 3 && (items[3].revents & ZMQ_POLLIN))) {
      break;
    }
    engine_.poll();
    if (items[0].revents & ZMQ_POLLIN) readRequests();
  }

  // Shutdown: what clients already sent is answered; then nothing is in flight.
  logLine("shopd", "stopping: answering %zu in flight", engine_.inFlight());
  readRequests();
  engine_.drain();
  runPosted();
  logLine("shopd", "stopped after %llu requests (%llu malformed), %llu events, head seq %llu",
          static_cast<unsigned long long>(stats_.requests),
          static_cast<unsigned long long>(stats_.malformed),
          static_cast<unsigned long long>(stats_.events),
          static_cast<unsigned long long>(engine_.log().headSeq()));
}

void Server::readRequests() {
  std::vector<zmq::message_t> frames;
  for (int i = 0; i < kReadBatch; ++i) {
    frames.clear();
    zmq::message_t frame;
    if (!router_.recv(frame, zmq::recv_flags::dontwait)) return;
    frames.push_back(std::move(frame));
    while (frames.back().more()) {
      zmq::message_t part;
      // The rest of a multipart message is already here: ZeroMQ delivers it whole.
      (void)router_.recv(part, zmq::recv_flags::none);
      frames.push_back(std::move(part));
    }
    handleRequest(frames);
  }
}

void Server::handleRequest(std::vector<zmq::message_t>& frames) {
  ++stats_.requests;
  Route route{std::move(frames[0]), false};
  // DEALER: [identity, body]. REQ: [identity, empty, body].
  size_t bodyIndex = 1;
  if (frames.size() >= 2 && frames[1].size() == 0) {
    route.reqEnvelope = true;
    bodyIndex = 2;
  }
  if (frames.size() != bodyIndex + 1) {
    sendMalformed(route, CommandId{},
                  "expected one body frame (DEALER) or an empty delimiter and one body frame "
                  "(REQ), got " + std::to_string(frames.size() - 1) + " frames");
    return;
  }
  DecodedCommand decoded = decodeCommandFrame(frames[bodyIndex]);
  if (!decoded.command) {
    sendMalformed(route, decoded.id, decoded.malformed);
    return;
  }
  uint64_t tag = nextTag_++;
  routes_.emplace(tag, std::move(route));
  engine_.submit(std::move(*decoded.command), tag);
}

void Server::sendMalformed(Route& route, const CommandId& id, const std::string& why) {
  ++stats_.malformed;
  if (stats_.malformed <= kMalformedLogged || stats_.malformed % 1000 == 0) {
    logLine("shopd", "malformed request #%llu: %s", static_cast<unsigned long long>(stats_.malformed),
            why.c_str());
  }
  capnp::MallocMessageBuilder message(64);
  auto reply = message.initRoot<wire::Reply>();
  reply.setCommandId(kj::arrayPtr(id.bytes.data(), id.bytes.size()));
  reply.setMalformed(why);
  send(route, toFrame(message));
}

void Server::send(Route& route, zmq::message_t body) {
  ++stats_.replies;
  // ROUTER drops a reply to a peer that has gone; nothing to do then.
  router_.send(route.identity, zmq::send_flags::sndmore);
  if (route.reqEnvelope) router_.send(zmq::message_t(), zmq::send_flags::sndmore);
  router_.send(body, zmq::send_flags::none);
}

void Server::onEvent(const Event& event) {
  ++stats_.events;
  // TODO(perf): reuse one builder arena per turn instead of one per event.
  capnp::MallocMessageBuilder message(128);
  toWire(event, message.initRoot<wire::Event>());
  topicInto(event, topic_);  // one buffer for every event: no allocation once grown
  pub_.send(zmq::buffer(topic_), zmq::send_flags::sndmore);
  pub_.send(toFrame(message), zmq::send_flags::none);
}

void Server::onReply(uint64_t tag, const Reply& reply) {
  if (tag == kLocalTag) {
    if (const auto* r = reply.rejection()) {
      logLine("shopd", "local command rejected: %s: %s", std::string(name(r->reason)).c_str(),
              r->detail.c_str());
    }
    return;
  }
  auto it = routes_.find(tag);
  if (it == routes_.end()) return;
  capnp::MallocMessageBuilder message(reply.status == ReplyStatus::events ? 4096 : 128);
  toWire(reply, message.initRoot<wire::Reply>());
  send(it->second, toFrame(message));
  routes_.erase(it);
}

}  // namespace shop::bus
