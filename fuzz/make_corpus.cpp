// Writes the seed corpus: fuzz_make_corpus CORPUS_DIR (normally fuzz/corpus).
//
// command/seed-*: a valid frame of every command kind, encoded with the real
// encoders (bus::toWire, bus::toFrame), a few that the engine rejects, a few
// malformed ones, and multi-frame inputs that play a short story. The ids
// they name (alice, bob, apple, banana, tv) are the fuzz_command fixtures.
// catalog/seed-*: catalog/default.json and edge cases around it.
// journal/seed-*: journal segments, written by the real Journal.
// snapshot/seed-*: snapshot files, written by the real writer.
//
// Only seed-* files are (re)written; what fuzzing added stays. Run by hand
// after changing the schema or the fixtures, not in CI.
#include <capnp/message.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "bus/codec.h"
#include "bus/json.h"
#include "core/event_codec.h"
#include "core/journal.h"
#include "core/snapshot.h"
#include "fuzz/harness.h"

namespace shop::fuzz {
namespace {

namespace fs = std::filesystem;

CommandId seedId(uint64_t n) {
  return CommandId::fromNumber(0x73656564'636f7270, n);  // "seedcorp"
}

std::string bytesOf(const zmq::message_t& frame) {
  return std::string(frame.data<char>(), frame.size());
}

std::string frameOf(const Command& command) {
  capnp::MallocMessageBuilder message;
  bus::toWire(command, message.initRoot<wire::Command>());
  return bytesOf(bus::toFrame(message));
}

// The same command spread over one-word segments: every pointer is a far pointer.
std::string fragmentedFrameOf(const Command& command) {
  capnp::MallocMessageBuilder message(1, capnp::AllocationStrategy::FIXED_SIZE);
  bus::toWire(command, message.initRoot<wire::Command>());
  return bytesOf(bus::toFrame(message));
}

// A frame whose union discriminant is `which`, as from a newer client.
std::string frameWithWhich(const Command& command, uint16_t which) {
  std::string frame = frameOf(command);
  // Single segment: 8 bytes of segment table, then the root pointer, whose
  // offset (in words, from the word after it) leads to the struct's data
  // section. The discriminant is Command's first data field.
  uint64_t root;
  std::memcpy(&root, frame.data() + 8, 8);
  int32_t offset = static_cast<int32_t>(static_cast<uint32_t>(root)) >> 2;
  size_t data = 8 + 8 * static_cast<size_t>(1 + offset);
  std::memcpy(frame.data() + data, &which, sizeof which);
  return frame;
}

std::string frameWithIdBytes(size_t n) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<wire::Command>();
  std::vector<kj::byte> id(n, 0x42);
  root.setCommandId(kj::arrayPtr(id.data(), id.size()));
  root.initGetCustomer().setCustomer("alice");
  return bytesOf(bus::toFrame(message));
}

std::string joined(const std::vector<std::string>& frames) {
  std::string out;
  for (const auto& f : frames) {
    if (!out.empty()) out += kFrameSeparator;
    out += f;
  }
  return out;
}

std::string jsonOf(const Command& command) {
  static const bus::JsonWire wire;
  return wire.commandText(command);
}

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

void writeCommands(const fs::path& dir) {
  uint64_t n = 1;
  auto cmd = [&n](CommandBody body) { return Command{seedId(n++), std::move(body)}; };
  struct Seed {
    const char* name;
    std::string bytes;
  };
  const std::vector<Seed> seeds = {
      // One of each kind, accepted against the fixtures.
      {"create-customer", frameOf(cmd(CreateCustomer{"carol", 5000}))},
      {"deposit", frameOf(cmd(Deposit{"alice", 2500}))},
      {"buy-product", frameOf(cmd(BuyProduct{"alice", "apple", 2}))},
      {"return-product", frameOf(cmd(ReturnProduct{"alice", "apple", 1}))},
      {"add-product", frameOf(cmd(AddProduct{"pear", 120, 10}))},
      {"restock", frameOf(cmd(Restock{"banana", 50}))},
      {"get-customer", frameOf(cmd(GetCustomer{"alice"}))},
      {"read-events", frameOf(cmd(ReadEvents{0, 0}))},
      {"read-events-page", frameOf(cmd(ReadEvents{2, 3}))},
      // Rejected by validation or by an aggregate.
      {"create-customer-exists", frameOf(cmd(CreateCustomer{"alice", 1}))},
      {"create-customer-bad-id", frameOf(cmd(CreateCustomer{"a/b", 0}))},
      {"deposit-negative", frameOf(cmd(Deposit{"bob", -1}))},
      {"buy-insufficient-funds", frameOf(cmd(BuyProduct{"bob", "tv", 1}))},
      {"buy-out-of-stock", frameOf(cmd(BuyProduct{"alice", "tv", 6}))},
      {"return-not-owned", frameOf(cmd(ReturnProduct{"bob", "banana", 1}))},
      {"restock-unknown", frameOf(cmd(Restock{"kiwi", 1}))},
      {"get-customer-unknown", frameOf(cmd(GetCustomer{"zed"}))},
      {"add-product-nul-id", frameOf(cmd(AddProduct{std::string("nu\0l", 4), 1, 1}))},
      // Malformed: the server answers `malformed`.
      {"malformed-unknown-kind", frameWithWhich(cmd(GetCustomer{"alice"}), 99)},
      {"malformed-short-id", frameWithIdBytes(15)},
      {"malformed-truncated", frameOf(cmd(Deposit{"alice", 1})).substr(0, 24)},
      {"malformed-odd-size", frameOf(cmd(Deposit{"alice", 1})).substr(0, 13)},
      {"fragmented-buy", fragmentedFrameOf(cmd(BuyProduct{"alice", "banana", 1}))},
      // Stories: several frames in one input.
      {"story-buy-return",
       joined({frameOf(cmd(CreateCustomer{"dave", 1000})),
               frameOf(cmd(BuyProduct{"dave", "banana", 3})),
               frameOf(cmd(ReturnProduct{"dave", "banana", 2})),
               frameOf(cmd(GetCustomer{"dave"}))})},
      {"story-int64-edges",
       joined({frameOf(cmd(CreateCustomer{"erin", LLONG_MAX})),
               frameOf(cmd(Deposit{"erin", 1})),
               frameOf(cmd(AddProduct{"gold", LLONG_MAX, 1})),
               frameOf(cmd(BuyProduct{"erin", "gold", 1})),
               frameOf(cmd(Restock{"gold", LLONG_MAX - 1})),
               frameOf(cmd(ReturnProduct{"erin", "gold", 1}))})},
      {"story-retry-same-id",
       [&] {
         Command deposit = cmd(Deposit{"bob", 7});
         Command other = deposit;
         other.body = Deposit{"alice", 9};  // the same commandId, another command
         return joined({frameOf(deposit), frameOf(other)});
       }()},
  };
  for (const auto& seed : seeds) write(dir / (std::string("seed-") + seed.name), seed.bytes);
  std::printf("%zu command seeds in %s\n", seeds.size(), dir.c_str());

  // Reproducers of the fuzzers' findings (fuzz/README.md), each with its own
  // ids; all fixed, they replay as regression tests.
  constexpr int64_t kMax = LLONG_MAX;
  const std::vector<Seed> findings = {
      {"empty-unaligned-frame", ""},
      {"stock-overflow-on-return",
       joined({frameOf(cmd(AddProduct{"k2-product", 1, kMax})),
               frameOf(cmd(CreateCustomer{"k2-customer", 1})),
               frameOf(cmd(BuyProduct{"k2-customer", "k2-product", 1})),
               frameOf(cmd(Restock{"k2-product", 1})),
               frameOf(cmd(ReturnProduct{"k2-customer", "k2-product", 1}))})},
      {"holding-overflow-on-buy",
       joined({frameOf(cmd(AddProduct{"k3-product", 1, kMax})),
               frameOf(cmd(CreateCustomer{"k3-customer", kMax})),
               frameOf(cmd(BuyProduct{"k3-customer", "k3-product", kMax})),
               frameOf(cmd(Restock{"k3-product", 1})), frameOf(cmd(Deposit{"k3-customer", 1})),
               frameOf(cmd(BuyProduct{"k3-customer", "k3-product", 1}))})},
      {"paid-overflow-in-view",
       joined({frameOf(cmd(AddProduct{"k4-product", 2, kMax})),
               frameOf(cmd(CreateCustomer{"k4-customer", kMax})),
               frameOf(cmd(BuyProduct{"k4-customer", "k4-product", kMax / 2})),
               frameOf(cmd(Deposit{"k4-customer", kMax - 1})),
               frameOf(cmd(BuyProduct{"k4-customer", "k4-product", kMax / 2})),
               frameOf(cmd(GetCustomer{"k4-customer"}))})},
  };
  for (const auto& f : findings) write(dir / (std::string("crash-") + f.name), f.bytes);
  std::printf("%zu known-finding reproducers in %s\n", findings.size(), dir.c_str());
  // Added after the findings, so that the ids above stay as they were.
  write(dir / "seed-get-stats", frameOf(cmd(GetStats{})));
  const std::vector<Seed> json = {
      // JSON frames (bus/json.h): a story, and the ways JSON goes wrong.
      {"json-story",
       joined({jsonOf(cmd(CreateCustomer{"jill", 900})), jsonOf(cmd(Deposit{"jill", 100})),
               jsonOf(cmd(BuyProduct{"jill", "apple", 2})),
               jsonOf(cmd(ReturnProduct{"jill", "apple", 1})), jsonOf(cmd(GetCustomer{"jill"})),
               jsonOf(cmd(ReadEvents{1, 2})), jsonOf(cmd(GetStats{}))})},
      {"json-numbers",
       R"({"commandId":"73656564636f72700000000000000063","deposit":{"customer":"alice","amount":250}})"},
      {"json-malformed",
       joined(
           {"{nope", R"({"commandId":"00","getStats":{}})",
            R"({"commandId":"73656564636f72700000000000000064","deposit":{"customer":"alice"},"getStats":{}})",
            R"({"commandId":"73656564636f72700000000000000065","deposit":{"ammount":1}})",
            R"({"commandId":"73656564636f72700000000000000066","deposit":[1]})"})},
  };
  for (const auto& seed : json) write(dir / (std::string("seed-") + seed.name), seed.bytes);
  // The fuzzer's finding: capnp-json 0.9.2 read \u001f as 0x15 (bus/json.h,
  // parseJson); a raw control character in a string is no JSON at all.
  write(
      dir / "crash-json-escapes",
      joined(
          {R"({"commandId":"73656564636f72700000000000000070","createCustomer":{"customer":"ji\u001fl caf\u00e9","initialBalance":"900"}})",
           std::string(
               R"({"commandId":"73656564636f72700000000000000071","createCustomer":{"customer":"ji)") +
               "\x1f" + R"(l","initialBalance":"900"}})"}));
  // Holds: every path, in binary and JSON (hold ids count from 1 in a fresh run).
  write(
      dir / "seed-story-holds",
      joined(
          {frameOf(cmd(HoldProduct{
               .customer = "alice", .product = "apple", .quantity = 2, .ttlMs = 60'000})),
           frameOf(cmd(ConfirmHold{.holdId = 1})), frameOf(cmd(ConfirmHold{.holdId = 1})),
           frameOf(cmd(HoldProduct{.customer = "bob", .product = "tv", .quantity = 1, .ttlMs = 1})),
           frameOf(cmd(ConfirmHold{.holdId = 2})), frameOf(cmd(ReleaseHold{.holdId = 2})),
           frameOf(cmd(ReleaseHold{.holdId = 99})), frameOf(cmd(GetCustomer{"bob"}))}));
  write(dir / "seed-holds-rejected",
        joined({frameOf(cmd(HoldProduct{
                    .customer = "alice", .product = "tv", .quantity = 6, .ttlMs = 1'000})),
                frameOf(cmd(HoldProduct{
                    .customer = "alice", .product = "apple", .quantity = 1, .ttlMs = LLONG_MAX})),
                frameOf(cmd(HoldProduct{
                    .customer = "alice", .product = "apple", .quantity = 1, .ttlMs = -1})),
                frameOf(cmd(ConfirmHold{.holdId = 0})),
                jsonOf(cmd(HoldProduct{
                    .customer = "bob", .product = "banana", .quantity = 3, .ttlMs = 500})),
                jsonOf(cmd(ConfirmHold{.holdId = 1}))}));
}

void writeCatalogs(const fs::path& dir, const fs::path& defaultCatalog) {
  std::ifstream in(defaultCatalog, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + defaultCatalog.string());
  std::stringstream text;
  text << in.rdbuf();
  std::string nested = std::string(200, '[') + std::string(200, ']');
  const std::vector<std::pair<const char*, std::string>> seeds = {
      {"default.json", text.str()},
      {"empty", R"({"products": []})"},
      {"strings-for-numbers",
       R"({"products": [{"product": "apple", "price": "150", "stock": "100"}]})"},
      {"no-stock", R"({"products": [{"product": "pen", "price": 1}]})"},
      {"unicode-escape", R"({"products": [{"product": "caf\u00e9 \ud83d\ude00", "price": 1}]})"},
      {"int64-max",
       R"({"products": [{"product": "gold", "price": "9223372036854775807", "stock": 9223372036854775807}]})"},
      {"duplicate",
       R"({"products": [{"product": "a", "price": 1}, {"product": "a", "price": 2}]})"},
      {"unknown-field", R"({"products": [{"product": "a", "price": 1, "colour": "red"}]})"},
      {"missing-price", R"({"products": [{"product": "a", "stock": 1}]})"},
      {"negative-stock", R"({"products": [{"product": "a", "price": 1, "stock": -1}]})"},
      {"bad-id", R"({"products": [{"product": "a/b", "price": 1}]})"},
      {"int64-overflow", R"({"products": [{"product": "a", "price": 9223372036854775808}]})"},
      {"fraction", R"({"products": [{"product": "a", "price": 1.5}]})"},
      {"null-products", R"({"products": null})"},
      {"top-level-array", "[1, 2, 3]"},
      {"truncated", R"({"products": [{"product": "a", "pr)"},
      {"deep-nesting", R"({"products": )" + nested + "}"},
  };
  for (const auto& [name, bytes] : seeds) write(dir / (std::string("seed-") + name), bytes);
  std::printf("%zu catalog seeds in %s\n", seeds.size(), dir.c_str());
}

// journal/seed-*: segments the real writer wrote: a header alone, one
// record, many, one of each event kind, and a torn tail.
void writeJournals(const fs::path& dir) {
  auto segment = [](const std::vector<EventBody>& bodies, size_t cut) {
    fs::path tmp = fs::temp_directory_path() / ("shop-fuzz-journal-" + std::to_string(::getpid()));
    fs::remove_all(tmp);
    {
      Journal journal(JournalConfig{.dir = tmp.string(), .fsync = FsyncMode::never});
      journal.recover([](Seq, kj::ArrayPtr<const capnp::word>) {});
      journal.start(0x5eed5eed5eed5eed, 1);
      EventLog log(1024);
      EventEncoder encoder;
      Seq seq = 0;
      for (const auto& body : bodies) {
        ++seq;
        journal.append(
            encoder.append(Event{seq, 1'800'000'000'000'000'000, seedId(seq), body}, log));
      }
      if (journal.commit() != 0) journal.waitDurable(journal.committed());
    }
    std::ifstream in(tmp / "00000000000000000001.journal", std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    fs::remove_all(tmp);
    std::string out = bytes.str();
    return out.substr(0, out.size() - std::min(cut, out.size()));
  };
  const std::vector<EventBody> kinds = {
      ProductAdded{"apple", 150, 10},
      CustomerCreated{"alice", 1000},
      FundsDeposited{"alice", 500, 1500},
      ProductBought{"alice", "apple", 2, 150, 1200},
      ProductReturned{"alice", "apple", 1, 150, 1350},
      ProductRestocked{"apple", 5, 14},
      OperationRejected{RejectReason::insufficientFunds, CommandKind::buyProduct, "alice", "apple",
                        "costs 1500, balance is 1350"},
      ProductHeld{1, "alice", "apple", 2, 150, 1'800'000'060'000'000'000},
      HoldConfirmed{1, "alice", "apple", 2, 150, 1050},
      HoldReleased{2, "alice", "apple", 1},
      HoldExpired{3, "alice", "apple", 1}};
  std::vector<EventBody> many;
  for (int i = 0; i < 40; ++i) many.push_back(FundsDeposited{"bob", i + 1, 100 + i});
  const std::vector<std::pair<const char*, std::string>> seeds = {
      {"header-only", segment({}, 0)},   {"one-record", segment({kinds[1]}, 0)},
      {"every-kind", segment(kinds, 0)}, {"many", segment(many, 0)},
      {"torn-tail", segment(kinds, 13)},
  };
  for (const auto& [name, bytes] : seeds) write(dir / (std::string("seed-") + name), bytes);
  std::printf("%zu journal seeds in %s\n", seeds.size(), dir.c_str());
}

// snapshot/seed-*: snapshot files the real writer wrote: no aggregates,
// a few with holdings, several chunks, and one cut short.
void writeSnapshots(const fs::path& dir) {
  auto snapshot = [](int customers, size_t cut) {
    fs::path tmp = fs::temp_directory_path() / ("shop-fuzz-snapshot-" + std::to_string(::getpid()));
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    SnapshotEncoder encoder;
    std::vector<std::pair<std::string, Customer>> owned;
    for (int c = 0; c < customers; ++c) {
      Customer customer{.balance = 1000 + c};
      if (c % 2 == 0) customer.holdings.push_back({"apple", {{150, 2}, {140, 1}}});
      if (c % 3 == 0) customer.holds.push_back({c + 1ull, "apple", 1, 150, 1'800'000'000'000});
      owned.emplace_back("c" + std::to_string(c), std::move(customer));
    }
    for (const auto& [id, customer] : owned) encoder.customer(id, customer);
    Product apple{.price = 150, .stock = 7, .sold = 3, .held = 2};
    if (customers > 0) encoder.product("apple", apple);
    std::vector<SnapshotPart> parts;
    parts.push_back(encoder.finish());
    auto [path, size] = writeSnapshot(
        tmp.string(), SnapshotInfo{.seq = 42, .serverId = 0x5eed5eed5eed5eed, .replayFrom = 3},
        parts);
    std::ifstream in(path, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    fs::remove_all(tmp);
    std::string out = bytes.str();
    return out.substr(0, out.size() - std::min(cut, out.size()));
  };
  const std::vector<std::pair<const char*, std::string>> seeds = {
      {"empty", snapshot(0, 0)},
      {"few", snapshot(3, 0)},
      {"chunks", snapshot(5000, 0)},
      {"cut-short", snapshot(3, 24)},
  };
  for (const auto& [name, bytes] : seeds) write(dir / (std::string("seed-") + name), bytes);
  std::printf("%zu snapshot seeds in %s\n", seeds.size(), dir.c_str());
}

}  // namespace
}  // namespace shop::fuzz

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (argc != 2) {
    std::fprintf(stderr,
                 "usage: %s CORPUS_DIR  (writes CORPUS_DIR/command, /catalog, /journal and "
                 "/snapshot seeds)\n",
                 argv[0]);
    return 2;
  }
  fs::path root = argv[1];
  fs::create_directories(root / "command");
  fs::create_directories(root / "catalog");
  fs::create_directories(root / "journal");
  fs::create_directories(root / "snapshot");
  shop::fuzz::writeCommands(root / "command");
  shop::fuzz::writeCatalogs(root / "catalog", SHOP_DEFAULT_CATALOG);
  shop::fuzz::writeJournals(root / "journal");
  shop::fuzz::writeSnapshots(root / "snapshot");
  return 0;
}
