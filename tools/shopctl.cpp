// shopctl: the shop's command line. One subcommand per command, plus `get`
// and `tail`. Exit codes: 0 accepted, 1 rejected (reason on stderr),
// 2 usage, connection or timeout error.
#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bus/client.h"
#include "bus/subscriber.h"
#include "bus/topic.h"
#include "tools/cli.h"
#include "tools/money.h"

namespace {

using shop::cli::formatMoney;
using shop::cli::UsageError;

constexpr const char* kUsage =
    R"(usage: shopctl [--endpoint E] [--events E] [--timeout MS] [--curve-* FILE] COMMAND ARGS

commands:
  create CUSTOMER [AMOUNT]          create a customer with an initial balance (default 0.00)
  deposit CUSTOMER AMOUNT           add money, e.g. 12.50
  buy CUSTOMER PRODUCT [QUANTITY]   buy (default quantity 1)
  return CUSTOMER PRODUCT [QUANTITY]  return units; refunds the price paid
  add-product PRODUCT PRICE [STOCK] add a product to the catalog (default stock 0)
  restock PRODUCT QUANTITY          add stock
  get CUSTOMER                      show balance and holdings
  tail [--customer ID] [--from SEQ] print events as JSON, one per line, until Ctrl-C
                                    (--from 1: everything retained; default: new events only;
                                    a restarted shopd is said on stderr and followed from seq 1)
  keygen NAME                       write a CURVE key pair: NAME.key (secret, mode 0600)
                                    and NAME.pub (public)

options:
  --endpoint E   command socket (default tcp://127.0.0.1:5555)
  --events E     event socket, for tail (default tcp://127.0.0.1:5556)
  --timeout MS   per attempt; two retries with the same commandId (default 2000)
  --curve-server-key FILE  the server's public key (NAME.pub): turns CURVE on
  --curve-client-key FILE  this client's key pair (NAME.key), listed by the server
  -h, --help     this text
  --version      print the version

Amounts are decimals with up to two places (12.50) and travel as minor units.
Exit codes: 0 accepted, 1 rejected (reason on stderr), 2 usage, connection or timeout error.
)";

struct Options {
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::string events = "tcp://127.0.0.1:5556";
  int timeoutMs = 2000;
  std::string curveServerKey;
  std::string curveClientKey;
  shop::bus::ClientCurve curve;   // read from the two files above
  std::vector<std::string> args;  // the subcommand and its arguments
};

int64_t money(const std::string& text) {
  if (auto v = shop::cli::parseMoney(text)) return *v;
  throw UsageError("'" + text + "' is not an amount like 12.50");
}

int64_t quantity(const std::string& text) {
  try {
    size_t used = 0;
    long long v = std::stoll(text, &used, 10);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw UsageError("'" + text + "' is not a whole number");
}

// The arguments after the subcommand: at least `min`, at most `max`.
const std::vector<std::string>& expectArgs(const Options& o, size_t min, size_t max) {
  size_t n = o.args.size() - 1;
  if (n < min || n > max) {
    throw UsageError(
        o.args[0] + " takes " +
        (min == max ? std::to_string(min) : std::to_string(min) + " to " + std::to_string(max)) +
        " argument(s), got " + std::to_string(n));
  }
  return o.args;
}

shop::CommandBody buildCommand(const Options& o) {
  const std::string& cmd = o.args[0];
  if (cmd == "create") {
    auto& a = expectArgs(o, 1, 2);
    return shop::CreateCustomer{a[1], a.size() > 2 ? money(a[2]) : 0};
  }
  if (cmd == "deposit") {
    auto& a = expectArgs(o, 2, 2);
    return shop::Deposit{a[1], money(a[2])};
  }
  if (cmd == "buy") {
    auto& a = expectArgs(o, 2, 3);
    return shop::BuyProduct{a[1], a[2], a.size() > 3 ? quantity(a[3]) : 1};
  }
  if (cmd == "return") {
    auto& a = expectArgs(o, 2, 3);
    return shop::ReturnProduct{a[1], a[2], a.size() > 3 ? quantity(a[3]) : 1};
  }
  if (cmd == "add-product") {
    auto& a = expectArgs(o, 2, 3);
    return shop::AddProduct{a[1], money(a[2]), a.size() > 3 ? quantity(a[3]) : 0};
  }
  if (cmd == "restock") {
    auto& a = expectArgs(o, 2, 2);
    return shop::Restock{a[1], quantity(a[2])};
  }
  if (cmd == "get") {
    auto& a = expectArgs(o, 1, 1);
    return shop::GetCustomer{a[1]};
  }
  throw UsageError("unknown command '" + cmd + "'");
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
        } else {
          return seq + "rejected: " + std::string(name(e.reason)) + ": " + e.detail;
        }
      },
      event.body);
}

int runCommand(const Options& o) {
  shop::CommandBody body = buildCommand(o);
  zmq::context_t context(1);
  shop::bus::Client client(context, o.endpoint,
                           {.timeoutMs = o.timeoutMs, .retries = 2, .curve = o.curve});
  shop::bus::CallResult result =
      client.call(shop::Command{shop::CommandId::random(), std::move(body)});
  if (!result.reply) {
    std::fprintf(stderr, "shopctl: %s (is shopd running at %s?)\n", result.error.c_str(),
                 o.endpoint.c_str());
    return 2;
  }
  if (result.reply->malformed) {
    std::fprintf(stderr, "shopctl: the server could not read the request: %s\n",
                 result.reply->malformed->c_str());
    return 2;
  }
  const shop::Reply& reply = result.reply->reply;
  switch (reply.status) {
    case shop::ReplyStatus::accepted:
      std::printf("%s\n", summary(*reply.event).c_str());
      return 0;
    case shop::ReplyStatus::rejected:
      std::fprintf(stderr, "shopctl: rejected: %s: %s\n",
                   std::string(shop::name(reply.rejection()->reason)).c_str(),
                   reply.rejection()->detail.c_str());
      return 1;
    case shop::ReplyStatus::customer: {
      const auto& v = *reply.customer;
      std::printf("%s: balance %s\n", v.customer.c_str(), formatMoney(v.balance).c_str());
      for (const auto& h : v.holdings) {
        std::printf("  %s x%lld (paid %s)\n", h.product.c_str(), static_cast<long long>(h.quantity),
                    formatMoney(h.paid).c_str());
      }
      return 0;
    }
    case shop::ReplyStatus::retired:
      // A retry of a command applied earlier: nothing was applied again.
      std::printf("#%llu accepted earlier (event no longer retained; oldest is #%llu)\n",
                  static_cast<unsigned long long>(reply.seq),
                  static_cast<unsigned long long>(reply.oldestSeq));
      return 0;
    case shop::ReplyStatus::events:
      break;
  }
  return 2;
}

std::atomic<bool> interrupted{false};

int runTail(const Options& o) {
  shop::bus::SubscriberOptions sub;
  sub.client.timeoutMs = o.timeoutMs;
  sub.client.curve = o.curve;
  bool fromGiven = false;
  for (size_t i = 1; i < o.args.size(); ++i) {
    const std::string& a = o.args[i];
    if ((a == "--customer" || a == "--from") && i + 1 >= o.args.size()) {
      throw UsageError(a + " needs a value");
    }
    if (a == "--customer") {
      sub.topicPrefix = shop::bus::customerTopicPrefix(o.args[++i]);
    } else if (a == "--from") {
      sub.from = shop::cli::unsignedValue(a, o.args[++i], 1, UINT64_MAX);
      fromGiven = true;
    } else {
      throw UsageError("tail: unknown option '" + a + "'");
    }
  }
  zmq::context_t context(1);
  if (!fromGiven) {
    // New events only: start after the current head.
    shop::bus::Client client(context, o.endpoint,
                             {.timeoutMs = o.timeoutMs, .retries = 2, .curve = o.curve});
    auto head =
        client.call(shop::Command{shop::CommandId::random(), shop::ReadEvents{UINT64_MAX, 1}});
    if (!head.ok()) {
      std::fprintf(stderr, "shopctl: %s (is shopd running at %s?)\n", head.error.c_str(),
                   o.endpoint.c_str());
      return 2;
    }
    sub.from = head.reply->reply.page.headSeq + 1;
    sub.serverId = head.reply->reply.page.serverId;  // that head is this server's
  }

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
  auto print = [&json](const shop::Event& event) {
    capnp::MallocMessageBuilder message(128);
    auto root = message.initRoot<shop::wire::Event>();
    shop::bus::toWire(event, root);
    kj::String text = json.encode(root.asReader());
    std::printf("%s\n", text.cStr());
    std::fflush(stdout);
  };
  try {
    while (!interrupted) subscriber.poll(250, print);
  } catch (const shop::bus::TruncatedError& e) {
    // Said, never skipped: the events in between are gone from the server.
    std::fprintf(stderr,
                 "shopctl: tail: %s (events %llu to %llu are lost to this tail; "
                 "--from %llu continues from the oldest)\n",
                 e.what(), static_cast<unsigned long long>(e.wanted),
                 static_cast<unsigned long long>(e.oldest - 1),
                 static_cast<unsigned long long>(e.oldest));
    return 2;
  } catch (const std::exception& e) {
    if (interrupted) return 0;
    std::fprintf(stderr, "shopctl: tail: %s\n", e.what());
    return 2;
  }
  return 0;
}

int runKeygen(const Options& o) {
  if (o.args.size() != 2) throw UsageError("keygen takes one NAME");
  const std::string& base = o.args[1];
  shop::bus::writeKeyFiles(base, shop::bus::generateKeyPair());
  std::printf("wrote %s.key (secret: keep it private) and %s.pub (public)\n", base.c_str(),
              base.c_str());
  return 0;
}

Options parse(int argc, char** argv) {
  Options o;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--version") {
      std::printf("shopctl %s\n", SHOP_VERSION);
      std::exit(0);
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--endpoint") {
      o.endpoint = shop::cli::value(argc, argv, i);
    } else if (a == "--events") {
      o.events = shop::cli::value(argc, argv, i);
    } else if (a == "--timeout") {
      o.timeoutMs = static_cast<int>(
          shop::cli::unsignedValue(a, shop::cli::value(argc, argv, i), 1, 3'600'000));
    } else if (a == "--curve-server-key") {
      o.curveServerKey = shop::cli::value(argc, argv, i);
    } else if (a == "--curve-client-key") {
      o.curveClientKey = shop::cli::value(argc, argv, i);
    } else if (a.starts_with("-") && a != "-") {
      throw UsageError("unknown option '" + a + "'");
    } else {
      break;
    }
  }
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    o.args.push_back(a);
  }
  if (o.args.empty()) throw UsageError("no command given");
  if (o.curveServerKey.empty() != o.curveClientKey.empty()) {
    throw UsageError("CURVE needs both --curve-server-key and --curve-client-key");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o = parse(argc, argv);
    if (o.args[0] == "keygen") return runKeygen(o);
    if (!o.curveServerKey.empty()) {
      o.curve = shop::bus::ClientCurve::fromFiles(o.curveServerKey, o.curveClientKey);
    }
    return o.args[0] == "tail" ? runTail(o) : runCommand(o);
  } catch (const shop::bus::KeyError& e) {
    std::fprintf(stderr, "shopctl: %s\n", e.what());
    return 2;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "shopctl: %s (see shopctl --help)\n", e.what());
    return 2;
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "shopctl: %s\n", e.what());
    return 2;
  }
}
