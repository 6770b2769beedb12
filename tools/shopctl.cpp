// shopctl: the shop's command line. One subcommand per command, plus `get`,
// `tail`, `ping` and `keygen`. Flags on CLI11: options anywhere on the line,
// --help per subcommand. Exit codes: 0 accepted, 1 rejected (reason on
// stderr), 2 usage, 3 server unavailable or timed out.
#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bus/client.h"
#include "bus/json.h"
#include "bus/subscriber.h"
#include "bus/topic.h"
#include "tools/cli.h"
#include "tools/money.h"

namespace {

using shop::cli::formatMoney;
using shop::cli::UsageError;

constexpr int kAccepted = 0;
constexpr int kRejected = 1;
constexpr int kUsage = 2;
constexpr int kUnavailable = 3;

struct Options {
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::string events = "tcp://127.0.0.1:5556";
  std::string relay = "tcp://127.0.0.1:5570";
  int timeoutMs = 2000;
  std::string curveServerKey;
  std::string curveClientKey;
  bool json = false;
  shop::bus::ClientCurve curve;  // read from the two files above

  shop::bus::ClientOptions client() const {
    return {.timeoutMs = timeoutMs, .retries = 2, .curve = curve, .failFast = true};
  }
};

int64_t money(const std::string& text) {
  if (auto v = shop::cli::parseMoney(text)) return *v;
  throw UsageError("'" + text + "' is not an amount like 12.50");
}

// A command's arguments as the user typed them; parsed after CLI11 has
// matched them, so that a bad amount names itself.
struct Args {
  std::string customer, product, amount, quantity;
};

int64_t quantity(const std::string& text, int64_t fallback) {
  if (text.empty()) return fallback;
  try {
    size_t used = 0;
    long long v = std::stoll(text, &used, 10);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw UsageError("'" + text + "' is not a whole number");
}

// A time as people read it: UTC, to the second.
std::string utc(int64_t ns) {
  time_t seconds = static_cast<time_t>(ns / 1'000'000'000);
  tm parts{};
  gmtime_r(&seconds, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

// One line for people, amounts as decimals.
std::string summary(const shop::Event& event) {
  using namespace shop;
  std::string seq = "#" + std::to_string(event.seq) + " ";
  return std::visit(
      [&](const auto& e) -> std::string {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, CustomerCreated>) {
          return seq + "created " + e.customer + " with " + formatMoney(e.initialBalance);
        } else if constexpr (std::is_same_v<T, FundsDeposited>) {
          return seq + "deposited " + formatMoney(e.amount) + " for " + e.customer + ", balance " +
                 formatMoney(e.balance);
        } else if constexpr (std::is_same_v<T, ProductBought>) {
          return seq + e.customer + " bought " + std::to_string(e.quantity) + " " + e.product +
                 " at " + formatMoney(e.unitPrice) + ", balance " + formatMoney(e.balance);
        } else if constexpr (std::is_same_v<T, ProductReturned>) {
          return seq + e.customer + " returned " + std::to_string(e.quantity) + " " + e.product +
                 ", refund " + formatMoney(e.refund) + ", balance " + formatMoney(e.balance);
        } else if constexpr (std::is_same_v<T, ProductAdded>) {
          return seq + "added " + e.product + " at " + formatMoney(e.price) + ", stock " +
                 std::to_string(e.stock);
        } else if constexpr (std::is_same_v<T, ProductRestocked>) {
          return seq + "restocked " + e.product + " by " + std::to_string(e.quantity) + ", stock " +
                 std::to_string(e.stock);
        } else if constexpr (std::is_same_v<T, ProductHeld>) {
          return seq + "hold " + std::to_string(e.holdId) + ": " + std::to_string(e.quantity) +
                 " " + e.product + " for " + e.customer + " at " + formatMoney(e.unitPrice) +
                 " until " + utc(e.expiresAtNs);
        } else if constexpr (std::is_same_v<T, HoldConfirmed>) {
          return seq + "hold " + std::to_string(e.holdId) + " confirmed: " + e.customer +
                 " bought " + std::to_string(e.quantity) + " " + e.product + " at " +
                 formatMoney(e.unitPrice) + ", balance " + formatMoney(e.balance);
        } else if constexpr (std::is_same_v<T, HoldReleased>) {
          return seq + "hold " + std::to_string(e.holdId) +
                 " released: " + std::to_string(e.quantity) + " " + e.product + " back in stock";
        } else if constexpr (std::is_same_v<T, HoldExpired>) {
          return seq + "hold " + std::to_string(e.holdId) +
                 " expired: " + std::to_string(e.quantity) + " " + e.product + " back in stock";
        } else {
          static_assert(std::is_same_v<T, OperationRejected>);
          return seq + "rejected: " + std::string(name(e.reason)) + ": " + e.detail;
        }
      },
      event.body);
}

std::string replyJson(const shop::Reply& reply) {
  static const shop::bus::JsonWire wire;
  return wire.replyText(reply);
}

// The server's answer to one command, or the exit code for why there is none.
struct Answer {
  std::optional<shop::Reply> reply;
  int code = kAccepted;
  std::chrono::microseconds roundTrip{0};
};

Answer call(const Options& o, shop::CommandBody body) {
  zmq::context_t context(1);
  shop::bus::Client client(context, o.endpoint, o.client());
  auto start = std::chrono::steady_clock::now();
  shop::bus::CallResult result =
      client.call(shop::Command{shop::CommandId::random(), std::move(body)});
  Answer answer;
  answer.roundTrip = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - start);
  if (!result.reply) {
    std::string why = result.error;
    if (why.find(o.endpoint) == std::string::npos) why = o.endpoint + ": " + why;
    std::fprintf(stderr, "shopctl: %s\n", why.c_str());
    answer.code = kUnavailable;
    return answer;
  }
  if (result.reply->malformed) {
    std::fprintf(stderr, "shopctl: %s could not read the request: %s\n", o.endpoint.c_str(),
                 result.reply->malformed->c_str());
    answer.code = kUsage;
    return answer;
  }
  answer.reply = std::move(result.reply->reply);
  return answer;
}

int runCommand(const Options& o, shop::CommandBody body) {
  Answer answer = call(o, std::move(body));
  if (!answer.reply) return answer.code;
  const shop::Reply& reply = *answer.reply;
  if (o.json) std::printf("%s\n", replyJson(reply).c_str());
  switch (reply.status) {
    case shop::ReplyStatus::accepted:
      if (!o.json) std::printf("%s\n", summary(*reply.event).c_str());
      return kAccepted;
    case shop::ReplyStatus::rejected:
      std::fprintf(stderr, "shopctl: rejected: %s: %s\n",
                   std::string(shop::name(reply.rejection()->reason)).c_str(),
                   reply.rejection()->detail.c_str());
      return kRejected;
    case shop::ReplyStatus::customer: {
      if (o.json) return kAccepted;
      const auto& v = *reply.customer;
      std::printf("%s: balance %s\n", v.customer.c_str(), formatMoney(v.balance).c_str());
      for (const auto& h : v.holdings) {
        std::printf("  %s x%lld (paid %s)\n", h.product.c_str(), static_cast<long long>(h.quantity),
                    formatMoney(h.paid).c_str());
      }
      for (const auto& h : v.holds) {
        std::printf("  hold %llu: %s x%lld at %s until %s\n",
                    static_cast<unsigned long long>(h.holdId), h.product.c_str(),
                    static_cast<long long>(h.quantity), formatMoney(h.unitPrice).c_str(),
                    utc(h.expiresAtNs).c_str());
      }
      return kAccepted;
    }
    case shop::ReplyStatus::retired:
      // A retry of a command applied earlier: nothing was applied again.
      if (!o.json) {
        std::printf("#%llu accepted earlier (event no longer retained; oldest is #%llu)\n",
                    static_cast<unsigned long long>(reply.seq),
                    static_cast<unsigned long long>(reply.oldestSeq));
      }
      return kAccepted;
    case shop::ReplyStatus::events:
    case shop::ReplyStatus::stats:
      break;
  }
  return kUsage;
}

std::string duration(uint64_t ms) {
  uint64_t s = ms / 1000;
  char text[64];
  std::snprintf(
      text, sizeof text, "%llud %02lluh %02llum %02llus",
      static_cast<unsigned long long>(s / 86400), static_cast<unsigned long long>(s / 3600 % 24),
      static_cast<unsigned long long>(s / 60 % 60), static_cast<unsigned long long>(s % 60));
  return text;
}

int runStats(const Options& o) {
  Answer answer = call(o, shop::GetStats{});
  if (!answer.reply) return answer.code;
  const shop::Reply& reply = *answer.reply;
  if (o.json) std::printf("%s\n", replyJson(reply).c_str());
  if (reply.status != shop::ReplyStatus::stats) {
    if (const auto* rejection = reply.rejection()) {
      std::fprintf(stderr, "shopctl: rejected: %s: %s\n",
                   std::string(shop::name(rejection->reason)).c_str(), rejection->detail.c_str());
    }
    return kRejected;
  }
  if (o.json) return kAccepted;
  const shop::ShopStats& s = *reply.stats;
  auto row = [](const char* name, const std::string& value) {
    std::printf("%-22s %s\n", name, value.c_str());
  };
  auto of = [](uint64_t n, uint64_t capacity) {
    return std::to_string(n) + " of " + std::to_string(capacity);
  };
  row("version", s.version);
  row("server id", shop::serverIdHex(s.serverId));
  row("uptime", duration(s.uptimeMs));
  row("head seq", std::to_string(s.headSeq));
  row("customers", std::to_string(s.customers));
  row("products", std::to_string(s.products));
  row("in flight", std::to_string(s.inFlight));
  row("live holds", std::to_string(s.liveHolds));
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.1f", s.commandsPerSecond);
  row("commands/s (10 s)", rate);
  row("dedupe window", of(s.dedupeSize, s.dedupeCapacity));
  row("events in memory", of(s.logSize, s.logCapacity));
  char rss[32];
  std::snprintf(rss, sizeof rss, "%.1f MB", static_cast<double>(s.rssBytes) / 1e6);
  row("resident memory", rss);
  std::string rejections;
  for (const auto& [reason, n] : s.rejections) {
    if (!rejections.empty()) rejections += ", ";
    rejections += std::string(shop::name(reason)) + " " + std::to_string(n);
  }
  row("rejections", rejections.empty() ? "none" : rejections);
  return kAccepted;
}

int runPing(const Options& o) {
  // An empty page past the head: the cheapest request that every server
  // answers, with its id and head seq.
  Answer answer = call(o, shop::ReadEvents{UINT64_MAX, 1});
  if (!answer.reply) return answer.code;
  const shop::EventPage& page = answer.reply->page;
  if (o.json) {
    std::printf("{\"endpoint\":\"%s\",\"roundTripUs\":%lld,\"serverId\":\"%s\",\"headSeq\":%llu}\n",
                o.endpoint.c_str(), static_cast<long long>(answer.roundTrip.count()),
                shop::serverIdHex(page.serverId).c_str(),
                static_cast<unsigned long long>(page.headSeq));
  } else {
    std::printf("pong from %s in %lld us: server id %s, head seq %llu\n", o.endpoint.c_str(),
                static_cast<long long>(answer.roundTrip.count()),
                shop::serverIdHex(page.serverId).c_str(),
                static_cast<unsigned long long>(page.headSeq));
  }
  return kAccepted;
}

std::atomic<bool> interrupted{false};

struct TailOptions {
  std::string from = "now";  // earliest, now or a seq
  bool untilHead = false;
  uint64_t count = 0;  // 0: no limit
  std::string customer;
  std::string product;
};

int runTail(const Options& o, const TailOptions& t) {
  shop::bus::SubscriberOptions sub;
  sub.client = o.client();
  if (!t.customer.empty()) sub.topicPrefix = shop::bus::customerTopicPrefix(t.customer);
  std::optional<shop::Seq> fromSeq;
  if (t.from != "earliest" && t.from != "now") {
    fromSeq = shop::cli::unsignedValue("--from", t.from, 1, UINT64_MAX - 1);
  }
  zmq::context_t context(1);
  shop::Seq head = 0;
  if (!fromSeq || t.untilHead) {
    // Where the stream is now: its oldest retained event, its head, its id.
    Answer answer = call(o, shop::ReadEvents{0, 1});
    if (!answer.reply) return answer.code;
    const shop::EventPage& page = answer.reply->page;
    head = page.headSeq;
    if (!fromSeq) {
      sub.serverId = page.serverId;  // these seqs are this server's
      if (t.from == "now") {
        sub.from = head + 1;
      } else {
        sub.from = page.events.empty() ? head + 1 : page.events.front().seq;
      }
    }
  }
  if (fromSeq) sub.from = *fromSeq;

  struct sigaction action {};
  action.sa_handler = [](int) { interrupted = true; };
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  // A restarted server's seqs begin again at 1: say so, and go on with its
  // events from its oldest.
  sub.onReset = [](const shop::bus::StreamReset& reset) {
    std::fprintf(stderr,
                 "shopctl: tail: the server restarted (%s); following the new server from seq "
                 "%llu\n",
                 reset.reason.c_str(), static_cast<unsigned long long>(reset.from));
  };
  // An event this shopctl cannot read (from a newer shopd) is named, not fatal.
  sub.onSkipped = [](shop::Seq seq, const std::string& why) {
    std::fprintf(stderr, "shopctl: tail: event %llu cannot be decoded, skipped: %s\n",
                 static_cast<unsigned long long>(seq), why.c_str());
  };
  shop::bus::CatchUpSubscriber subscriber(context, o.events, o.endpoint, sub);
  capnp::JsonCodec json;
  json.handleByAnnotation<shop::wire::Event>();
  uint64_t printed = 0;
  auto print = [&](const shop::Event& event) {
    if (t.count != 0 && printed >= t.count) return;
    if (!t.product.empty() && event.product() != t.product) return;
    capnp::MallocMessageBuilder message(128);
    auto root = message.initRoot<shop::wire::Event>();
    shop::bus::toWire(event, root);
    kj::String text = json.encode(root.asReader());
    std::printf("%s\n", text.cStr());
    std::fflush(stdout);
    ++printed;
  };
  auto done = [&] {
    return interrupted || (t.count != 0 && printed >= t.count) ||
           (t.untilHead && subscriber.checkpoint() >= head);
  };
  try {
    while (!done()) subscriber.poll(250, print);
  } catch (const shop::bus::TruncatedError& e) {
    // Said, never skipped: the events in between are gone from the server.
    std::fprintf(stderr,
                 "shopctl: tail: %s (events %llu to %llu are lost to this tail; "
                 "--from earliest starts at the oldest)\n",
                 e.what(), static_cast<unsigned long long>(e.wanted),
                 static_cast<unsigned long long>(e.oldest - 1));
    return kUnavailable;
  } catch (const std::exception& e) {
    if (interrupted) return kAccepted;
    std::fprintf(stderr, "shopctl: tail: %s\n", e.what());
    return kUnavailable;
  }
  return kAccepted;
}

// shop-relay's control socket: one JSON request, one JSON answer.
int relayCall(const Options& o, const nlohmann::json& request, nlohmann::json& answer) {
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::req);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::rcvtimeo, o.timeoutMs);
  socket.connect(o.relay);
  std::string text = request.dump();
  socket.send(zmq::buffer(text), zmq::send_flags::none);
  zmq::message_t reply;
  if (!socket.recv(reply, zmq::recv_flags::none)) {
    std::fprintf(stderr, "shopctl: no answer from shop-relay at %s within %d ms\n", o.relay.c_str(),
                 o.timeoutMs);
    return kUnavailable;
  }
  answer = nlohmann::json::parse(reply.to_string(), nullptr, false);
  if (answer.is_discarded()) {
    std::fprintf(stderr, "shopctl: %s answered something that is not JSON\n", o.relay.c_str());
    return kUnavailable;
  }
  if (answer.contains("error")) {
    std::fprintf(stderr, "shopctl: relay: %s\n", answer["error"].get<std::string>().c_str());
    return kRejected;
  }
  return kAccepted;
}

struct RelayArgs {
  std::string destination;
  std::string id;  // a parked message's seq, or its key
};

int runRelayStatus(const Options& o) {
  nlohmann::json answer;
  if (int code = relayCall(o, {{"status", nlohmann::json::object()}}, answer)) return code;
  if (o.json) {
    std::printf("%s\n", answer.dump().c_str());
    return kAccepted;
  }
  std::printf("following server %s, head seq %llu\n", answer["serverId"].get<std::string>().c_str(),
              static_cast<unsigned long long>(answer["head"].get<uint64_t>()));
  std::printf("%-16s %10s %8s %8s %10s %8s %8s %8s %8s  %s\n", "destination", "checkpoint", "lag",
              "queued", "delivered", "per s", "retries", "parked", "inflight", "last error");
  for (const auto& d : answer["destinations"]) {
    std::printf("%-16s %10llu %8llu %8llu %10llu %8.1f %8llu %8llu %8llu  %s\n",
                d["name"].get<std::string>().c_str(),
                static_cast<unsigned long long>(d["checkpoint"].get<uint64_t>()),
                static_cast<unsigned long long>(d["lag"].get<uint64_t>()),
                static_cast<unsigned long long>(d["queued"].get<uint64_t>()),
                static_cast<unsigned long long>(d["delivered"].get<uint64_t>()),
                d["deliveredPerSecond"].get<double>(),
                static_cast<unsigned long long>(d["retries"].get<uint64_t>()),
                static_cast<unsigned long long>(d["parked"].get<uint64_t>()),
                static_cast<unsigned long long>(d["inFlight"].get<uint64_t>()),
                d["lastError"].get<std::string>().c_str());
  }
  return kAccepted;
}

int runRelayParked(const Options& o, const RelayArgs& r) {
  nlohmann::json answer;
  if (int code = relayCall(o, {{"parked", {{"destination", r.destination}}}}, answer)) return code;
  if (o.json) {
    std::printf("%s\n", answer.dump().c_str());
    return kAccepted;
  }
  for (const auto& p : answer["parked"]) {
    std::printf("seq %llu %s %s: %u attempts, last: %s\n",
                static_cast<unsigned long long>(p["seq"].get<uint64_t>()),
                p["key"].get<std::string>().c_str(), p["kind"].get<std::string>().c_str(),
                p["attempts"].get<unsigned>(), p["lastError"].get<std::string>().c_str());
  }
  if (answer["parked"].empty()) std::printf("nothing parked for %s\n", r.destination.c_str());
  return kAccepted;
}

int runRelayReplay(const Options& o, const RelayArgs& r) {
  nlohmann::json answer;
  if (int code =
          relayCall(o, {{"replay", {{"destination", r.destination}, {"id", r.id}}}}, answer)) {
    return code;
  }
  // A key; an older relay answers with the seq.
  const auto& what = answer["replaying"];
  std::printf("sending %s to %s again\n",
              what.is_string() ? what.get<std::string>().c_str() : what.dump().c_str(),
              r.destination.c_str());
  return kAccepted;
}

int runKeygen(const std::string& base) {
  shop::bus::writeKeyFiles(base, shop::bus::generateKeyPair());
  std::printf("wrote %s.key (secret: keep it private) and %s.pub (public)\n", base.c_str(),
              base.c_str());
  return kAccepted;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "shopctl: the shop's command line.\n"
      "Amounts are decimals with up to two places (12.50) and travel as minor units.\n"
      "Exit codes: 0 accepted, 1 rejected (the reason on stderr), 2 usage, 3 server\n"
      "unavailable or timed out."};
  app.set_version_flag("--version", std::string("shopctl ") + SHOP_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // the options below are taken after the subcommand too
  Options o;
  app.add_option("--endpoint", o.endpoint, "shopd's command socket")
      ->envname("SHOP_COMMANDS")
      ->capture_default_str();
  app.add_option("--events", o.events, "shopd's event socket, for tail")
      ->envname("SHOP_EVENTS")
      ->capture_default_str();
  app.add_option("--relay", o.relay, "shop-relay's control socket, for relay")
      ->envname("SHOP_RELAY")
      ->capture_default_str();
  app.add_option("--timeout", o.timeoutMs, "ms per attempt; two retries with the same commandId")
      ->check(CLI::Range(1, 3'600'000))
      ->capture_default_str();
  app.add_option("--curve-server-key", o.curveServerKey,
                 "the server's public key (NAME.pub): turns CURVE on");
  app.add_option("--curve-client-key", o.curveClientKey,
                 "this client's key pair (NAME.key), listed by the server");
  app.add_flag("--json", o.json, "print the server's reply as one JSON object");

  Args a;
  std::optional<shop::CommandBody> body;
  auto command = [&](const char* name, const char* help) { return app.add_subcommand(name, help); };
  auto* create = command("create", "create a customer with an initial balance");
  create->add_option("CUSTOMER", a.customer)->required();
  create->add_option("AMOUNT", a.amount, "initial balance, e.g. 12.50 (default 0.00)");
  create->callback([&] {
    body = shop::CreateCustomer{a.customer, a.amount.empty() ? 0 : money(a.amount)};
  });
  auto* deposit = command("deposit", "add money to a customer's balance");
  deposit->add_option("CUSTOMER", a.customer)->required();
  deposit->add_option("AMOUNT", a.amount, "e.g. 12.50")->required();
  deposit->callback([&] { body = shop::Deposit{a.customer, money(a.amount)}; });
  auto* buy = command("buy", "buy units of a product");
  buy->add_option("CUSTOMER", a.customer)->required();
  buy->add_option("PRODUCT", a.product)->required();
  buy->add_option("QUANTITY", a.quantity, "default 1");
  buy->callback([&] { body = shop::BuyProduct{a.customer, a.product, quantity(a.quantity, 1)}; });
  auto* ret = command("return", "return units; refunds the price paid");
  ret->add_option("CUSTOMER", a.customer)->required();
  ret->add_option("PRODUCT", a.product)->required();
  ret->add_option("QUANTITY", a.quantity, "default 1");
  ret->callback([&] {
    body = shop::ReturnProduct{a.customer, a.product, quantity(a.quantity, 1)};
  });
  auto* add = command("add-product", "add a product to the catalog");
  add->add_option("PRODUCT", a.product)->required();
  add->add_option("PRICE", a.amount, "e.g. 1.50")->required();
  add->add_option("STOCK", a.quantity, "default 0");
  add->callback([&] {
    body = shop::AddProduct{a.product, money(a.amount), quantity(a.quantity, 0)};
  });
  auto* restock = command("restock", "add stock to a product");
  restock->add_option("PRODUCT", a.product)->required();
  restock->add_option("QUANTITY", a.quantity)->required();
  restock->callback([&] { body = shop::Restock{a.product, quantity(a.quantity, 0)}; });
  int64_t ttlMs = 600'000;
  std::string holdId;
  auto* hold = command("hold", "reserve units for a customer until confirmed, released or expired");
  hold->add_option("CUSTOMER", a.customer)->required();
  hold->add_option("PRODUCT", a.product)->required();
  hold->add_option("QUANTITY", a.quantity, "default 1");
  hold->add_option("--ttl-ms", ttlMs, "how long the hold lasts")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  hold->callback([&] {
    body = shop::HoldProduct{.customer = a.customer,
                             .product = a.product,
                             .quantity = quantity(a.quantity, 1),
                             .ttlMs = ttlMs};
  });
  auto holdIdOf = [&] { return shop::cli::unsignedValue("HOLD_ID", holdId, 1, UINT64_MAX); };
  auto* confirm = command("confirm", "buy a hold's units at the held price");
  confirm->add_option("HOLD_ID", holdId)->required();
  confirm->callback([&] { body = shop::ConfirmHold{.holdId = holdIdOf()}; });
  auto* release = command("release", "give a hold's units back to the stock");
  release->add_option("HOLD_ID", holdId)->required();
  release->callback([&] { body = shop::ReleaseHold{.holdId = holdIdOf()}; });
  auto* get = command("get", "show a customer's balance, holdings and live holds");
  get->add_option("CUSTOMER", a.customer)->required();
  get->callback([&] { body = shop::GetCustomer{a.customer}; });

  TailOptions t;
  auto* tail = command("tail",
                       "print events as JSON, one per line; a restarted shopd is said on stderr "
                       "and followed from its oldest event");
  tail->add_option("--from", t.from, "earliest (the oldest retained), now, or a seq")
      ->capture_default_str();
  tail->add_flag("--until-head", t.untilHead, "exit 0 once caught up with the head at the start");
  tail->add_option("--count", t.count, "exit 0 after printing this many events");
  tail->add_option("--customer", t.customer, "only this customer's events");
  tail->add_option("--product", t.product, "only events about this product");
  auto* ping = command("ping", "the round trip to shopd, its server id and head seq");
  auto* stats = command("stats",
                        "the server's figures: version, uptime, head, customers, products, "
                        "commands/s, rejections, memory");
  RelayArgs r;
  auto* relay = command("relay", "shop-relay: its destinations, parked messages, re-drives");
  relay->require_subcommand(1);
  auto* relayStatus = relay->add_subcommand(
      "status", "per destination: checkpoint, lag, queued, delivered, retries, parked");
  auto* relayParked = relay->add_subcommand("parked", "the messages a destination parked");
  relayParked->add_option("DESTINATION", r.destination)->required();
  auto* relayReplay =
      relay->add_subcommand("replay", "send a parked message again (it stays parked until then)");
  relayReplay->add_option("DESTINATION", r.destination)->required();
  relayReplay
      ->add_option("ID", r.id,
                   "the parked message's seq, or its key (SERVERID-SEQ) when the seq is parked "
                   "from more than one stream")
      ->required();
  std::string keyName;
  auto* keygen =
      command("keygen", "write a CURVE key pair: NAME.key (secret, mode 0600) and NAME.pub");
  keygen->add_option("NAME", keyName)->required();

  try {
    app.parse(argc, argv);
    if (o.curveServerKey.empty() != o.curveClientKey.empty()) {
      throw CLI::ValidationError("CURVE needs both --curve-server-key and --curve-client-key");
    }
    if (!t.customer.empty() && !t.product.empty()) {
      throw CLI::ValidationError("tail takes --customer or --product, not both");
    }
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    if (e.get_exit_code() == 0) return code;
    std::string hint = shop::cli::didYouMean(app, argc, argv);
    if (!hint.empty()) std::fprintf(stderr, "shopctl: %s\n", hint.c_str());
    return kUsage;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "shopctl: %s (see shopctl --help)\n", e.what());
    return kUsage;
  }
  try {
    if (keygen->parsed()) return runKeygen(keyName);
    if (!o.curveServerKey.empty()) {
      o.curve = shop::bus::ClientCurve::fromFiles(o.curveServerKey, o.curveClientKey);
    }
    if (tail->parsed()) return runTail(o, t);
    if (ping->parsed()) return runPing(o);
    if (stats->parsed()) return runStats(o);
    if (relayStatus->parsed()) return runRelayStatus(o);
    if (relayParked->parsed()) return runRelayParked(o, r);
    if (relayReplay->parsed()) return runRelayReplay(o, r);
    return runCommand(o, std::move(*body));
  } catch (const shop::bus::KeyError& e) {
    std::fprintf(stderr, "shopctl: %s\n", e.what());
    return kUsage;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "shopctl: %s (see shopctl --help)\n", e.what());
    return kUsage;
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "shopctl: %s: %s\n",
                 relay->parsed() ? o.relay.c_str() : o.endpoint.c_str(), e.what());
    return kUsage;
  }
}
