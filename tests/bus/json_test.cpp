// JSON frames (bus/json.h): the codec on its own, then end to end over real
// TCP against a real server, where a JSON command must meet exactly the
// validation, gate and dedupe a binary one does, and `eventsJsonEndpoint`
// must publish the binary stream's events, topics and order as JSON.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <string>
#include <vector>

#include <zmq_addon.hpp>

#include "bus/catalog.h"
#include "bus/client.h"
#include "bus/codec.h"
#include "bus/json.h"
#include "tests/testkit/embedded_server.h"
#include "tests/testkit/event_probe.h"

using namespace shop;
using namespace shop::bus;
using namespace shop::testkit;
namespace m = shop::testkit::match;
using nlohmann::json;

namespace {

constexpr const char* kId = "00112233445566778899aabbccddeeff";

std::string hexOf(const CommandId& id) {
  std::string out;
  static constexpr char kDigits[] = "0123456789abcdef";
  for (auto byte : bytesOf(id)) {
    out += kDigits[byte >> 4];
    out += kDigits[byte & 15];
  }
  return out;
}

std::string withId(const std::string& id, const std::string& rest) {
  return R"({"commandId":")" + id + R"(",)" + rest + "}";
}

// A DEALER that speaks JSON: one frame out, one JSON reply back.
struct JsonDealer {
  zmq::socket_t socket;
  explicit JsonDealer(EmbeddedServer& s) : socket(s.context(), zmq::socket_type::dealer) {
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::rcvtimeo, 5000);
    socket.connect(s.commands());
  }
  void send(const std::string& frame) { socket.send(zmq::buffer(frame)); }
  json receive() {
    zmq::message_t frame;
    REQUIRE(socket.recv(frame).has_value());
    std::string text = frame.to_string();
    INFO(text);
    REQUIRE(isJsonFrame(text));
    return json::parse(text);
  }
  json call(const std::string& frame) {
    send(frame);
    return receive();
  }
};

std::string fresh() {
  return hexOf(CommandId::random());
}

}  // namespace

TEST_CASE("every command kind, as shopctl prints it, decodes to the same command") {
  JsonWire wire;
  std::vector<CommandBody> bodies = {CreateCustomer{"alice", 1250},
                                     Deposit{"alice", 5},
                                     BuyProduct{"alice", "apple", 2},
                                     ReturnProduct{"alice", "apple", 1},
                                     AddProduct{"pear", 99, 7},
                                     Restock{"pear", 3},
                                     GetCustomer{"alice"},
                                     ReadEvents{12, 100},
                                     GetStats{}};
  for (auto& body : bodies) {
    Command command{CommandId::random(), body};
    std::string text = wire.commandText(command);
    CAPTURE(text);
    DecodedCommand decoded = wire.decodeCommand(text);
    REQUIRE(decoded.command);
    CHECK(decoded.id == command.id);
    CHECK(decoded.command->kind() == command.kind());
    CHECK(wire.commandText(*decoded.command) == text);
  }
}

TEST_CASE("64-bit integers are read from JSON numbers as well as the strings capnp-json prints") {
  JsonWire wire;
  for (const char* amount : {"1250", "\"1250\""}) {
    DecodedCommand decoded = wire.decodeCommand(
        withId(kId, std::string(R"("deposit":{"customer":"alice","amount":)") + amount + "}"));
    REQUIRE(decoded.command);
    CHECK(std::get<Deposit>(decoded.command->body).amount == 1250);
  }
  // Negative money arrives as itself, for validation to reject with a reason.
  DecodedCommand negative =
      wire.decodeCommand(withId(kId, R"("deposit":{"customer":"alice","amount":"-5"})"));
  REQUIRE(negative.command);
  CHECK(std::get<Deposit>(negative.command->body).amount == -5);
}

TEST_CASE("\\u escapes read as the characters they name (capnp-json 0.9.2's parser does not)") {
  JsonWire wire;
  // Python's json.dumps escapes every non-ASCII character: "café" travels as
  // "caf\u00e9". And capnp-json prints control characters as \u00XX.
  struct Case {
    std::string escaped;
    std::string bytes;
  };
  for (const auto& c : std::vector<Case>{{R"(caf\u00e9)", "caf\xC3\xA9"},
                                         {R"(ji\u001fl)", "ji\x1Fl"},
                                         {R"(\u00FF\u00ab)", "\xC3\xBF\xC2\xAB"},
                                         {R"(\ud83d\ude00)", "\xF0\x9F\x98\x80"}}) {
    CAPTURE(c.escaped);
    DecodedCommand decoded =
        wire.decodeCommand(withId(kId, R"("getCustomer":{"customer":")" + c.escaped + R"("})"));
    REQUIRE(decoded.command);
    CHECK(std::get<GetCustomer>(decoded.command->body).customer == c.bytes);
    // And what shopctl prints reads back the same.
    DecodedCommand again = wire.decodeCommand(wire.commandText(*decoded.command));
    REQUIRE(again.command);
    CHECK(std::get<GetCustomer>(again.command->body).customer == c.bytes);
  }
  // Integers past 2^53 arrive exactly, as numbers or as strings.
  for (const char* amount : {"9007199254740993", "\"9007199254740993\""}) {
    DecodedCommand decoded = wire.decodeCommand(
        withId(kId, std::string(R"("deposit":{"customer":"a","amount":)") + amount + "}"));
    REQUIRE(decoded.command);
    CHECK(std::get<Deposit>(decoded.command->body).amount == 9007199254740993);
  }
  // The starter catalog is read the same way.
  auto products = parseCatalog(R"({"products":[{"product":"caf\u00e9","price":1}]})");
  REQUIRE(products.size() == 1);
  CHECK(products[0].product == "caf\xC3\xA9");
}

TEST_CASE("malformed JSON is answered with why, naming the commandId when it was read") {
  JsonWire wire;
  CommandId id = commandIdFromWire(
      kj::arrayPtr(reinterpret_cast<const kj::byte*>("\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa"
                                                     "\xbb\xcc\xdd\xee\xff"),
                   16));
  struct Case {
    std::string frame;
    std::string why;
    bool idRead;
  };
  const std::string late =
      R"({"deposit":{"customer":"a","ammount":5},"commandId":")" + std::string(kId) + R"("})";
  std::vector<Case> cases = {
      {"{nope", "json: parse error at line 1, column 3: syntax error", false},
      {"{", "json: ", false},
      {R"({"commandId":")" + std::string(kId) + R"(" } [])", "json: ", false},
      {withId(kId, R"("deposit":{"customer":"a","ammount":5})"),
       "json: Unknown field; name = ammount", true},
      // The id is read first, wherever it stands in the object.
      {late, "json: Unknown field; name = ammount", true},
      {R"({"commandId":")" + std::string(kId) + R"("})", "json: no command kind in the object",
       true},
      {withId(kId, R"("deposit":{"customer":"a"},"getStats":{})"),
       "json: a command names one kind, this one names deposit and getStats", true},
      {R"({"getStats":{}})", "json: no commandId", false},
      {R"({"commandId":7,"getStats":{}})", "json: commandId must be a string", false},
      // Strict hex: capnp's own decoder would read these as other ids.
      {withId("0011", R"("getStats":{})"), "json: commandId must be 32 hex digits", false},
      {withId(std::string(32, 'z'), R"("getStats":{})"), "json: commandId must be 32 hex digits",
       false},
      {withId("0g112233445566778899aabbccddeeff", R"("getStats":{})"), "must be 32 hex digits",
       false},
      {withId(std::string(kId) + "0", R"("getStats":{})"), "got 33 characters", false},
      // No exact integer: a fraction, or an exponent past 2^53.
      {withId(kId, R"("deposit":{"customer":"a","amount":1e30})"), "write its digits", true},
      {withId(kId, R"("deposit":{"customer":"a","amount":99999999999999999999})"),
       "write its digits", true},
      {withId(kId, R"("deposit":{"customer":7})"), "json: ", true},
      // JSON is UTF-8, and a raw control character is no JSON string.
      {withId(kId, R"("deposit":{"customer":")"
                   "\xff"
                   R"("})"),
       "json: parse error", false},
      {withId(kId, R"("deposit":{"customer":")"
                   "\x1f"
                   R"("})"),
       "json: parse error", false},
      {withId(kId, R"("deposit":{"customer":"a","amount":1.5})"), "whole numbers", true},
      {withId(kId, R"("deposit":{"customer":"a","amount":"ten"})"),
       "json: String does not contain valid number", true},
      {withId(kId, R"("deposit":{"customer":"a","amount":"99999999999999999999"})"),
       "json: ", true},
      {withId(kId, R"("deposit":[1,2])"), "json: a value has the wrong JSON type", true},
      {withId(kId, R"("deposit":{"customer":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}})"),
       "json: nested deeper than 8 levels", false},
      {"{" + std::string(kMaxFrameBytes, ' ') + "}", "json: frame of 16386 bytes exceeds the limit",
       false},
  };
  for (const auto& c : cases) {
    CAPTURE(c.frame.substr(0, 120));
    DecodedCommand decoded = wire.decodeCommand(c.frame);
    CHECK_FALSE(decoded.command);
    CHECK(decoded.malformed.find(c.why) != std::string::npos);
    CHECK(decoded.malformed.starts_with("json: "));
    CHECK_FALSE(decoded.malformed.starts_with("json: expected"));  // no check's source text
    CHECK((decoded.id == id) == c.idRead);
  }
}

TEST_CASE("a malformed reply never carries the client's bytes raw") {
  JsonWire wire;
  // An unknown key, which the parser's message quotes: in the JSON text,
  // escapes that read as ESC and a newline.
  std::string frame = withId(kId, R"("deposit":{"customer":"a","evil\u001b[2J\nshopd: forged":1})");
  DecodedCommand decoded = wire.decodeCommand(frame);
  REQUIRE_FALSE(decoded.command);
  CAPTURE(decoded.malformed);
  CHECK(decoded.malformed.find("Unknown field") != std::string::npos);
  CHECK(decoded.malformed.find('\n') == std::string::npos);
  CHECK(decoded.malformed.find('\x1b') == std::string::npos);
  CHECK(decoded.malformed.find("\xEF\xBF\xBD[2J\xEF\xBF\xBDshopd: forged") !=
        std::string::npos);  // U+FFFD instead
  // A byte that is not UTF-8: the parser's message quotes what it read.
  DecodedCommand notUtf8 = wire.decodeCommand(withId(kId, R"("deposit":{"customer":"a","bad)"
                                                          "\xff"
                                                          R"(":1})"));
  REQUIRE_FALSE(notUtf8.command);
  CHECK(notUtf8.malformed.find("ill-formed UTF-8") != std::string::npos);
  CHECK(notUtf8.malformed.find('\xff') == std::string::npos);
  // A long key is cut.
  DecodedCommand longKey =
      wire.decodeCommand(withId(kId, R"("deposit":{")" + std::string(5000, 'k') + R"(":1})"));
  CHECK(longKey.malformed.size() < 300);
}

TEST_CASE("JSON commands of every kind meet the same validation, gate and dedupe as binary ones") {
  EmbeddedServer server;
  EventProbe probe(server.context(), server.events(), server.commands());
  Client client(server.context(), server.commands());
  JsonDealer dealer(server);

  SUBCASE("every kind is answered in JSON, and its events are the binary stream's") {
    json r =
        dealer.call(withId(fresh(), R"("addProduct":{"product":"pear","price":"99","stock":5})"));
    CHECK(r["accepted"]["productAdded"]["product"] == "pear");
    r = dealer.call(withId(fresh(), R"("restock":{"product":"pear","quantity":"5"})"));
    CHECK(r["accepted"]["productRestocked"]["stock"] == "10");
    r = dealer.call(
        withId(fresh(), R"("createCustomer":{"customer":"ann","initialBalance":1000})"));
    CHECK(r["accepted"]["customerCreated"]["customer"] == "ann");
    r = dealer.call(withId(fresh(), R"("deposit":{"customer":"ann","amount":"500"})"));
    CHECK(r["accepted"]["fundsDeposited"]["balance"] == "1500");
    r = dealer.call(
        withId(fresh(), R"("buyProduct":{"customer":"ann","product":"pear","quantity":3})"));
    CHECK(r["accepted"]["productBought"]["balance"] == "1203");
    r = dealer.call(
        withId(fresh(), R"("returnProduct":{"customer":"ann","product":"pear","quantity":1})"));
    CHECK(r["accepted"]["productReturned"]["quantity"] == "1");
    r = dealer.call(withId(fresh(), R"("getCustomer":{"customer":"ann"})"));
    CHECK(r["customer"]["balance"] == "1302");
    CHECK(r["customer"]["holdings"][0]["quantity"] == "2");
    r = dealer.call(withId(fresh(), R"("readEvents":{"fromSeq":"0","maxCount":3})"));
    CHECK(r["events"]["events"].size() == 3);
    CHECK(r["events"]["events"][0]["seq"] == "1");
    CHECK(r["events"]["serverId"].get<std::string>() != "0");
    r = dealer.call(withId(fresh(), R"("getStats":{})"));
    CHECK(r["stats"]["customers"] == "1");
    CHECK(r["stats"]["uptimeMs"].is_string());
    probe.expectInOrder({m::event<ProductAdded>(), m::event<ProductRestocked>(),
                         m::event<CustomerCreated>("ann"), m::event<FundsDeposited>("ann"),
                         m::event<ProductBought>("ann"), m::event<ProductReturned>("ann")});
  }

  SUBCASE("validation: bad values are rejected with a reason, and the rejection is published") {
    json r =
        dealer.call(withId(fresh(), R"("createCustomer":{"customer":"a/b","initialBalance":1})"));
    CHECK(r["rejected"]["reason"] == "invalidId");
    r = dealer.call(
        withId(fresh(), R"("createCustomer":{"customer":"neg","initialBalance":"-1"})"));
    CHECK(r["rejected"]["reason"] == "invalidAmount");
    r = dealer.call(
        withId(fresh(), R"("buyProduct":{"customer":"nobody","product":"apple","quantity":0})"));
    CHECK(r["rejected"]["reason"] == "invalidQuantity");
    CHECK(r["rejected"]["seq"].get<std::string>() != "0");
    probe.expect(m::rejected(RejectReason::invalidQuantity, "nobody"));
  }

  SUBCASE("dedupe: the same commandId sent as binary and then as JSON is one command") {
    Command create{CommandId::random(), CreateCustomer{"bob", 100}};
    auto first = client.call(create);
    REQUIRE(first.ok());
    REQUIRE(first.reply->reply.status == ReplyStatus::accepted);
    json again = dealer.call(
        withId(hexOf(create.id), R"("createCustomer":{"customer":"bob","initialBalance":100})"));
    CHECK(again["commandId"] == hexOf(create.id));
    CHECK(again["accepted"]["seq"] == std::to_string(first.reply->reply.event->seq));
    probe.expect(m::event<CustomerCreated>("bob"));
    CHECK(server.withEngine([](Engine& e) { return e.log().headSeq(); }) ==
          first.reply->reply.event->seq);
  }

  SUBCASE("the gate: the sixth JSON buy pending for one customer is rejected at once") {
    REQUIRE(client.call({CommandId::random(), AddProduct{"fig", 10, 100}}).ok());
    REQUIRE(client.call({CommandId::random(), CreateCustomer{"gated", 10'000}}).ok());
    unsigned shard = server.holdShardOfCustomer("gated");
    for (int i = 0; i < 6; ++i) {
      dealer.send(
          withId(fresh(), R"("buyProduct":{"customer":"gated","product":"fig","quantity":1})"));
    }
    json sixth = dealer.receive();  // the only reply while the shard is held
    CHECK(sixth["rejected"]["reason"] == "tooManyPending");
    server.resumeShard(shard);
    for (int i = 0; i < 5; ++i) CHECK(dealer.receive().contains("accepted"));
  }

  SUBCASE("malformed JSON gets a JSON reply and publishes nothing; the server goes on") {
    json r = dealer.call("{\"commandId\": 12");
    CHECK(r["commandId"] == "00000000000000000000000000000000");
    CHECK(r["malformed"].get<std::string>().starts_with("json: "));
    Seq head = server.withEngine([](Engine& e) { return e.log().headSeq(); });
    r = dealer.call(withId(fresh(), R"("getStats":{})"));
    CHECK(r["stats"]["headSeq"] == std::to_string(head));
    CHECK(server.stats().malformed == 1);
  }
}

TEST_CASE("the JSON events socket publishes the binary stream's events, topics and order") {
  auto config = EmbeddedServer::defaultConfig();
  config.eventsJsonEndpoint = "tcp://127.0.0.1:*";
  EmbeddedServer server(config);
  REQUIRE_FALSE(server.eventsJson().empty());
  Client client(server.context(), server.commands());
  auto subscribe = [&](const std::string& endpoint) {
    zmq::socket_t sub(server.context(), zmq::socket_type::sub);
    sub.set(zmq::sockopt::subscribe, "");
    sub.set(zmq::sockopt::rcvtimeo, 5000);
    sub.connect(endpoint);
    return sub;
  };
  zmq::socket_t binary = subscribe(server.events());
  zmq::socket_t text = subscribe(server.eventsJson());
  // A SUB socket joins a moment after connect. Publish until both have
  // seen an event: a wait on the event, not on a clock.
  auto receive = [](zmq::socket_t& sub, int timeoutMs) {
    std::vector<zmq::message_t> frames;
    sub.set(zmq::sockopt::rcvtimeo, timeoutMs);
    if (!zmq::recv_multipart(sub, std::back_inserter(frames))) frames.clear();
    return frames;
  };
  Seq joined = 0;
  for (int i = 0; joined == 0; ++i) {
    REQUIRE(i < 500);
    REQUIRE(client.call({CommandId::random(), CreateCustomer{"warm" + std::to_string(i), 1}}).ok());
    auto a = receive(binary, 10);
    auto b = receive(text, 10);
    if (a.empty() || b.empty()) continue;
    // Both see every event from the later of their first seqs on.
    Seq sa = readFrame<wire::Event>(a[1], [](wire::Event::Reader e) { return e.getSeq(); });
    Seq sb = std::stoull(json::parse(b[1].to_string())["seq"].get<std::string>());
    joined = std::max(sa, sb) + 1;
  }
  for (int i = 0; i < 20; ++i) {
    REQUIRE(client.call({CommandId::random(), CreateCustomer{"c" + std::to_string(i), 5}}).ok());
    client.call({CommandId::random(), BuyProduct{"c" + std::to_string(i), "apple", 99}});
  }
  Seq head = server.withEngine([](Engine& e) { return e.log().headSeq(); });
  JsonWire wire;
  auto skipTo = [&](zmq::socket_t& sub, bool isJson) {
    for (;;) {
      auto frames = receive(sub, 5000);
      REQUIRE(frames.size() == 2);
      Seq seq = isJson ? std::stoull(json::parse(frames[1].to_string())["seq"].get<std::string>())
                       : readFrame<wire::Event>(frames[1], [](auto e) { return e.getSeq(); });
      if (seq >= joined) return frames;
    }
  };
  std::vector<zmq::message_t> a = skipTo(binary, false);
  std::vector<zmq::message_t> b = skipTo(text, true);
  for (Seq seq = joined; seq <= head; ++seq) {
    CAPTURE(seq);
    if (seq > joined) {
      a = receive(binary, 5000);
      b = receive(text, 5000);
    }
    REQUIRE(a.size() == 2);
    REQUIRE(b.size() == 2);
    CHECK(a[0].to_string() == b[0].to_string());
    // The JSON body is the binary event, field for field.
    std::vector<capnp::word> words(a[1].size() / sizeof(capnp::word));
    std::memcpy(words.data(), a[1].data(), words.size() * sizeof(capnp::word));
    CHECK(b[1].to_string() == wire.event(kj::arrayPtr(words.data(), words.size())).to_string());
    CHECK(json::parse(b[1].to_string())["seq"] == std::to_string(seq));
  }
}
