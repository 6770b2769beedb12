#include "bus/client.h"

#include <capnp/message.h>

#include <atomic>
#include <cstring>

namespace shop::bus {

Client::Client(zmq::context_t& context, const std::string& endpoint, ClientOptions options)
    : options_(options), endpoint_(endpoint), socket_(context, zmq::socket_type::dealer) {
  socket_.set(zmq::sockopt::linger, 0);
  secureClient(socket_, options_.curve);
  if (options_.failFast) {
    // Watched before connecting, so that the first attempt's outcome is seen.
    static std::atomic<uint64_t> next{0};
    std::string address = "inproc://shop-client-monitor-" + std::to_string(next++);
    if (zmq_socket_monitor(socket_.handle(), address.c_str(),
                           ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED) != 0) {
      throw zmq::error_t();
    }
    monitor_ = zmq::socket_t(context, zmq::socket_type::pair);
    monitor_.set(zmq::sockopt::linger, 0);
    monitor_.connect(address);
  }
  socket_.connect(endpoint);
}

size_t Client::watchConnection() {
  size_t fired = 0;
  zmq::message_t event;
  while (monitor_.recv(event, zmq::recv_flags::dontwait)) {
    uint16_t what = 0;
    if (event.size() >= sizeof what) std::memcpy(&what, event.data(), sizeof what);
    zmq::message_t address;
    if (event.more()) (void)monitor_.recv(address, zmq::recv_flags::dontwait);
    if (what == ZMQ_EVENT_CONNECTED) {
      connected_ = true;
    } else if (what == ZMQ_EVENT_CONNECT_RETRIED && !connected_) {
      // Refused (or unreachable) before any connection was made: every
      // request waiting now fails, named after the endpoint.
      auto waiting = std::move(pending_);
      pending_.clear();
      for (auto& [id, p] : waiting) {
        p.handler(CallResult{std::nullopt, "nothing is listening at " + endpoint_ +
                                               " (the connection was refused)"});
        ++fired;
      }
    }
  }
  return fired;
}

void Client::send(const Command& command, ReplyHandler handler) {
  capnp::MallocMessageBuilder message(128);
  toWire(command, message.initRoot<wire::Command>());
  zmq::message_t frame = toFrame(message);
  zmq::message_t copy;
  copy.copy(frame);
  // Never blocks: with no connection (a server that is down, or that
  // refused this client's key) the attempt just times out.
  bool sent = socket_.send(frame, zmq::send_flags::dontwait).has_value();
  pending_[command.id] =
      Pending{std::move(copy), Clock::now() + std::chrono::milliseconds(options_.timeoutMs),
              options_.retries, std::move(handler), sent};
}

void Client::receive(zmq::message_t& frame) {
  CallResult result;
  CommandId id;
  try {
    ClientReply reply =
        readFrame<wire::Reply>(frame, [](wire::Reply::Reader r) { return fromWire(r); });
    id = reply.reply.commandId;
    result.reply = std::move(reply);
  } catch (const std::exception&) {
    return;  // not correlatable: the request will time out and retry
  } catch (const kj::Exception&) {
    return;
  }
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // a late duplicate of a retried request
  ReplyHandler handler = std::move(it->second.handler);
  pending_.erase(it);
  handler(result);
}

size_t Client::expire() {
  size_t fired = 0;
  auto now = Clock::now();
  for (auto it = pending_.begin(); it != pending_.end();) {
    Pending& p = it->second;
    if (p.deadline > now) {
      ++it;
      continue;
    }
    if (p.retriesLeft > 0) {
      --p.retriesLeft;
      ++retriesSent_;
      zmq::message_t copy;
      copy.copy(p.frame);
      p.sent = socket_.send(copy, zmq::send_flags::dontwait).has_value() || p.sent;
      p.deadline = now + std::chrono::milliseconds(options_.timeoutMs);
      ++it;
      continue;
    }
    ReplyHandler handler = std::move(p.handler);
    int attempts = options_.retries + 1;
    bool sent = p.sent;
    it = pending_.erase(it);
    handler(CallResult{std::nullopt, "timeout: no reply after " + std::to_string(attempts) +
                                         " attempt(s) of " + std::to_string(options_.timeoutMs) +
                                         " ms" +
                                         (sent ? "" : " (never sent: no connection was made)")});
    ++fired;
  }
  return fired;
}

size_t Client::poll(int timeoutMs) {
  auto start = Clock::now();
  size_t fired = 0;
  for (;;) {
    // Sleep no longer than the earliest attempt deadline.
    auto wait = std::chrono::milliseconds(timeoutMs < 0 ? 1'000'000'000 : timeoutMs) -
                std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    for (const auto& [id, p] : pending_) {
      wait = std::min(
          wait, std::chrono::duration_cast<std::chrono::milliseconds>(p.deadline - Clock::now()) +
                    std::chrono::milliseconds(1));
    }
    if (wait.count() < 0) wait = std::chrono::milliseconds(0);
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0},
                               {monitor_.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, options_.failFast ? 2 : 1, wait);
    if (options_.failFast) fired += watchConnection();
    zmq::message_t frame;
    while (socket_.recv(frame, zmq::recv_flags::dontwait)) {
      receive(frame);
      ++fired;
    }
    fired += expire();
    if (fired > 0 ||
        (timeoutMs >= 0 && Clock::now() - start >= std::chrono::milliseconds(timeoutMs))) {
      return fired;
    }
  }
}

CallResult Client::call(const Command& command) {
  std::optional<CallResult> out;
  send(command, [&out](const CallResult& r) { out = r; });
  while (!out) poll(-1);
  return *out;
}

}  // namespace shop::bus
