// Reliable event stream over PUB/SUB, after the ZeroMQ Guide's Clone
// pattern: subscribe first and buffer, ReadEvents from the checkpoint to the
// head, drop what was already delivered, and re-read any seq gap.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <zmq.hpp>

#include "bus/client.h"
#include "core/domain.h"

namespace shop::bus {

// The stream a subscriber followed is gone: the server that answers now is
// another one (a restart: its seqs began again at 1), so the old checkpoint
// means nothing there.
struct StreamReset {
  uint64_t oldServerId = 0;  // the server of the old checkpoint; 0: unknown
  uint64_t newServerId = 0;  // the server followed from now on
  Seq oldCheckpoint = 0;     // every seq up to this one of the old stream was handled
  // The first seq of the new stream that will be handed out: 1, or the new
  // server's oldest retained seq when 1 has left its retention.
  Seq from = 1;
  std::string reason;  // for people, e.g. "server id 3f2a61c09b5e7d14 -> 9b1c..."
};

struct SubscriberOptions {
  Seq from = 1;  // first seq to deliver (inclusive)
  // The server whose stream `from` is in (a serverId() saved with the
  // checkpoint); 0: unknown, and the first server read is taken as that one.
  uint64_t serverId = 0;
  std::string topicPrefix;  // deliver only events whose topic starts with this
  int rcvHwm = 100'000;     // SUB queue; PUB drops beyond it and we repair
  // poll() reads the server at least this often. With no live event since
  // the last read, it catches up to the head: closes the window where the
  // subscription was not yet active, and notices a dropped tail. While
  // events flow, it asks for an empty page only, to confirm that the server
  // is still the one it follows: a restarted server's seqs can look like a
  // continuation of the old ones. Client-side only; the server never polls.
  int idleCheckMs = 200;
  ClientOptions client;
  // Called inside poll() when the stream followed is gone (StreamReset),
  // before the first event of the new one. The subscriber then delivers the
  // new server's events from its oldest retained one. Optional: without it
  // the subscriber resets all the same, and stats().resets and serverId()
  // show that it did.
  std::function<void(const StreamReset&)> onReset;
  // Called inside poll(), once for each event that cannot be decoded (an
  // event kind from a newer server, a broken struct); the subscriber moves
  // past its seq. Called whatever the topic prefix: the topic of an event
  // that cannot be read is not known.
  std::function<void(Seq seq, const std::string& why)> onSkipped;
};

struct SubscriberStats {
  uint64_t delivered = 0;
  uint64_t duplicatesDropped = 0;
  uint64_t gapsDetected = 0;
  uint64_t eventsReread = 0;
  uint64_t resets = 0;           // streams given up for a new server's (onReset)
  uint64_t skipped = 0;          // events that could not be decoded (onSkipped)
  uint64_t malformedFrames = 0;  // live frames whose seq could not be read; re-read by gap repair
};

// The events after a subscriber's checkpoint have left the server's
// retention: they cannot be delivered. Nothing is skipped silently; the
// owner decides (start again from `oldest`, or give up).
struct TruncatedError : std::runtime_error {
  TruncatedError(Seq wanted, Seq oldest)
      : std::runtime_error("truncated: seq " + std::to_string(wanted) +
                           " is no longer retained; the oldest is " + std::to_string(oldest)),
        wanted(wanted),
        oldest(oldest) {}
  Seq wanted;
  Seq oldest;
};

// Owned by one thread; not thread-safe.
//
// Gap detection needs every seq, so the SUB socket takes the whole stream
// and the topic prefix is applied here. TODO(perf): a topic-filtered
// ReadEvents would let a one-customer tail subscribe to its prefix only.
//
// A seq means something only on the server that assigned it, and an event
// does not say which server that was; a ReadEvents page does (serverId). The
// subscriber gives up its stream (onReset) when a page comes from another
// server than the one it follows, or shows a head below its checkpoint, and
// starts over on the new server from its oldest event, on a new SUB socket:
// frames the old socket still queues may be the old server's. Pages are
// read at least every idleCheckMs, and live frames that arrive over a
// connection made since the last page wait for a page before they count: a
// restarted server's seqs can carry on where the old ones stopped, so they
// alone cannot tell.
class CatchUpSubscriber {
 public:
  // Each event is handed over: a receiver may keep it (by moving from it)
  // or just read it (a `const Event&` parameter).
  using Deliver = std::function<void(Event&&)>;

  CatchUpSubscriber(zmq::context_t& context, const std::string& eventsEndpoint,
                    const std::string& commandsEndpoint, SubscriberOptions options = {});

  // Delivers, in seq order, each event after the checkpoint exactly once
  // (those matching the topic prefix). Waits up to timeoutMs (-1: forever)
  // for at least one. Returns how many were delivered. Calls onReset and
  // onSkipped as it meets a new stream or an event it cannot decode. Throws
  // TruncatedError when the next seq is older than the server's retention,
  // and std::runtime_error when the server cannot be reached.
  size_t poll(int timeoutMs, const Deliver& deliver);

  // Every seq up to this one (of serverId()'s stream) has been handled.
  Seq checkpoint() const { return next_ - 1; }
  // The server whose stream it follows now; 0 before the first page read.
  uint64_t serverId() const { return serverId_; }
  const SubscriberStats& stats() const { return stats_; }

 private:
  using Clock = std::chrono::steady_clock;
  // A seq whose event could not be decoded, waiting for its turn.
  struct Undecodable {
    std::string why;
  };
  using Entry = std::variant<Event, Undecodable>;

  // (Re)creates the SUB socket, with its monitor, and subscribes to everything.
  void subscribe();
  // Whether the SUB socket made a connection since the last call.
  bool connectedSince();
  // One ReadEvents call. Throws std::runtime_error unless the reply is a
  // page or a retentionExceeded rejection.
  Reply read(Seq from, uint32_t maxCount);
  // Whether `page` belongs to the stream followed; adopts its server when
  // none is known yet.
  bool sameStream(const EventPage& page);
  // Gives up the stream followed for the one of the page's server, from seq 1.
  void startOver(const EventPage& page);
  // Reads [next_, upTo] (upTo 0: to the head) from the server and delivers.
  size_t catchUp(Seq upTo, const Deliver& deliver);
  // An empty page: is the server still the one followed? If not, catches up
  // on the new one.
  size_t checkServer(const Deliver& deliver);
  // Takes up to a batch of live frames from the SUB socket.
  size_t receive(const Deliver& deliver);
  size_t deliverInOrder(Event event, const Deliver& deliver);
  void skipInOrder(Seq seq, std::string why);
  size_t flushBuffer(const Deliver& deliver);

  zmq::context_t& context_;
  std::string eventsEndpoint_;
  SubscriberOptions options_;
  // The SUB socket's connection events. ZeroMQ reports a connection before
  // any frame that arrives over it, so a batch read before the monitor is
  // drained holds no frame from a connection the drain does not report.
  zmq::socket_t monitor_;
  zmq::socket_t sub_;
  Client client_;
  std::vector<zmq::message_t> batch_;  // live event frames taken, not yet handled
  uint64_t streams_ = 0;               // startOver() calls: frames of an older socket are void
  Seq next_;                           // the next seq to hand out
  std::map<Seq, Entry> ahead_;         // live events that arrived past a gap
  bool caughtUp_ = false;
  uint64_t serverId_ = 0;  // the server followed, once following_
  bool following_ = false;
  // A reset not yet announced: onReset runs once the new stream's first
  // page is read, when the seq it starts from is known.
  std::optional<StreamReset> reset_;
  Clock::time_point lastRead_;  // the last page read from the server
  bool liveSinceRead_ = false;  // live events came since that read
  std::string topic_;           // scratch for matching the prefix
  SubscriberStats stats_;
};

}  // namespace shop::bus
