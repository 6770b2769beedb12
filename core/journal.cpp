#include "core/journal.h"

#include <fcntl.h>
#include <isa-l/crc.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "core/log.h"

namespace shop {

static_assert(std::endian::native == std::endian::little,
              "the journal is written in the machine's byte order, little-endian");

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  // ISA-L's crc32_iscsi leaves out the standard final inversion.
  return ~crc32_iscsi(static_cast<unsigned char*>(const_cast<void*>(data)), static_cast<int>(size),
                      ~crc);
}

std::optional<FsyncMode> parseFsyncMode(std::string_view text) {
  if (text == "always") return FsyncMode::always;
  if (text == "interval") return FsyncMode::interval;
  if (text == "never") return FsyncMode::never;
  return std::nullopt;
}

const char* name(FsyncMode mode) {
  switch (mode) {
    case FsyncMode::always:
      return "always";
    case FsyncMode::interval:
      return "interval";
    case FsyncMode::never:
      return "never";
  }
  return "?";
}

JournalCorrupt::JournalCorrupt(std::string file_, uint64_t offset_, const std::string& why)
    : std::runtime_error("journal file " + file_ + " is damaged at offset " +
                         std::to_string(offset_) + ": " + why),
      file(std::move(file_)),
      offset(offset_) {}

namespace {

namespace fs = std::filesystem;
using F = JournalFormat;
using namespace records;

std::array<kj::byte, F::kHeaderBytes> encodeHeader(uint64_t serverId, Seq firstSeq) {
  return records::encodeHeader(F::kMagic, F::kVersion, serverId, firstSeq);
}

std::string segmentName(Seq firstSeq) {
  char name[40];
  std::snprintf(name, sizeof name, "%020" PRIu64 ".journal", firstSeq);
  return name;
}

// The segment files of `dir`, by first seq.
std::vector<std::pair<Seq, fs::path>> listSegments(const std::string& dir) {
  std::vector<std::pair<Seq, fs::path>> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (name.size() != 28 || !name.ends_with(".journal")) continue;
    if (!std::all_of(name.begin(), name.begin() + 20, [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    out.emplace_back(std::stoull(name.substr(0, 20)), entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

namespace {

// The header's fields, or why it does not read (scan.stop).
bool parseHeader(kj::ArrayPtr<const kj::byte> bytes, SegmentScan& scan) {
  Header header;
  if (!records::parseHeader(bytes, F::kMagic, F::kVersion, "journal segment", header, scan.stop)) {
    return false;
  }
  scan.serverId = header.serverId;
  scan.firstSeq = header.seq;
  return true;
}

}  // namespace

uint32_t goodRecordLength(const kj::byte* p, size_t left) {
  return checkRecord(p, left, nullptr);
}

MappedFile::MappedFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw systemError("cannot open " + path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int error = errno;
    ::close(fd);
    errno = error;
    throw systemError("cannot stat " + path);
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int error = errno;
      ::close(fd);
      errno = error;
      throw systemError("cannot map " + path);
    }
    ::madvise(p, size_, MADV_SEQUENTIAL);
    data_ = static_cast<const kj::byte*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<kj::byte*>(data_), size_);
}

SegmentScan scanSegment(kj::ArrayPtr<const kj::byte> bytes, const JournalVisitor& visit) {
  SegmentScan scan;
  const kj::byte* base = bytes.begin();
  size_t size = bytes.size();
  if (!parseHeader(bytes, scan)) return scan;
  size_t at = F::kHeaderBytes;
  scan.goodBytes = at;
  while (at < size) {
    uint32_t length = checkRecord(base + at, size - at, &scan.stop);
    if (length == 0) break;
    const auto* words = reinterpret_cast<const capnp::word*>(base + at + F::kRecordHeaderBytes);
    if (visit) visit(scan.firstSeq + scan.records, {words, length / sizeof(capnp::word)});
    ++scan.records;
    at += F::kRecordHeaderBytes + length;
    scan.goodBytes = at;
  }
  if (scan.stop.empty()) return scan;
  // Is anything good past the damage? Then it is not a torn tail.
  for (size_t p = scan.goodBytes + 8; p + F::kRecordHeaderBytes <= size; p += 8) {
    if (checkRecord(base + p, size - p, nullptr) != 0) {
      scan.goodAfter = true;
      break;
    }
  }
  return scan;
}

std::vector<std::pair<Seq, std::string>> journalSegments(const std::string& dir) {
  std::vector<std::pair<Seq, std::string>> out;
  for (auto& [seq, path] : listSegments(dir)) out.emplace_back(seq, path.string());
  return out;
}

Seq firstJournalSeq(const std::string& dir) {
  auto segments = listSegments(dir);
  return segments.empty() ? 0 : segments.front().first;
}

JournalEnd journalEnd(const std::string& dir) {
  auto segments = listSegments(dir);
  for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
    MappedFile file(it->second.string());
    SegmentScan scan = scanSegment({file.data(), file.size()}, nullptr);
    if (scan.firstSeq != 0) return {scan.firstSeq + scan.records - 1, scan.serverId};
    // A header a crash cut short: the segment before holds the last seq.
  }
  return {};
}

JournalContents readJournal(const std::string& dir, const JournalVisitor& visit, Seq fromSeq) {
  JournalContents out;
  auto segments = listSegments(dir);
  // Segments wholly before fromSeq are not read: the next one starts at or
  // before it.
  size_t first = 0;
  while (first + 1 < segments.size() && segments[first + 1].first <= fromSeq) ++first;
  for (size_t i = first; i < segments.size(); ++i) {
    const auto& [named, path] = segments[i];
    const bool newest = i + 1 == segments.size();
    MappedFile file(path.string());
    // Records are read in place: the mapping is page-aligned and records
    // 8-byte aligned, as Cap'n Proto wants.
    Seq expected = out.segments == 0 ? std::min(named, fromSeq) : out.headSeq + 1;
    SegmentScan header;
    if (parseHeader({file.data(), file.size()}, header)) {
      if (header.firstSeq != named) {
        throw JournalCorrupt(path.string(), 24,
                             "the header says first seq " + std::to_string(header.firstSeq) +
                                 ", the file name " + std::to_string(named));
      }
      if (out.segments > 0 && header.serverId != out.serverId) {
        throw JournalCorrupt(path.string(), 16,
                             "a segment of another server (" + serverIdHex(header.serverId) +
                                 ", not " + serverIdHex(out.serverId) + ")");
      }
      if (header.firstSeq != expected) {
        throw JournalCorrupt(
            path.string(), 24,
            "starts at seq " + std::to_string(header.firstSeq) + ", but seq " +
                std::to_string(expected) + " comes next: a segment is missing" +
                (out.segments == 0 ? " (and no usable snapshot covers the seqs before it)" : ""));
      }
    }
    uint64_t offset = 0;
    SegmentScan scan;
    try {
      scan =
          scanSegment({file.data(), file.size()}, [&](Seq seq, kj::ArrayPtr<const capnp::word> m) {
            offset =
                static_cast<uint64_t>(reinterpret_cast<const kj::byte*>(m.begin()) - file.data()) -
                F::kRecordHeaderBytes;
            if (seq >= fromSeq) visit(seq, m);
          });
    } catch (const JournalCorrupt&) {
      throw;
    } catch (const std::exception& e) {
      throw JournalCorrupt(path.string(), offset, e.what());
    }
    if (!scan.stop.empty()) {
      uint64_t at = scan.goodBytes;
      if (!newest || scan.goodAfter) throw JournalCorrupt(path.string(), at, scan.stop);
      // The newest segment's tail: what a crash mid-write leaves. Nothing
      // after it was ever acknowledged, so it is cut off.
      out.truncated = path.string() + " at offset " + std::to_string(at) + ": " + scan.stop;
      if (at < F::kHeaderBytes) {
        fs::remove(path);
      } else if (::truncate(path.c_str(), static_cast<off_t>(at)) != 0) {
        throw systemError("cannot truncate " + path.string());
      }
      fsyncDir(dir);
      if (at < F::kHeaderBytes) continue;
    }
    if (out.segments == 0) out.serverId = scan.serverId;
    ++out.segments;
    out.headSeq = scan.firstSeq + scan.records - 1;
    out.bytes += scan.goodBytes;
  }
  return out;
}

Journal::Journal(const JournalConfig& config) : config_(config) {
  fs::create_directories(config_.dir);
  std::string lockPath = config_.dir + "/LOCK";
  lockFd_ = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lockFd_ < 0) throw systemError("cannot open " + lockPath);
  if (::flock(lockFd_, LOCK_EX | LOCK_NB) != 0) {
    int error = errno;
    char pid[32] = {};
    ssize_t n = ::pread(lockFd_, pid, sizeof pid - 1, 0);
    ::close(lockFd_);
    lockFd_ = -1;
    if (error == EWOULDBLOCK) {
      std::string holder = n > 0 ? std::string(pid, static_cast<size_t>(n)) : "unknown";
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
      throw JournalLocked("the journal directory " + config_.dir +
                          " is in use by another process (pid " + holder + ")");
    }
    errno = error;
    throw systemError("cannot lock " + lockPath);
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lockFd_, 0) != 0 ||
      ::pwrite(lockFd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    logLine("journal", "cannot write the pid into %s: %s", lockPath.c_str(), std::strerror(errno));
  }
}

Journal::~Journal() {
  if (thread_.joinable()) {
    toWrite_.enqueue(std::make_unique<Batch>());  // number 0: stop
    thread_.join();
  }
  if (segmentFd_ >= 0) ::close(segmentFd_);
  if (lockFd_ >= 0) ::close(lockFd_);  // releases the lock
}

JournalContents Journal::recover(const JournalVisitor& visit, Seq fromSeq) {
  return readJournal(config_.dir, visit, fromSeq);
}

void Journal::start(uint64_t serverId, Seq nextSeq) {
  serverId_ = serverId;
  nextSeq_ = nextSeq;
  durableSeq_ = nextSeq - 1;  // what recovery read back is on disk
  openSegment(nextSeq);
  thread_ = std::thread([this] { run(); });
}

void Journal::openSegment(Seq firstSeq) {
  if (segmentFd_ >= 0) {
    if (config_.fsync != FsyncMode::never) sync();
    ::close(segmentFd_);
    segmentFd_ = -1;
  }
  // A file of this name can only hold a header: no record of seq firstSeq
  // was read back, or it would not come next.
  std::string path = config_.dir + "/" + segmentName(firstSeq);
  segmentFd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (segmentFd_ < 0) throw systemError("cannot create " + path);
  auto header = encodeHeader(serverId_, firstSeq);
  writeAll(segmentFd_, header.data(), header.size(), "cannot write a segment header");
  segmentSize_ = header.size();
  if (config_.fsync != FsyncMode::never) {
    if (::fdatasync(segmentFd_) != 0) throw systemError("cannot sync " + path);
    fsyncDir(config_.dir);  // the new name itself must survive a crash
  }
  stats_.segments.fetch_add(1, std::memory_order_relaxed);
}

std::unique_ptr<Journal::Batch> Journal::takeBatch() {
  std::unique_ptr<Batch> batch;
  if (!spare_.try_dequeue(batch)) batch = std::make_unique<Batch>();
  batch->bytes.clear();
  return batch;
}

void Journal::append(kj::ArrayPtr<const capnp::word> message) {
  if (!staging_) staging_ = takeBatch();
  auto& bytes = staging_->bytes;
  if (bytes.empty()) staging_->firstSeq = nextSeq_;
  ++nextSeq_;
  size_t at = bytes.size();
  size_t length = message.size() * sizeof(capnp::word);
  bytes.resize(at + F::kRecordHeaderBytes + length);
  putU32(bytes.data() + at, static_cast<uint32_t>(length));
  putU32(bytes.data() + at + 4, 0);  // the journal thread writes the checksum
  std::memcpy(bytes.data() + at + F::kRecordHeaderBytes, message.begin(), length);
}

uint64_t Journal::commit() {
  if (!staging_ || staging_->bytes.empty()) return 0;
  staging_->number = ++committed_;
  staging_->lastSeq = nextSeq_ - 1;
  toWrite_.enqueue(std::move(staging_));
  return committed_;
}

void Journal::waitDurable(uint64_t number) {
  while (durable() < number && !failed()) {
    if (wakeup_.wait(100)) wakeup_.clear();
  }
}

bool Journal::waitDurableSeq(Seq seq) {
  std::unique_lock lock(durableSeqMutex_);
  durableSeqMoved_.wait(lock, [&] { return durableSeq_ >= seq || failed(); });
  return durableSeq_ >= seq;
}

std::string Journal::failure() const {
  return failed() ? failure_ : std::string();
}

void Journal::fail(const std::string& why) {
  if (failed()) return;
  failure_ = why;
  {
    std::lock_guard lock(durableSeqMutex_);
    failed_.store(true, std::memory_order_release);
  }
  durableSeqMoved_.notify_all();
  logLine("journal", "writing stopped: %s", why.c_str());
  wakeup_.notify();
}

void Journal::sync() {
  if (!unsynced_) return;
  if (::fdatasync(segmentFd_) != 0) throw systemError("fdatasync of the journal failed");
  unsynced_ = false;
  stats_.syncs.fetch_add(1, std::memory_order_relaxed);
}

void Journal::write(Batch& batch) {
  // Checksums here, off the socket thread.
  kj::byte* p = batch.bytes.data();
  kj::byte* end = p + batch.bytes.size();
  while (p < end) {
    sealRecord(p);
    p += F::kRecordHeaderBytes + getU32(p);
  }
  if (segmentSize_ >= config_.segmentBytes) openSegment(batch.firstSeq);
  writeAll(segmentFd_, batch.bytes.data(), batch.bytes.size(), "cannot write to the journal");
  segmentSize_ += batch.bytes.size();
  unsynced_ = true;
  stats_.bytes.fetch_add(batch.bytes.size(), std::memory_order_relaxed);
  stats_.batches.fetch_add(1, std::memory_order_relaxed);
}

void Journal::run() {
  using Clock = std::chrono::steady_clock;
  std::vector<std::unique_ptr<Batch>> got(64);
  auto lastSync = Clock::now();
  bool stop = false;
  while (!stop) {
    size_t n;
    if (config_.fsync == FsyncMode::interval && unsynced_ && !failed()) {
      auto due = lastSync + config_.fsyncInterval;
      auto wait = std::chrono::duration_cast<std::chrono::microseconds>(due - Clock::now());
      n = toWrite_.wait_dequeue_bulk_timed(got.begin(), got.size(),
                                           std::max<int64_t>(0, wait.count()));
    } else {
      n = toWrite_.wait_dequeue_bulk(got.begin(), got.size());
    }
    uint64_t newest = 0;
    Seq newestSeq = 0;
    for (size_t i = 0; i < n; ++i) {
      if (got[i]->number == 0) {
        stop = true;
      } else if (!failed()) {
        try {
          write(*got[i]);
          newest = got[i]->number;
          newestSeq = got[i]->lastSeq;
        } catch (const std::exception& e) {
          fail(e.what());
        }
      }
      spare_.enqueue(std::move(got[i]));
    }
    if (failed()) continue;
    try {
      // Group commit: one sync covers every batch written above.
      if (config_.fsync == FsyncMode::always ||
          (config_.fsync == FsyncMode::interval &&
           Clock::now() - lastSync >= config_.fsyncInterval)) {
        sync();
        lastSync = Clock::now();
      }
      if (stop) sync();  // a clean stop leaves everything on disk, whatever the mode
    } catch (const std::exception& e) {
      fail(e.what());
      continue;
    }
    if (newest != 0) {
      durable_.store(newest, std::memory_order_release);
      wakeup_.notify();
      {
        std::lock_guard lock(durableSeqMutex_);
        durableSeq_ = newestSeq;
      }
      durableSeqMoved_.notify_all();
    }
  }
}

}  // namespace shop
