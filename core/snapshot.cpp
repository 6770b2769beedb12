#include "core/snapshot.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>

#include "core/journal.h"
#include "core/log.h"
#include "core/record_file.h"
#include "schemas/snapshot.capnp.h"

namespace shop {

namespace {

namespace fs = std::filesystem;
using namespace records;

constexpr size_t kChunkAggregates = 4096;
constexpr size_t kChunkBytes = size_t{4} << 20;  // an estimate; far below kMaxRecordBytes

std::string snapshotName(Seq seq) {
  char name[40];
  std::snprintf(name, sizeof name, "%020" PRIu64 ".snapshot", seq);
  return name;
}

kj::Array<capnp::word> encodeInfo(const SnapshotInfo& info) {
  capnp::MallocMessageBuilder builder(16);
  auto root = builder.initRoot<wire::SnapshotInfo>();
  root.setSeq(info.seq);
  root.setServerId(info.serverId);
  root.setReplayFrom(info.replayFrom);
  root.setChunks(info.chunks);
  root.setCustomers(info.customers);
  root.setProducts(info.products);
  root.setNextHoldId(info.nextHoldId);
  return capnp::messageToFlatArray(builder);
}

kj::ArrayPtr<const capnp::word> wordsAt(const kj::byte* p, uint32_t length) {
  return {reinterpret_cast<const capnp::word*>(p), length / sizeof(capnp::word)};
}

SnapshotInfo decodeInfo(kj::ArrayPtr<const capnp::word> message) {
  capnp::FlatArrayMessageReader reader(message);
  auto root = reader.getRoot<wire::SnapshotInfo>();
  return SnapshotInfo{.seq = root.getSeq(),
                      .serverId = root.getServerId(),
                      .replayFrom = root.getReplayFrom(),
                      .chunks = root.getChunks(),
                      .customers = root.getCustomers(),
                      .products = root.getProducts(),
                      .nextHoldId = std::max<HoldId>(root.getNextHoldId(), 1)};
}

// Reads the header and the info record; `at` ends past the info record.
SnapshotInfo readHead(kj::ArrayPtr<const kj::byte> bytes, size_t& at) {
  Header header;
  std::string why;
  if (!parseHeader(bytes, SnapshotFormat::kMagic, SnapshotFormat::kVersion, "snapshot", header,
                   why)) {
    throw SnapshotCorrupt(why);
  }
  at = kHeaderBytes;
  uint32_t length = checkRecord(bytes.begin() + at, bytes.size() - at, &why);
  if (length == 0) throw SnapshotCorrupt("the info record at offset 32: " + why);
  SnapshotInfo info = decodeInfo(wordsAt(bytes.begin() + at + kRecordHeaderBytes, length));
  at += kRecordHeaderBytes + length;
  if (info.seq != header.seq || info.serverId != header.serverId) {
    throw SnapshotCorrupt("the info record does not match the header");
  }
  if (info.replayFrom == 0 || info.replayFrom > info.seq + 1) {
    throw SnapshotCorrupt("replay from seq " + std::to_string(info.replayFrom) +
                          " cannot serve a snapshot at seq " + std::to_string(info.seq));
  }
  return info;
}

}  // namespace

// ---- encoding ---------------------------------------------------------------

struct SnapshotEncoder::Pending {
  std::vector<std::pair<std::string_view, const Customer*>> customers;
  std::vector<std::pair<std::string_view, const Product*>> products;
  size_t bytes = 0;
};

SnapshotEncoder::SnapshotEncoder() : pending_(std::make_unique<Pending>()) {}
SnapshotEncoder::~SnapshotEncoder() = default;
SnapshotEncoder::SnapshotEncoder(SnapshotEncoder&&) noexcept = default;
SnapshotEncoder& SnapshotEncoder::operator=(SnapshotEncoder&&) noexcept = default;

void SnapshotEncoder::customer(std::string_view id, const Customer& customer) {
  pending_->customers.emplace_back(id, &customer);
  pending_->bytes += 48 + id.size();
  for (const auto& holding : customer.holdings) {
    pending_->bytes += 32 + holding.product.size() + 16 * holding.lots.size();
  }
  for (const auto& hold : customer.holds) pending_->bytes += 64 + hold.product.size();
  ++part_.customers;
  flushIfFull();
}

void SnapshotEncoder::product(std::string_view id, const Product& product) {
  pending_->products.emplace_back(id, &product);
  pending_->bytes += 48 + id.size();
  ++part_.products;
  flushIfFull();
}

void SnapshotEncoder::flushIfFull() {
  if (pending_->customers.size() + pending_->products.size() >= kChunkAggregates ||
      pending_->bytes >= kChunkBytes) {
    endChunk();
  }
}

void SnapshotEncoder::endChunk() {
  Pending& p = *pending_;
  if (p.customers.empty() && p.products.empty()) return;
  capnp::MallocMessageBuilder builder(static_cast<unsigned>(p.bytes / sizeof(capnp::word) + 64));
  auto chunk = builder.initRoot<wire::SnapshotChunk>();
  auto customers = chunk.initCustomers(static_cast<unsigned>(p.customers.size()));
  for (size_t i = 0; i < p.customers.size(); ++i) {
    const auto& [id, c] = p.customers[i];
    auto out = customers[static_cast<unsigned>(i)];
    out.setId(capnp::Text::Reader(id.data(), id.size()));
    out.setBalance(c->balance);
    auto holdings = out.initHoldings(static_cast<unsigned>(c->holdings.size()));
    for (size_t h = 0; h < c->holdings.size(); ++h) {
      const ProductLots& held = c->holdings[h];
      auto hout = holdings[static_cast<unsigned>(h)];
      hout.setProduct(held.product);
      auto lots = hout.initLots(static_cast<unsigned>(held.lots.size()));
      for (size_t l = 0; l < held.lots.size(); ++l) {
        lots[static_cast<unsigned>(l)].setUnitPrice(held.lots[l].unitPrice);
        lots[static_cast<unsigned>(l)].setQuantity(held.lots[l].quantity);
      }
    }
    auto holds = out.initHolds(static_cast<unsigned>(c->holds.size()));
    for (size_t h = 0; h < c->holds.size(); ++h) {
      const LiveHold& hold = c->holds[h];
      auto hout = holds[static_cast<unsigned>(h)];
      hout.setHoldId(hold.holdId);
      hout.setProduct(hold.product);
      hout.setQuantity(hold.quantity);
      hout.setUnitPrice(hold.unitPrice);
      hout.setExpiresAtNs(hold.expiresAtNs);
    }
  }
  auto products = chunk.initProducts(static_cast<unsigned>(p.products.size()));
  for (size_t i = 0; i < p.products.size(); ++i) {
    const auto& [id, product] = p.products[i];
    auto out = products[static_cast<unsigned>(i)];
    out.setId(capnp::Text::Reader(id.data(), id.size()));
    out.setPrice(product->price);
    out.setStock(product->stock);
    out.setSold(product->sold);
    out.setHeld(product->held);
  }
  part_.chunks.push_back(capnp::messageToFlatArray(builder));
  p.customers.clear();
  p.products.clear();
  p.bytes = 0;
}

SnapshotPart SnapshotEncoder::finish() {
  endChunk();
  return std::move(part_);
}

// ---- reading ------------------------------------------------------------------

SnapshotInfo readSnapshot(kj::ArrayPtr<const kj::byte> bytes, SnapshotVisitor* visitor) {
  try {
    size_t at = 0;
    SnapshotInfo info = readHead(bytes, at);
    uint64_t customers = 0, products = 0;
    for (uint32_t k = 0; k < info.chunks; ++k) {
      std::string why;
      uint32_t length = checkRecord(bytes.begin() + at, bytes.size() - at, &why);
      if (length == 0) {
        throw SnapshotCorrupt("chunk " + std::to_string(k) + " of " + std::to_string(info.chunks) +
                              " at offset " + std::to_string(at) + ": " + why);
      }
      capnp::FlatArrayMessageReader reader(
          wordsAt(bytes.begin() + at + kRecordHeaderBytes, length));
      auto chunk = reader.getRoot<wire::SnapshotChunk>();
      for (auto c : chunk.getCustomers()) {
        ++customers;
        if (!visitor) continue;
        Customer customer;
        customer.balance = c.getBalance();
        for (auto h : c.getHoldings()) {
          ProductLots held;
          held.product = h.getProduct();
          for (auto lot : h.getLots()) {
            held.lots.push_back(Lot{lot.getUnitPrice(), lot.getQuantity()});
          }
          customer.holdings.push_back(std::move(held));
        }
        for (auto h : c.getHolds()) {
          customer.holds.push_back(LiveHold{h.getHoldId(), h.getProduct(), h.getQuantity(),
                                            h.getUnitPrice(), h.getExpiresAtNs()});
        }
        auto id = c.getId();
        visitor->customer(std::string_view(id.cStr(), id.size()), std::move(customer));
      }
      for (auto p : chunk.getProducts()) {
        ++products;
        if (!visitor) continue;
        auto id = p.getId();
        visitor->product(std::string_view(id.cStr(), id.size()), Product{.price = p.getPrice(),
                                                                         .stock = p.getStock(),
                                                                         .sold = p.getSold(),
                                                                         .held = p.getHeld()});
      }
      at += kRecordHeaderBytes + length;
    }
    if (at != bytes.size()) {
      throw SnapshotCorrupt(std::to_string(bytes.size() - at) + " bytes after the last chunk");
    }
    if (customers != info.customers || products != info.products) {
      throw SnapshotCorrupt("the chunks hold " + std::to_string(customers) + " customers and " +
                            std::to_string(products) + " products, the info record says " +
                            std::to_string(info.customers) + " and " +
                            std::to_string(info.products));
    }
    return info;
  } catch (const kj::Exception& e) {
    // A record whose checksum holds but whose message does not decode.
    throw SnapshotCorrupt(std::string("a record does not decode: ") + e.getDescription().cStr());
  }
}

SnapshotInfo readSnapshotFile(const std::string& path, SnapshotVisitor* visitor) {
  MappedFile file(path);
  try {
    return readSnapshot({file.data(), file.size()}, visitor);
  } catch (const SnapshotCorrupt& e) {
    throw SnapshotCorrupt(path + ": " + e.what());
  }
}

SnapshotInfo readSnapshotInfo(const std::string& path) {
  MappedFile file(path);
  size_t at = 0;
  try {
    return readHead({file.data(), file.size()}, at);
  } catch (const kj::Exception& e) {
    throw SnapshotCorrupt(path + ": the info record does not decode");
  }
}

std::vector<std::pair<Seq, std::string>> listSnapshots(const std::string& dir) {
  std::vector<std::pair<Seq, std::string>> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (name.size() != 29 || !name.ends_with(".snapshot")) continue;
    if (!std::all_of(name.begin(), name.begin() + 20, [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    out.emplace_back(std::stoull(name.substr(0, 20)), entry.path().string());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

// ---- writing ------------------------------------------------------------------

std::pair<std::string, uint64_t> writeSnapshot(const std::string& dir, SnapshotInfo info,
                                               const std::vector<SnapshotPart>& parts) {
  info.chunks = 0;
  info.customers = info.products = 0;
  for (const auto& part : parts) {
    info.chunks += static_cast<uint32_t>(part.chunks.size());
    info.customers += part.customers;
    info.products += part.products;
  }
  std::string path = dir + "/" + snapshotName(info.seq);
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw systemError("cannot create " + tmp);
  uint64_t size = 0;
  try {
    auto header =
        encodeHeader(SnapshotFormat::kMagic, SnapshotFormat::kVersion, info.serverId, info.seq);
    writeAll(fd, header.data(), header.size(), "cannot write a snapshot");
    size += header.size();
    std::vector<kj::byte> record;
    auto put = [&](kj::ArrayPtr<const capnp::word> message) {
      record.clear();
      appendRecord(record, message);
      writeAll(fd, record.data(), record.size(), "cannot write a snapshot");
      size += record.size();
    };
    put(encodeInfo(info));
    for (const auto& part : parts) {
      for (const auto& chunk : part.chunks) put(chunk);
    }
    if (::fdatasync(fd) != 0) throw systemError("cannot sync " + tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int error = errno;
    ::unlink(tmp.c_str());
    errno = error;
    throw systemError("cannot rename " + tmp);
  }
  fsyncDir(dir);
  return {path, size};
}

SnapshotWriter::SnapshotWriter(SnapshotConfig config, std::function<bool(Seq)> durable)
    : config_(std::move(config)), durable_(std::move(durable)) {
  // A temporary file is a write a crash interrupted: never a snapshot.
  for (const auto& entry : fs::directory_iterator(config_.dir)) {
    if (entry.path().filename().string().ends_with(".snapshot.tmp")) fs::remove(entry.path());
  }
  journalStart_.store(firstJournalSeq(config_.dir), std::memory_order_release);
  thread_ = std::thread([this] { run(); });
}

SnapshotWriter::~SnapshotWriter() {
  stopping_.store(true, std::memory_order_release);
  jobs_.enqueue(nullptr);
  thread_.join();
}

void SnapshotWriter::submit(std::unique_ptr<Job> job) {
  {
    std::lock_guard lock(idleMutex_);
    busy_.store(true, std::memory_order_release);
  }
  jobs_.enqueue(std::move(job));
}

void SnapshotWriter::run() {
  pthread_setname_np(pthread_self(), "shop-snapshot");
  for (;;) {
    std::unique_ptr<Job> job;
    jobs_.wait_dequeue(job);
    if (!job) return;
    try {
      write(*job);
    } catch (const std::exception& e) {
      stats_.failed.fetch_add(1, std::memory_order_relaxed);
      logLine("snapshot", "at seq %llu not written: %s",
              static_cast<unsigned long long>(job->info.seq), e.what());
    }
    {
      std::lock_guard lock(idleMutex_);
      busy_.store(false, std::memory_order_release);
    }
    idle_.notify_all();
  }
}

void SnapshotWriter::waitIdle() {
  std::unique_lock lock(idleMutex_);
  idle_.wait(lock, [this] { return !busy_.load(std::memory_order_acquire); });
}

void SnapshotWriter::write(Job& job) {
  auto start = std::chrono::steady_clock::now();
  std::vector<SnapshotPart> parts;
  parts.reserve(job.futures.size());
  for (auto& future : job.futures) {
    // A shard that failed never encodes its part: give up when stopping.
    while (future.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
      if (stopping_.load(std::memory_order_acquire)) {
        throw std::runtime_error("the server stopped before every shard encoded its part");
      }
    }
    parts.push_back(future.get());
  }
  if (!durable_(job.info.seq)) {
    throw std::runtime_error("the journal failed before it held seq " +
                             std::to_string(job.info.seq));
  }
  auto [path, bytes] = writeSnapshot(config_.dir, job.info, parts);
  stats_.written.fetch_add(1, std::memory_order_relaxed);
  stats_.lastSeq.store(job.info.seq, std::memory_order_relaxed);
  lastReplayFrom_ = job.info.replayFrom;
  uint64_t customers = 0, products = 0;
  for (const auto& part : parts) {
    customers += part.customers;
    products += part.products;
  }
  parts.clear();
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  logLine("snapshot", "%s: seq %llu, %llu customers, %llu products, %.1f MB in %.0f ms",
          path.c_str(), static_cast<unsigned long long>(job.info.seq),
          static_cast<unsigned long long>(customers), static_cast<unsigned long long>(products),
          static_cast<double>(bytes) / 1e6, ms);
  try {
    prune();
  } catch (const std::exception& e) {
    // The snapshot is written; only the clean-up is left for the next one.
    logLine("snapshot", "old snapshots and segments not deleted: %s", e.what());
  }
}

void SnapshotWriter::prune() {
  auto snapshots = listSnapshots(config_.dir);
  const size_t keep = std::max<size_t>(config_.keepSnapshots, 1);
  for (size_t i = keep; i < snapshots.size(); ++i) fs::remove(snapshots[i].second);
  if (config_.keepSegments || snapshots.empty()) return;
  // Every snapshot kept must still recover: keep what the one that replays
  // from furthest back needs.
  Seq keepFrom = lastReplayFrom_;
  for (size_t i = 0; i < std::min(snapshots.size(), keep); ++i) {
    keepFrom = std::min(keepFrom, readSnapshotInfo(snapshots[i].second).replayFrom);
  }
  auto segments = journalSegments(config_.dir);
  size_t deleted = 0;
  // A segment goes once the next one starts at or before keepFrom; the
  // newest (being written) never does.
  while (deleted + 1 < segments.size() && segments[deleted + 1].first <= keepFrom) ++deleted;
  if (deleted == 0) return;
  // Readers learn the new start before the files go, so that none is sent
  // to a segment about to be deleted.
  journalStart_.store(segments[deleted].first, std::memory_order_release);
  for (size_t i = 0; i < deleted; ++i) fs::remove(segments[i].second);
  stats_.segmentsDeleted.fetch_add(deleted, std::memory_order_relaxed);
  logLine("snapshot", "deleted %zu journal segment%s before seq %llu (a snapshot covers them)",
          deleted, deleted == 1 ? "" : "s",
          static_cast<unsigned long long>(segments[deleted].first));
}

}  // namespace shop
