// The journal on real files: what is committed reads back, a torn tail is
// cut off, damage elsewhere stops the read, the directory is locked, and an
// engine recovered from it is the engine that wrote it.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/event_codec.h"
#include "core/journal.h"
#include "core/journal_history.h"
#include "tests/testkit/engine_harness.h"
#include "tests/testkit/temp_dir.h"

using namespace shop;
using shop::testkit::EngineHarness;
using shop::testkit::TempDir;
namespace fs = std::filesystem;

namespace {

std::string bytesOf(kj::ArrayPtr<const capnp::word> m) {
  return std::string(reinterpret_cast<const char*>(m.begin()), m.size() * sizeof(capnp::word));
}

// Encoded events with seqs 1..n, as the engine would log them.
struct Events {
  EventLog log{100'000};
  EventEncoder encoder;
  std::vector<std::vector<capnp::word>> messages;
  std::vector<std::string> bytes;  // the same, to compare
  explicit Events(size_t n) {
    for (size_t i = 1; i <= n; ++i) {
      Event e{i, 1'800'000'000'000'000'000 + static_cast<int64_t>(i), CommandId::random(),
              FundsDeposited{"customer-" + std::to_string(i % 17), static_cast<Money>(i),
                             static_cast<Money>(1000 + i)}};
      auto m = encoder.append(e, log);
      messages.emplace_back(m.begin(), m.end());
      bytes.push_back(bytesOf(m));
    }
  }
};

// Writes `events` through a journal in batches of `batch`, and stops it.
uint64_t writeAll(const JournalConfig& config, const Events& events, size_t batch,
                  uint64_t serverId = 42) {
  Journal journal(config);
  CHECK(journal.recover([](Seq, kj::ArrayPtr<const capnp::word>) {}).headSeq == 0);
  journal.start(serverId, 1);
  uint64_t last = 0;
  for (size_t i = 0; i < events.messages.size(); ++i) {
    const auto& m = events.messages[i];
    journal.append({m.data(), m.size()});
    if ((i + 1) % batch == 0) last = journal.commit();
  }
  if (uint64_t n = journal.commit()) last = n;
  journal.waitDurable(last);
  CHECK(journal.durable() == last);
  CHECK_FALSE(journal.failed());
  return last;
}

struct ReadBack {
  JournalContents contents;
  std::vector<std::string> messages;
};

ReadBack readBack(const std::string& dir) {
  ReadBack out;
  out.contents = readJournal(dir, [&](Seq seq, kj::ArrayPtr<const capnp::word> m) {
    CHECK(seq == out.messages.size() + 1);
    out.messages.push_back(bytesOf(m));
  });
  return out;
}

std::vector<fs::path> segmentsOf(const std::string& dir) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".journal") out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void appendBytes(const fs::path& file, const std::string& bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::app);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void flipByte(const fs::path& file, uint64_t offset) {
  std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5A);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// The offset of record `index` (from 0) in a segment.
uint64_t recordOffset(const fs::path& file, size_t index) {
  std::ifstream in(file, std::ios::binary);
  uint64_t at = JournalFormat::kHeaderBytes;
  for (size_t i = 0; i < index; ++i) {
    in.seekg(static_cast<std::streamoff>(at));
    uint32_t length = 0;
    in.read(reinterpret_cast<char*>(&length), 4);
    at += JournalFormat::kRecordHeaderBytes + length;
  }
  return at;
}

}  // namespace

TEST_CASE("crc32c is the Castagnoli checksum, and extends across pieces") {
  CHECK(crc32c("123456789", 9) == 0xE3069283u);
  CHECK(crc32c("6789", 4, crc32c("12345", 5)) == 0xE3069283u);
}

TEST_CASE("journal: what is committed reads back in order, across segment roll-over") {
  TempDir dir;
  Events events(2000);
  JournalConfig config{.dir = dir.str(), .segmentBytes = 16 * 1024};
  writeAll(config, events, 7);

  ReadBack back = readBack(dir.str());
  CHECK(back.contents.serverId == 42);
  CHECK(back.contents.headSeq == 2000);
  CHECK_FALSE(back.contents.truncated);
  CHECK(back.contents.segments > 3);
  CHECK(back.contents.segments == segmentsOf(dir.str()).size());
  REQUIRE(back.messages.size() == events.bytes.size());
  CHECK(back.messages == events.bytes);
}

TEST_CASE("journal: every fsync mode makes a committed batch durable and readable") {
  for (FsyncMode mode : {FsyncMode::always, FsyncMode::interval, FsyncMode::never}) {
    CAPTURE(name(mode));
    TempDir dir;
    Events events(300);
    writeAll({.dir = dir.str(), .fsync = mode, .fsyncInterval = std::chrono::milliseconds(5)},
             events, 10);
    CHECK(readBack(dir.str()).messages == events.bytes);
  }
}

TEST_CASE("journal: a torn tail of the newest segment is cut off, and writing goes on after it") {
  TempDir dir;
  Events events(100);
  JournalConfig config{.dir = dir.str()};
  writeAll(config, events, 10);
  fs::path newest = segmentsOf(dir.str()).back();
  uintmax_t whole = fs::file_size(newest);

  SUBCASE("a record cut short") {
    std::string partial(8 + 24, '\0');
    uint32_t length = 64;  // says 64 bytes, has 24
    std::memcpy(partial.data(), &length, 4);
    appendBytes(newest, partial);
  }
  SUBCASE("a whole record whose checksum does not match") {
    std::string bad(8 + 16, '\x11');
    uint32_t length = 16;
    std::memcpy(bad.data(), &length, 4);
    appendBytes(newest, bad);
  }
  SUBCASE("zeros, as a file extended but never written") {
    appendBytes(newest, std::string(4096, '\0'));
  }

  ReadBack back = readBack(dir.str());
  REQUIRE(back.contents.truncated);
  CHECK(back.contents.truncated->find(newest.string()) != std::string::npos);
  CHECK(back.contents.truncated->find("offset " + std::to_string(whole)) != std::string::npos);
  CHECK(fs::file_size(newest) == whole);
  CHECK(back.messages == events.bytes);

  // The next run carries on from seq 101.
  {
    Journal journal(config);
    CHECK(journal.recover([](Seq, kj::ArrayPtr<const capnp::word>) {}).headSeq == 100);
    journal.start(42, 101);
    Events more(101);
    const auto& m = more.messages.back();
    journal.append({m.data(), m.size()});
    journal.waitDurable(journal.commit());
  }
  CHECK(readBack(dir.str()).contents.headSeq == 101);
}

TEST_CASE("journal: damage that is not a torn tail stops the read, naming the file and offset") {
  TempDir dir;
  Events events(400);
  JournalConfig config{.dir = dir.str(), .segmentBytes = 8 * 1024};
  writeAll(config, events, 5);
  auto segments = segmentsOf(dir.str());
  REQUIRE(segments.size() >= 2);

  fs::path file;
  uint64_t offset = 0;
  SUBCASE("a record in an older segment") {
    file = segments.front();
    offset = recordOffset(file, 3);
    flipByte(file, offset + 20);  // inside the message
  }
  SUBCASE("a record in the newest segment with good records after it") {
    file = segments.back();
    offset = recordOffset(file, 1);
    flipByte(file, offset + 12);
  }
  SUBCASE("a segment header") {
    file = segments[1];
    offset = 0;
    flipByte(file, 17);  // the server id
  }
  uintmax_t size = fs::file_size(file);
  try {
    readBack(dir.str());
    FAIL("a damaged journal was read");
  } catch (const JournalCorrupt& e) {
    CHECK(e.file == file.string());
    CHECK(e.offset == offset);
    CHECK(std::string(e.what()).find(file.string()) != std::string::npos);
  }
  CHECK(fs::file_size(file) == size);  // nothing cut
}

TEST_CASE("journal: a missing segment is a gap, and a gap stops the read") {
  TempDir dir;
  Events events(400);
  writeAll({.dir = dir.str(), .segmentBytes = 8 * 1024}, events, 5);
  auto segments = segmentsOf(dir.str());
  REQUIRE(segments.size() >= 3);
  fs::remove(segments[1]);
  CHECK_THROWS_WITH_AS(readBack(dir.str()), doctest::Contains("a segment is missing"),
                       JournalCorrupt);
}

TEST_CASE("journal: a second journal on the same directory is refused while the first lives") {
  TempDir dir;
  JournalConfig config{.dir = dir.str()};
  {
    Journal first(config);
    std::string holder = "in use by another process (pid " + std::to_string(::getpid()) + ")";
    CHECK_THROWS_WITH_AS(Journal{config}, doctest::Contains(holder.c_str()), JournalLocked);
  }
  Journal again(config);  // the lock went with the first
}

TEST_CASE("an engine recovered from the journal is the engine that wrote it") {
  TempDir dir;
  JournalConfig config{.dir = dir.str(), .segmentBytes = 4096};
  const EngineConfig engineConfig{.shards = 3};

  ShopState before;
  Seq head = 0;
  uint64_t serverId = 0;
  CommandId deposit = CommandId::random();
  CommandId overdraft = CommandId::random();
  Reply depositReply, overdraftReply;
  {
    Journal journal(config);
    journal.recover([](Seq, kj::ArrayPtr<const capnp::word>) {});
    EngineHarness h(engineConfig, &journal);
    journal.start(h.engine.serverId(), 1);
    h.run(AddProduct{"apple", 150, 1000});
    h.run(AddProduct{"pear", 90, 10});
    for (int c = 0; c < 40; ++c) {
      std::string id = "c" + std::to_string(c);
      h.run(CreateCustomer{id, 10'000});
      h.run(BuyProduct{id, c % 2 ? "apple" : "pear", 1 + c % 3});
      if (c % 5 == 0) h.run(ReturnProduct{id, "apple", 1});
    }
    h.run(Restock{"pear", 7});
    depositReply = h.run(Deposit{"c1", 250}, deposit);
    overdraftReply = h.run(BuyProduct{"c2", "apple", 1000}, overdraft);
    h.run(Deposit{"bad/id", 5});  // rejected: invalid id
    REQUIRE(depositReply.status == ReplyStatus::accepted);
    REQUIRE(overdraftReply.rejection());
    before = h.engine.snapshot();
    head = h.engine.log().headSeq();
    serverId = h.engine.serverId();
    journal.waitDurable(journal.committed());
    CHECK(journal.stats().segments.load() > 1);
  }

  Journal journal(config);
  EngineHarness h(engineConfig, &journal);
  JournalContents contents = journal.recover(
      [&](Seq, kj::ArrayPtr<const capnp::word> message) { h.engine.recover(message); });
  h.engine.finishRecovery(contents.serverId);
  journal.start(h.engine.serverId(), h.engine.log().headSeq() + 1);

  CHECK(contents.headSeq == head);
  CHECK(h.engine.log().headSeq() == head);
  CHECK(h.engine.serverId() == serverId);
  CHECK(h.engine.snapshot() == before);

  // Retried across the restart: the original outcome, and nothing applied.
  Reply again = h.run(Deposit{"c1", 250}, deposit);
  REQUIRE(again.status == ReplyStatus::accepted);
  CHECK(again.event->seq == depositReply.event->seq);
  Reply refused = h.run(BuyProduct{"c2", "apple", 1000}, overdraft);
  REQUIRE(refused.rejection());
  CHECK(refused.rejection()->reason == overdraftReply.rejection()->reason);
  CHECK(refused.event->seq == overdraftReply.event->seq);
  CHECK(h.engine.log().headSeq() == head);
  CHECK(h.listener.events.empty());
  CHECK(h.engine.snapshot() == before);

  // New work carries on the sequence, and the stock the sequencer states
  // is the recovered one.
  Reply bought = h.run(BuyProduct{"c3", "pear", 1});
  REQUIRE(bought.status == ReplyStatus::accepted);
  CHECK(bought.event->seq == head + 1);
  CHECK(std::get<ProductBought>(bought.event->body).balance ==
        before.customers.at("c3").balance - 90);
  CHECK(testkit::firstStatedMismatch(h.listener.events).empty());
}

TEST_CASE("the history reader pages any seq range from the segments, across roll-overs") {
  TempDir dir;
  Events events(5000);
  // About 2,500 records a segment: reads land before, on and past the
  // sparse index's 1,024-record marks, and across two roll-overs.
  writeAll({.dir = dir.str(), .segmentBytes = 96 * 1024}, events, 13);
  REQUIRE(segmentsOf(dir.str()).size() >= 2);
  SegmentReader reader(dir.str());
  auto page = [&](Seq from, uint32_t count, size_t maxBytes = SIZE_MAX) {
    HistoryPage p;
    p.request = HistoryRequest{.from = from, .maxCount = count, .maxBytes = maxBytes};
    reader.read(p);
    CHECK(p.error == "");
    return p;
  };
  for (Seq from :
       {Seq{1}, Seq{1024}, Seq{1025}, Seq{2400}, Seq{3000}, Seq{4999}, Seq{5000}, Seq{700}}) {
    CAPTURE(from);
    HistoryPage p = page(from, 700);
    size_t want = std::min<size_t>(700, 5000 - from + 1);
    REQUIRE(p.messages.size() == want);
    for (size_t i = 0; i < want; ++i) CHECK(bytesOf(p.messages[i]) == events.bytes[from - 1 + i]);
    CHECK_FALSE(p.capped);
  }
  CHECK(page(5001, 10).messages.empty());  // past the end: nothing, no error
  // The byte cap stops a page early and says so; one event always fits.
  HistoryPage capped = page(10, 1000, 3 * events.bytes[9].size());
  CHECK(capped.capped);
  CHECK(capped.messages.size() == 3);
  CHECK(page(10, 1000, 1).messages.size() == 1);
}
