#include "tests/testkit/fake_server.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include "bus/codec.h"

namespace shop::testkit {

FakeServer::FakeServer(FakeServerConfig config)
    : config_(std::move(config)),
      context_(1),
      router_(context_, zmq::socket_type::router),
      xpub_(context_, zmq::socket_type::xpub),
      controlIn_(context_, zmq::socket_type::pair),
      controlOut_(context_, zmq::socket_type::pair) {
  for (auto* socket : {&router_, &xpub_, &controlIn_, &controlOut_}) {
    socket->set(zmq::sockopt::linger, 0);
  }
  xpub_.set(zmq::sockopt::xpub_verbose, 1);  // every subscription, not only the first of a topic
  router_.bind(config_.commandsEndpoint);
  xpub_.bind(config_.eventsEndpoint);
  commands_ = router_.get(zmq::sockopt::last_endpoint);
  events_ = xpub_.get(zmq::sockopt::last_endpoint);
  controlIn_.bind("inproc://fake-server-control");
  controlOut_.connect("inproc://fake-server-control");
  // The sockets move to the server thread; its start orders their use there.
  thread_ = std::thread([this] { run(); });
}

FakeServer::~FakeServer() {
  controlOut_.send(zmq::str_buffer("stop"), zmq::send_flags::none);
  thread_.join();
}

uint64_t FakeServer::serverId() const {
  std::lock_guard lock(mutex_);
  return config_.serverId;
}

void FakeServer::replace(std::vector<kj::Array<capnp::word>> events, uint64_t serverId) {
  std::lock_guard lock(mutex_);
  config_.events = std::move(events);
  config_.serverId = serverId;
}

bool FakeServer::waitForSubscriber(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return subscribed_.wait_for(lock, timeout, [this] { return subscriptions_ > 0; });
}

void FakeServer::publish(const std::vector<std::string>& frames) {
  controlOut_.send(zmq::str_buffer("publish"),
                   frames.empty() ? zmq::send_flags::none : zmq::send_flags::sndmore);
  for (size_t i = 0; i < frames.size(); ++i) {
    controlOut_.send(zmq::buffer(frames[i]),
                     i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

std::string FakeServer::bytesOf(const kj::Array<capnp::word>& message) {
  auto bytes = message.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

zmq::message_t FakeServer::page(const CommandId& id, Seq from) const {
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<wire::Reply>();
  reply.setCommandId(shop::bytesOf(id));
  auto page = reply.initEvents();
  std::lock_guard lock(mutex_);
  const auto& events = config_.events;
  page.setHeadSeq(events.size());
  page.setServerId(config_.serverId);
  size_t first = from <= 1 ? 0 : from - 1;
  size_t count = config_.emptyPages || first >= events.size() ? 0 : events.size() - first;
  auto list = page.initEvents(static_cast<unsigned>(count));
  for (size_t i = 0; i < count; ++i) {
    // Copied as they are, unknown union members included.
    capnp::FlatArrayMessageReader reader(events[first + i]);
    list.setWithCaveats(static_cast<unsigned>(i), reader.getRoot<wire::Event>());
  }
  return bus::toFrame(message);
}

void FakeServer::send(const std::vector<std::string>& frames) {
  for (const std::string& frame : frames) {
    xpub_.send(zmq::str_buffer("s/fake"), zmq::send_flags::sndmore);
    xpub_.send(zmq::buffer(frame), zmq::send_flags::none);
  }
}

void FakeServer::answer() {
  zmq::message_t identity, body;
  if (!router_.recv(identity, zmq::recv_flags::dontwait)) return;
  if (!identity.more() || !router_.recv(body, zmq::recv_flags::none)) return;
  bus::DecodedCommand decoded = bus::decodeCommandFrame(body);
  const auto* read = decoded.command ? std::get_if<ReadEvents>(&decoded.command->body) : nullptr;
  if (!read) return;  // only reads are served: anything else times out at the client
  router_.send(identity, zmq::send_flags::sndmore);
  router_.send(page(decoded.id, read->fromSeq), zmq::send_flags::none);
  send(config_.live);
}

void FakeServer::run() {
  for (;;) {
    zmq::pollitem_t items[] = {{router_.handle(), 0, ZMQ_POLLIN, 0},
                               {xpub_.handle(), 0, ZMQ_POLLIN, 0},
                               {controlIn_.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 3, std::chrono::milliseconds(config_.streamLive ? 1 : -1));
    if (config_.streamLive) send(config_.live);
    if (items[0].revents & ZMQ_POLLIN) answer();
    zmq::message_t message;
    while (xpub_.recv(message, zmq::recv_flags::dontwait)) {
      // A subscription is its topic prefixed by 1 (0: an unsubscription).
      if (message.size() > 0 && static_cast<const uint8_t*>(message.data())[0] == 1) {
        std::lock_guard lock(mutex_);
        ++subscriptions_;
        subscribed_.notify_all();
      }
    }
    if (controlIn_.recv(message, zmq::recv_flags::dontwait)) {
      if (message.to_string_view() == "stop") return;
      std::vector<std::string> frames;  // "publish" and its frames
      while (message.more() && controlIn_.recv(message, zmq::recv_flags::none)) {
        frames.push_back(message.to_string());
      }
      send(frames);
    }
  }
}

}  // namespace shop::testkit
