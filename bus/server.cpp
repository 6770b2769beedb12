#include "bus/server.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "bus/topic.h"
#include "core/check.h"
#include "core/log.h"

namespace shop::bus {
namespace {

// Requests read per turn before the loop looks at shard outcomes again, so
// that a flood of requests cannot starve replies.
constexpr int kReadBatch = 256;
// Malformed requests are logged in full up to this count, then sampled.
constexpr uint64_t kMalformedLogged = 20;

// Binds, or throws BindError naming the socket's role and the endpoint.
void bindNamed(zmq::socket_t& socket, const char* role, const std::string& endpoint) {
  try {
    socket.bind(endpoint);
  } catch (const zmq::error_t& e) {
    throw BindError("cannot bind the " + std::string(role) + " endpoint " + endpoint + ": " +
                    e.what());
  }
}

std::string lastEndpoint(zmq::socket_t& socket) {
  return socket.get(zmq::sockopt::last_endpoint);
}

}  // namespace

Server::Server(zmq::context_t& context, const ServerConfig& config)
    : config_(config),
      router_(context, zmq::socket_type::router),
      pub_(context, zmq::socket_type::pub) {
  router_.set(zmq::sockopt::linger, config_.lingerMs);
  router_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kDisconnectFrameBytes));
  router_.set(zmq::sockopt::handshake_ivl, config_.handshakeMs);
  // A reply the peer's pipe cannot take fails with EAGAIN instead of being
  // dropped (deliver() keeps it), and one to a closed peer with EHOSTUNREACH.
  router_.set(zmq::sockopt::router_mandatory, true);
  // ZeroMQ's listen backlog is 100: a burst of connects beyond it loses SYNs
  // and those clients wait a second to retry. The kernel caps this at
  // net.core.somaxconn.
  router_.set(zmq::sockopt::backlog, 1024);
  pub_.set(zmq::sockopt::backlog, 1024);
  router_.set(zmq::sockopt::sndhwm, config_.repliesSendHwm);
  if (config_.repliesSendBuffer > 0) router_.set(zmq::sockopt::sndbuf, config_.repliesSendBuffer);
  pub_.set(zmq::sockopt::handshake_ivl, config_.handshakeMs);
  pub_.set(zmq::sockopt::linger, config_.lingerMs);
  pub_.set(zmq::sockopt::sndhwm, config_.eventsSendHwm);
  if (config_.eventsSendBuffer > 0) pub_.set(zmq::sockopt::sndbuf, config_.eventsSendBuffer);
  if (config_.access) {
    config_.access->secure(router_, "commands");
    config_.access->secure(pub_, "events");
  }
  bindNamed(router_, "commands", config_.commandsEndpoint);
  bindNamed(pub_, "events", config_.eventsEndpoint);
  commandsEndpoint_ = lastEndpoint(router_);
  eventsEndpoint_ = lastEndpoint(pub_);
  if (!config_.eventsJsonEndpoint.empty()) {
    zmq::socket_t& pub = jsonPub_.emplace(context, zmq::socket_type::pub);
    pub.set(zmq::sockopt::backlog, 1024);
    pub.set(zmq::sockopt::handshake_ivl, config_.handshakeMs);
    pub.set(zmq::sockopt::linger, config_.lingerMs);
    pub.set(zmq::sockopt::sndhwm, config_.eventsSendHwm);
    if (config_.eventsSendBuffer > 0) pub.set(zmq::sockopt::sndbuf, config_.eventsSendBuffer);
    if (config_.access) config_.access->secure(pub, "events", true);
    bindNamed(pub, "JSON events", config_.eventsJsonEndpoint);
    eventsJsonEndpoint_ = lastEndpoint(pub);
  }
  outEvents_.reserve(2 * kReadBatch);
  outReplies_.reserve(2 * kReadBatch);
  batch_.reserve(kReadBatch);
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

void Server::runPosted(Engine& engine) {
  std::function<void(Engine&)> fn;
  while (posted_.try_dequeue(fn)) fn(engine);
}

void Server::run(Engine& engine) {
  logLine("shopd", "serving commands on %s, events on %s (%u shards, max %u pending per customer)",
          commandsEndpoint_.c_str(), eventsEndpoint_.c_str(), engine.config().shards,
          engine.config().maxPending);
  if (jsonPub_) logLine("shopd", "publishing events as JSON on %s", eventsJsonEndpoint_.c_str());
  std::vector<zmq::pollitem_t> items = {
      {router_.handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, engine.wakeFd(), ZMQ_POLLIN, 0},
      {nullptr, control_.fd(), ZMQ_POLLIN, 0},
  };
  const size_t journalItem = items.size();
  if (config_.journal) items.push_back({nullptr, config_.journal->wakeFd(), ZMQ_POLLIN, 0});
  const size_t stopItem = items.size();
  if (config_.stopFd >= 0) items.push_back({nullptr, config_.stopFd, ZMQ_POLLIN, 0});

  // A turn: the outcomes that are ready, then up to a batch of requests
  // (recv until EAGAIN, which costs no syscall while ZeroMQ has messages
  // queued), then commit (shards get their tasks, clients their output).
  // While turns find work the loop goes straight on; zmq_poll, two or three
  // syscalls, runs only to sleep when a turn found nothing, and every
  // kControlEvery busy turns so that a stop or a posted call is never
  // starved by load.
  constexpr uint64_t kControlEvery = 64;
  uint64_t busyTurns = 0;
  std::string failure;
  for (;;) {
    size_t outcomes = engine.poll();
    size_t requests = readRequests(engine);
    engine.commit();
    bool busy = outcomes + requests > 0;
    if (busy) {
      ++stats_.turns;
      if (++busyTurns % kControlEvery != 0) continue;
    }
    bool sleep = !busy && engine.prepareToSleep();
    // ZeroMQ has no per-peer writable event, so while replies wait in a
    // backlog a sleeping loop wakes every millisecond to retry them. A live
    // hold wakes it at its deadline: the next commit() expires it.
    int sleepMs = backlogs_.empty() ? engine.msUntilNextExpiry() : 1;
    auto timeout = std::chrono::milliseconds(!sleep ? 0 : sleepMs);
    zmq::poll(items.data(), items.size(), timeout);
    if (sleep) engine.wokeUp(items[1].revents & ZMQ_POLLIN);
    if (items[2].revents & ZMQ_POLLIN) {
      control_.clear();
      runPosted(engine);
    }
    if (config_.journal && (items[journalItem].revents & ZMQ_POLLIN)) {
      config_.journal->clearWake();
      releaseDurable();
    }
    failure = engine.failure();
    if (failure.empty() && config_.journal && config_.journal->failed()) {
      failure = "the journal: " + config_.journal->failure();
    }
    if (!failure.empty() || stopRequested_.load(std::memory_order_acquire) ||
        (config_.stopFd >= 0 && (items[stopItem].revents & ZMQ_POLLIN))) {
      break;
    }
  }

  // Shutdown: what clients already sent is answered; then nothing is in
  // flight. After a shard failure nothing new is read, and what the healthy
  // shards decided still goes out.
  if (failure.empty()) {
    logLine("shopd", "stopping: answering %zu in flight", engine.inFlight());
    readRequests(engine);
  } else {
    logLine("shopd", "stopping after a fatal error in %s; %zu commands in flight", failure.c_str(),
            engine.inFlight());
  }
  engine.drain();
  runPosted(engine);
  engine.commit();
  if (config_.journal) {
    // What was decided goes out once it is durable; if the journal failed,
    // it never was, and nothing of it is acknowledged.
    config_.journal->waitDurable(lastBatch_);
    releaseDurable();
    if (!held_.empty()) {
      logLine("shopd", "stopping: %zu turns of output never became durable and are not sent",
              held_.size());
    }
  }
  // Replies still in backlogs get as long as the socket lingers to drain.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.lingerMs);
  while (!backlogs_.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    flushBacklogs();
  }
  if (!backlogs_.empty()) {
    logLine(
        "shopd", "stopping: %zu replies (%zu bytes) to %zu connections not reading are dropped",
        [this] {
          size_t n = 0;
          for (const auto& [peer, backlog] : backlogs_) n += backlog.replies.size();
          return n;
        }(),
        stats_.backlogBytes, backlogs_.size());
  }
  logLine("shopd",
          "stopped after %llu requests (%llu malformed, %llu over a connection's bound, %llu "
          "refused), %llu events, head seq %llu, "
          "%.1f requests per turn",
          static_cast<unsigned long long>(stats_.requests),
          static_cast<unsigned long long>(stats_.malformed),
          static_cast<unsigned long long>(stats_.connectionOverloaded),
          static_cast<unsigned long long>(stats_.requestsRefused),
          static_cast<unsigned long long>(stats_.events),
          static_cast<unsigned long long>(engine.log().headSeq()),
          stats_.turns ? static_cast<double>(stats_.requests) / static_cast<double>(stats_.turns)
                       : 0.0);
  if (!failure.empty()) throw ServerFailure("stopped on a fatal error in " + failure);
}

size_t Server::readRequests(Engine& engine) {
  // Decode the whole batch first, so that the engine's lookups for all of
  // it can start loading together (Engine::prefetch), then submit in order.
  size_t read = 0;
  for (; read < kReadBatch; ++read) {
    frames_.clear();
    zmq::message_t& first = frames_.emplace_back();
    if (!router_.recv(first, zmq::recv_flags::dontwait)) break;
    while (frames_.back().more()) {
      // The rest of a multipart message is already here: ZeroMQ delivers it whole.
      (void)router_.recv(frames_.emplace_back(), zmq::recv_flags::none);
    }
    decodeRequest();
  }
  for (const auto& request : batch_) engine.prefetch(request.command);
  for (auto& request : batch_) {
    if (request.refusal) [[unlikely]] {
      engine.refuse(request.command, request.tag, *request.refusal,
                    std::move(request.refusalDetail));
    } else {
      engine.submit(std::move(request.command), request.tag);
    }
  }
  batch_.clear();
  return read;
}

uint64_t Server::takeRoute(Route route) {
  if (freeTags_.empty()) {
    routes_.push_back(std::move(route));
    return routes_.size();
  }
  uint64_t tag = freeTags_.back();
  freeTags_.pop_back();
  routes_[tag - 1] = std::move(route);
  return tag;
}

void Server::decodeRequest() {
  ++stats_.requests;
  if (!backlogs_.empty() && refuse(frames_[0])) return;
  Route route{std::move(frames_[0]), false};
  // DEALER: [identity, body]. REQ: [identity, empty, body].
  size_t bodyIndex = 1;
  if (frames_.size() >= 2 && frames_[1].size() == 0) {
    route.reqEnvelope = true;
    bodyIndex = 2;
  }
  route.json = isJsonFrame(frames_.back());
  if (frames_.size() != bodyIndex + 1) {
    sendMalformed(route, CommandId{},
                  "expected one body frame (DEALER) or an empty delimiter and one body frame "
                  "(REQ), got " +
                      std::to_string(frames_.size() - 1) + " frames");
    return;
  }
  const zmq::message_t& body = frames_[bodyIndex];
  DecodedCommand decoded =
      route.json ? json_.decodeCommand(std::string_view(body.data<char>(), body.size()))
                 : decodeCommandFrame(body, alignScratch_);
  if (!decoded.command) {
    sendMalformed(route, decoded.id, decoded.malformed);
    return;
  }
  Request request{0, std::move(*decoded.command)};
  // The role is the User-Id that the ZAP handler gave the connection.
  if (config_.access && config_.access->curve()) {
    CommandKind kind = request.command.kind();
    if (kind == CommandKind::addProduct || kind == CommandKind::restock) {
      const char* role = zmq_msg_gets(body.handle(), "User-Id");
      if (role == nullptr || std::strcmp(role, kAdminRole) != 0) {
        request.refusal = RejectReason::forbidden;
        request.refusalDetail = std::string(name(kind)) + " needs an admin key";
      }
    }
  }
  uint32_t& inFlight = inFlightOf(route.identity);
  if (inFlight >= config_.maxInFlightPerConnection && !request.refusal) [[unlikely]] {
    if (stats_.connectionOverloaded++ % 10'000 == 0) {
      logLine("shopd",
              "a connection has %u commands in flight, its bound: rejecting 'overloaded' (%llu so "
              "far)",
              inFlight, static_cast<unsigned long long>(stats_.connectionOverloaded));
    }
    request.refusal = RejectReason::overloaded;
    request.refusalDetail = "this connection has " + std::to_string(inFlight) +
                            " commands in flight, the server's bound per connection; retry later";
  }
  ++inFlight;  // until its reply, refused or not
  route.inFlight = &inFlight;
  request.tag = takeRoute(std::move(route));
  batch_.push_back(std::move(request));
}

uint32_t& Server::inFlightOf(const zmq::message_t& identity) {
  peerKey_.assign(identity.data<char>(), identity.size());
  auto it = inFlight_.find(peerKey_);
  if (it != inFlight_.end()) return it->second;
  if (inFlight_.size() >= sweepInFlightAt_) {
    // Connections come and go: forget the idle ones. Only an idle entry is
    // erased, and no route points at one.
    std::erase_if(inFlight_, [](const auto& entry) { return entry.second == 0; });
    sweepInFlightAt_ = std::max<size_t>(1024, 2 * inFlight_.size());
  }
  return inFlight_.emplace(peerKey_, 0).first->second;
}

void Server::sendMalformed(Route& route, const CommandId& id, const std::string& why) {
  ++stats_.malformed;
  if (stats_.malformed <= kMalformedLogged || stats_.malformed % 1000 == 0) {
    logLine("shopd", "malformed request #%llu: %s",
            static_cast<unsigned long long>(stats_.malformed), why.c_str());
  }
  zmq::message_t body = route.json ? json_.malformed(id, why) : encoder_.malformed(id, why);
  outReplies_.push_back(OutgoingReply{std::move(route), std::move(body)});
}

bool Server::refuse(const zmq::message_t& identity) {
  peerKey_.assign(identity.data<char>(), identity.size());
  auto it = backlogs_.find(peerKey_);
  if (it == backlogs_.end()) return false;
  if (it->second.bytes <= config_.backlogBytesPerPeer &&
      stats_.backlogBytes <= config_.backlogTotalBytes) {
    return false;
  }
  // Not answered, so this backlog stops growing: the backlog is the peer's
  // back-pressure. A client that reads its replies never gets here.
  if (stats_.requestsRefused++ % 10'000 == 0) {
    logLine("shopd",
            "refusing requests from a connection that is not reading its replies (%zu bytes "
            "waiting; %zu bytes in all backlogs); %llu refused so far",
            it->second.bytes, stats_.backlogBytes,
            static_cast<unsigned long long>(stats_.requestsRefused));
  }
  return true;
}

Server::SendResult Server::trySend(OutgoingReply& reply) {
  // With ZMQ_ROUTER_MANDATORY the routing-id frame is where the pipe is
  // checked: EAGAIN when full, EHOSTUNREACH when the peer has gone. A failed
  // send leaves the message intact. The frames after it cannot fail.
  if (zmq_msg_send(reply.route.identity.handle(), router_.handle(), ZMQ_SNDMORE | ZMQ_DONTWAIT) <
      0) {
    int error = zmq_errno();
    if (error == EAGAIN) return SendResult::full;
    if (error == EHOSTUNREACH) return SendResult::closed;
    throw zmq::error_t();
  }
  if (reply.route.reqEnvelope) router_.send(zmq::message_t(), zmq::send_flags::sndmore);
  router_.send(reply.body, zmq::send_flags::none);
  ++stats_.replies;
  return SendResult::sent;
}

void Server::park(Backlog& backlog, OutgoingReply& reply) {
  ++stats_.repliesDeferred;
  backlog.bytes += reply.body.size();
  stats_.backlogBytes += reply.body.size();
  backlog.replies.push_back(std::move(reply));
}

void Server::deliver(OutgoingReply& reply) {
  if (!backlogs_.empty()) {
    peerKey_.assign(reply.route.identity.data<char>(), reply.route.identity.size());
    auto it = backlogs_.find(peerKey_);
    if (it != backlogs_.end()) {
      park(it->second, reply);
      return;
    }
  }
  switch (trySend(reply)) {
    case SendResult::sent:
      return;
    case SendResult::full: {
      std::string peer(reply.route.identity.data<char>(), reply.route.identity.size());
      park(backlogs_[std::move(peer)], reply);
      stats_.backlogPeers = backlogs_.size();
      return;
    }
    case SendResult::closed:
      dropClosed(1);
      return;
  }
}

void Server::flushBacklogs() {
  for (auto it = backlogs_.begin(); it != backlogs_.end();) {
    Backlog& backlog = it->second;
    while (!backlog.replies.empty()) {
      OutgoingReply& front = backlog.replies.front();
      size_t bytes = front.body.size();  // a sent body is left empty
      SendResult result = trySend(front);
      if (result == SendResult::full) break;
      if (result == SendResult::closed) {
        dropClosed(backlog.replies.size());
        stats_.backlogBytes -= backlog.bytes;
        backlog.bytes = 0;
        backlog.replies.clear();
        break;
      }
      backlog.bytes -= bytes;
      stats_.backlogBytes -= bytes;
      backlog.replies.pop_front();
    }
    it = backlog.replies.empty() ? backlogs_.erase(it) : std::next(it);
  }
  stats_.backlogPeers = backlogs_.size();
}

void Server::dropClosed(size_t replies) {
  // The one case where a reply is not delivered: its connection is gone, so
  // there is nobody to deliver it to. The client's retry with the same
  // commandId is answered from the dedupe window.
  uint64_t before = stats_.repliesToClosed;
  stats_.repliesToClosed += replies;
  if (before < kMalformedLogged || before / 10'000 != stats_.repliesToClosed / 10'000) {
    logLine("shopd", "%zu replies to a closed connection dropped (%llu so far)", replies,
            static_cast<unsigned long long>(stats_.repliesToClosed));
  }
}

void Server::append(const PublishedEvent& event) {
  ++stats_.events;
  if (config_.journal) config_.journal->append(event.message);
  topicInto(event.event, topic_);  // one buffer for every event: no allocation once grown
  outEvents_.push_back(
      OutgoingEvent{zmq::message_t(topic_.data(), topic_.size()), toFrame(event.message)});
  if (jsonPub_) outJson_.push_back(json_.event(event.message));
}

void Server::reply(uint64_t tag, const ReplyView& reply) {
  if (tag == kLocalTag) {
    if (reply.status == ReplyStatus::rejected) {
      logLine("shopd", "local command rejected: %s: %.*s", std::string(name(reply.reason)).c_str(),
              static_cast<int>(reply.detail.size()), reply.detail.data());
    }
    return;
  }
  SHOP_CHECK(tag <= routes_.size(), "reply for unknown tag %llu",
             static_cast<unsigned long long>(tag));
  Route& route = routes_[tag - 1];
  --*route.inFlight;
  route.inFlight = nullptr;
  zmq::message_t body = route.json ? json_.encode(reply) : encoder_.encode(reply);
  outReplies_.push_back(OutgoingReply{std::move(route), std::move(body)});
  freeTags_.push_back(tag);
}

void Server::commit() {
  if (!config_.journal) {
    send(outEvents_, outJson_, outReplies_);
    return;
  }
  uint64_t batch = config_.journal->commit();
  if (batch != 0) lastBatch_ = batch;
  if (!outEvents_.empty() || !outReplies_.empty()) {
    if (batch == 0 && held_.empty()) {
      send(outEvents_, outJson_, outReplies_);  // nothing of it waits on the disk
    } else {
      Held held;
      if (!spareHeld_.empty()) {
        held = std::move(spareHeld_.back());
        spareHeld_.pop_back();
      }
      held.batch = lastBatch_;
      std::swap(held.events, outEvents_);
      std::swap(held.json, outJson_);
      std::swap(held.replies, outReplies_);
      held_.push_back(std::move(held));
    }
  }
  releaseDurable();
}

void Server::releaseDurable() {
  if (held_.empty()) return;
  uint64_t durable = config_.journal->durable();
  while (!held_.empty() && held_.front().batch <= durable) {
    Held& front = held_.front();
    send(front.events, front.json, front.replies);
    spareHeld_.push_back(std::move(front));
    held_.pop_front();
  }
}

void Server::send(std::vector<OutgoingEvent>& events, std::vector<zmq::message_t>& json,
                  std::vector<OutgoingReply>& replies) {
  // Events first: a client that sees its reply can find the event published.
  for (size_t i = 0; i < events.size(); ++i) {
    OutgoingEvent& e = events[i];
    if (!json.empty()) {
      jsonPub_->send(zmq::const_buffer(e.topic.data(), e.topic.size()), zmq::send_flags::sndmore);
      jsonPub_->send(json[i], zmq::send_flags::none);
    }
    pub_.send(e.topic, zmq::send_flags::sndmore);
    pub_.send(e.body, zmq::send_flags::none);
  }
  events.clear();
  json.clear();
  if (!backlogs_.empty()) flushBacklogs();  // older replies first
  for (auto& r : replies) deliver(r);
  replies.clear();
}

}  // namespace shop::bus
