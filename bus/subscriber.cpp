#include "bus/subscriber.h"

#include <atomic>
#include <limits>
#include <stdexcept>

#include "bus/topic.h"

namespace shop::bus {
namespace {

// Live frames taken per turn of poll(): bounded, so that a stream that never
// pauses cannot starve the periodic read of the server.
constexpr int kLiveBatch = 256;

// Reads a live event frame. False when not even its seq can be read (the
// message or its root is broken); otherwise `seq` is set, and either
// `event` or, when the event cannot be decoded, `why`.
bool decodeLive(const zmq::message_t& frame, Seq& seq, std::optional<Event>& event,
                std::string& why) {
  bool seqRead = false;
  try {
    event = readFrame<wire::Event>(frame, [&](wire::Event::Reader r) {
      seq = r.getSeq();
      seqRead = true;
      return fromWire(r);
    });
    return true;
  } catch (const DecodeError& e) {
    why = e.what();
  } catch (const kj::Exception& e) {
    why = "not a valid Event: " + std::string(e.getDescription().cStr());
  }
  return seqRead;
}

}  // namespace

CatchUpSubscriber::CatchUpSubscriber(zmq::context_t& context, const std::string& eventsEndpoint,
                                     const std::string& commandsEndpoint, SubscriberOptions options)
    : context_(context),
      eventsEndpoint_(eventsEndpoint),
      options_(std::move(options)),
      client_(context, commandsEndpoint, options_.client),
      next_(options_.from == 0 ? 1 : options_.from) {
  subscribe();
}

void CatchUpSubscriber::subscribe() {
  static std::atomic<uint64_t> monitors{0};
  std::string address = "inproc://shop-subscriber-monitor-" + std::to_string(monitors++);
  sub_ = zmq::socket_t(context_, zmq::socket_type::sub);  // closes the old one, if any
  sub_.set(zmq::sockopt::linger, 0);
  sub_.set(zmq::sockopt::rcvhwm, options_.rcvHwm);
  sub_.set(zmq::sockopt::subscribe, "");      // every seq, to see gaps (see class comment)
  secureClient(sub_, options_.client.curve);  // the same keys as the commands socket
  // Watched before it connects, so that no connection goes unreported.
  if (zmq_socket_monitor(sub_.handle(), address.c_str(), ZMQ_EVENT_CONNECTED) != 0) {
    throw zmq::error_t();
  }
  monitor_ = zmq::socket_t(context_, zmq::socket_type::pair);
  monitor_.set(zmq::sockopt::linger, 0);
  monitor_.connect(address);
  sub_.connect(eventsEndpoint_);
}

bool CatchUpSubscriber::connectedSince() {
  bool any = false;
  zmq::message_t frame;
  while (monitor_.recv(frame, zmq::recv_flags::dontwait)) any = true;  // 2 frames an event
  return any;
}

size_t CatchUpSubscriber::deliverInOrder(Event event, const Deliver& deliver) {
  if (event.seq < next_) {
    ++stats_.duplicatesDropped;
    return 0;
  }
  if (event.seq > next_) {
    // A decoded event replaces an undecodable one for the same seq: a
    // broken live frame must not hide the page's good copy.
    Seq seq = event.seq;
    ahead_.insert_or_assign(seq, Entry(std::move(event)));
    return 0;
  }
  ++next_;
  if (!options_.topicPrefix.empty()) {
    topicInto(event, topic_);
    if (!topic_.starts_with(options_.topicPrefix)) return 0;
  }
  ++stats_.delivered;
  deliver(std::move(event));
  return 1;
}

void CatchUpSubscriber::skipInOrder(Seq seq, std::string why) {
  if (seq < next_) {
    ++stats_.duplicatesDropped;
    return;
  }
  if (seq > next_) {
    ahead_.emplace(seq, Undecodable{std::move(why)});  // never over a decoded event
    return;
  }
  ++next_;
  ++stats_.skipped;
  if (options_.onSkipped) options_.onSkipped(seq, why);
}

size_t CatchUpSubscriber::flushBuffer(const Deliver& deliver) {
  size_t n = 0;
  while (!ahead_.empty() && ahead_.begin()->first <= next_) {
    auto node = ahead_.extract(ahead_.begin());
    if (auto* event = std::get_if<Event>(&node.mapped())) {
      n += deliverInOrder(std::move(*event), deliver);
    } else {
      skipInOrder(node.key(), std::move(std::get<Undecodable>(node.mapped()).why));
    }
  }
  return n;
}

Reply CatchUpSubscriber::read(Seq from, uint32_t maxCount) {
  // The page answers for every connection made before it is asked for.
  (void)connectedSince();
  CallResult result = client_.call(Command{CommandId::random(), ReadEvents{from, maxCount}});
  if (!result.ok()) {
    throw std::runtime_error("ReadEvents failed: " +
                             (result.reply ? *result.reply->malformed : result.error));
  }
  lastRead_ = Clock::now();
  liveSinceRead_ = false;
  Reply& reply = result.reply->reply;
  if (reply.status == ReplyStatus::rejected &&
      reply.rejection()->reason != RejectReason::retentionExceeded) {
    throw std::runtime_error("cannot read from seq " + std::to_string(from) + ": " +
                             reply.rejection()->detail);
  }
  if (reply.status != ReplyStatus::rejected && reply.status != ReplyStatus::events) {
    throw std::runtime_error("unexpected reply to ReadEvents from seq " + std::to_string(from));
  }
  return std::move(reply);
}

bool CatchUpSubscriber::sameStream(const EventPage& page) {
  if (!following_ && options_.serverId == 0) {
    // Nothing says where the checkpoint came from: this server's stream is
    // taken as its own. (Its head may be below `from`: events not yet
    // published, as when a tail is started from a seq ahead of the head.)
    serverId_ = page.serverId;
    following_ = true;
    return true;
  }
  uint64_t expected = following_ ? serverId_ : options_.serverId;
  // The same server never goes back below what it served.
  if (page.serverId != expected || page.headSeq < checkpoint()) return false;
  serverId_ = page.serverId;
  following_ = true;
  return true;
}

void CatchUpSubscriber::startOver(const EventPage& page) {
  if (!reset_) {
    // One announcement for the stream the owner knows, even if yet another
    // server answers before the new stream could be read.
    reset_ = StreamReset{.oldServerId = following_ ? serverId_ : options_.serverId,
                         .oldCheckpoint = checkpoint()};
  }
  reset_->newServerId = page.serverId;
  reset_->reason =
      reset_->oldServerId != page.serverId
          ? "server id " + serverIdHex(reset_->oldServerId) + " -> " + serverIdHex(page.serverId)
          : "server id " + serverIdHex(page.serverId) + ", whose head " +
                std::to_string(page.headSeq) + " is below the checkpoint " +
                std::to_string(checkpoint());
  serverId_ = page.serverId;
  following_ = true;
  next_ = 1;
  ahead_.clear();
  ++streams_;
  caughtUp_ = false;
  // An event does not name its server, and the old socket may still queue
  // the old server's frames, which a new stream would take for its own
  // seqs. A new socket reaches the new server only; what it misses before
  // its subscription is active, catch-up and gap repair read, as at start.
  subscribe();
}

size_t CatchUpSubscriber::catchUp(Seq upTo, const Deliver& deliver) {
  size_t n = 0;
  for (;;) {
    Seq from = next_;
    Reply reply = read(from, 0);
    if (reply.status == ReplyStatus::rejected) {  // retentionExceeded: read() let only it through
      if (reset_ && reply.oldestSeq > next_) {
        // A new stream starts at the oldest event its server still has.
        next_ = reply.oldestSeq;
        continue;
      }
      // The rejection does not say which server sent it: it truncates our
      // stream only if the server is still the one we follow.
      Reply head = read(std::numeric_limits<Seq>::max(), 1);
      if (head.status == ReplyStatus::events && !sameStream(head.page)) {
        startOver(head.page);
        upTo = 0;
        continue;
      }
      throw TruncatedError(next_, reply.oldestSeq);
    }
    EventPage& page = reply.page;
    if (!sameStream(page)) {
      startOver(page);
      upTo = 0;  // the gap being repaired was in the old stream
      continue;
    }
    if (reset_) {
      reset_->from = next_;
      StreamReset reset = std::move(*reset_);
      reset_.reset();
      ++stats_.resets;
      if (options_.onReset) options_.onReset(reset);
    }
    if (page.events.empty() && page.skipped.empty()) break;
    // Both lists ascend: merge them by seq.
    size_t e = 0, s = 0;
    while (e < page.events.size() || s < page.skipped.size()) {
      bool isEvent = s == page.skipped.size() ||
                     (e < page.events.size() && page.events[e].seq < page.skipped[s].seq);
      Seq seq = isEvent ? page.events[e].seq : page.skipped[s].seq;
      if (upTo != 0 && seq > upTo) break;
      stats_.eventsReread += caughtUp_ ? 1 : 0;
      if (isEvent) {
        n += deliverInOrder(std::move(page.events[e++]), deliver);
      } else {
        skipInOrder(seq, std::move(page.skipped[s++].why));
      }
    }
    if (next_ == from) {
      // A page from `from` starts at `from`; one that does not would have
      // this loop ask for the same page for ever.
      throw std::runtime_error("ReadEvents from seq " + std::to_string(from) +
                               " returned a page without it");
    }
    if ((upTo != 0 && next_ > upTo) || next_ > page.headSeq) break;
  }
  caughtUp_ = true;
  return n + flushBuffer(deliver);
}

size_t CatchUpSubscriber::checkServer(const Deliver& deliver) {
  Reply reply = read(std::numeric_limits<Seq>::max(), 1);  // no events: the head and the id
  if (reply.status != ReplyStatus::events) return 0;       // no seq is too old for this read
  if (!sameStream(reply.page)) {
    startOver(reply.page);
  } else if (!reset_) {
    return 0;
  }
  return catchUp(0, deliver);  // the new stream, or one a failed read left unannounced
}

size_t CatchUpSubscriber::receive(const Deliver& deliver) {
  batch_.clear();
  zmq::message_t topic;
  while (batch_.size() < kLiveBatch && sub_.recv(topic, zmq::recv_flags::dontwait)) {
    if (!topic.more()) continue;  // not our two-frame format
    batch_.emplace_back();
    (void)sub_.recv(batch_.back(), zmq::recv_flags::none);
  }
  size_t n = 0;
  uint64_t stream = streams_;
  // Frames that came over a connection made since the last page may be
  // another server's, with seqs that look like ours: a page says whose.
  if (connectedSince()) n += checkServer(deliver);
  Seq seq = 0;
  std::optional<Event> event;
  std::string why;
  for (zmq::message_t& body : batch_) {
    if (streams_ != stream) break;  // a reset: the rest came over the old socket
    event.reset();
    if (!decodeLive(body, seq, event, why)) {
      // Its seq is unknown: the next event's seq shows the gap, or the next
      // catch-up reads past it, and the page says what it was.
      ++stats_.malformedFrames;
      continue;
    }
    liveSinceRead_ = true;
    if (seq > next_) {
      ++stats_.gapsDetected;
      if (event) {
        ahead_.insert_or_assign(seq, Entry(std::move(*event)));
      } else {
        ahead_.emplace(seq, Undecodable{std::move(why)});
      }
      n += catchUp(seq - 1, deliver);
    } else if (event) {
      n += deliverInOrder(std::move(*event), deliver);
      n += flushBuffer(deliver);
    } else {
      skipInOrder(seq, std::move(why));
      n += flushBuffer(deliver);
    }
  }
  batch_.clear();
  return n;
}

size_t CatchUpSubscriber::poll(int timeoutMs, const Deliver& deliver) {
  size_t n = 0;
  if (!caughtUp_) n += catchUp(0, deliver);
  const auto interval = std::chrono::milliseconds(options_.idleCheckMs);
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs < 0 ? 0 : timeoutMs);
  while (n == 0) {
    auto now = Clock::now();
    if (now - lastRead_ >= interval) {
      // Nothing read from the server for a while. With no live event since,
      // anything published that we missed? While events flow, only: is it
      // still the server we follow? Seqs alone cannot tell, as a restarted
      // server's may carry on where the old ones stopped.
      n += liveSinceRead_ ? checkServer(deliver) : catchUp(0, deliver);
      continue;
    }
    if (timeoutMs >= 0 && now >= deadline) break;
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(lastRead_ + interval - now);
    if (timeoutMs >= 0) {
      wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(deadline - now));
    }
    zmq::pollitem_t item{sub_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, wait) == 0) continue;
    n += receive(deliver);
  }
  return n;
}

}  // namespace shop::bus
