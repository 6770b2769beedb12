#include "core/journal_history.h"

#include <cstring>
#include <filesystem>
#include <optional>
#include <system_error>

#include "core/journal.h"

namespace shop {

namespace {
using F = JournalFormat;
}  // namespace

void SegmentReader::list() {
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    std::string name = entry.path().filename().string();
    if (name.size() != 28 || !name.ends_with(".journal")) continue;
    Seq first = 0;
    bool digits = true;
    for (size_t i = 0; i < 20; ++i) {
      if (name[i] < '0' || name[i] > '9') digits = false;
      first = first * 10 + static_cast<Seq>(name[i] - '0');
    }
    if (!digits || segments_.contains(first)) continue;
    Segment s;
    s.firstSeq = first;
    s.path = entry.path().string();
    s.index.push_back(F::kHeaderBytes);
    s.indexedEnd = F::kHeaderBytes;
    segments_.emplace(first, std::move(s));
  }
}

SegmentReader::Segment* SegmentReader::segmentOf(Seq seq) {
  if (segments_.empty() || seq >= segments_.rbegin()->first) list();
  auto it = segments_.upper_bound(seq);
  if (it == segments_.begin()) return nullptr;
  return &std::prev(it)->second;
}

void SegmentReader::read(HistoryPage& page) {
  const HistoryRequest& r = page.request;
  Seq seq = r.from;
  size_t bytes = 0;
  std::vector<std::pair<size_t, size_t>> spans;  // word offset and size of each message
  bool full = false;
  while (!full && spans.size() < r.maxCount) {
    Segment* s = segmentOf(seq);
    if (s == nullptr) {
      page.gone = spans.empty();  // before the oldest segment: a snapshot let it go
      break;
    }
    std::optional<MappedFile> opened;
    try {
      opened.emplace(s->path);
    } catch (const std::system_error& e) {
      if (e.code() != std::errc::no_such_file_or_directory) throw;
      // Deleted since it was listed: snapshots cover it now.
      segments_.clear();
      list();
      page.gone = spans.empty();
      break;
    }
    const MappedFile& file = *opened;
    const kj::byte* base = file.data();
    const size_t size = file.size();
    Seq k = seq - s->firstSeq;  // the record wanted, counted from the segment's first
    // Start from the nearest indexed record at or before k.
    Seq at = std::min(k, s->indexedRecords) / kIndexEvery * kIndexEvery;
    uint64_t offset = s->index[at / kIndexEvery];
    bool progressed = false;
    for (;; ++at) {
      uint32_t length = offset < size ? goodRecordLength(base + offset, size - offset) : 0;
      if (length == 0) {
        if (offset < size && offset >= s->indexedEnd) {
          // Not whole yet (being written) or damaged: only a record still
          // being written can be at the very end.
          bool later = false;
          for (uint64_t p = offset + 8; p + F::kRecordHeaderBytes <= size && !later; p += 8) {
            later = goodRecordLength(base + p, size - p) != 0;
          }
          if (later) {
            page.error = s->path + " is damaged at offset " + std::to_string(offset);
            return;
          }
        }
        break;
      }
      uint64_t next = offset + F::kRecordHeaderBytes + length;
      if (at >= s->indexedRecords) {
        s->indexedRecords = at + 1;
        s->indexedEnd = next;
        if ((at + 1) % kIndexEvery == 0) s->index.push_back(next);
      }
      if (at >= k) {
        if (!spans.empty() && bytes + length > r.maxBytes) {
          page.capped = true;
          full = true;
          break;
        }
        size_t words = length / sizeof(capnp::word);
        spans.emplace_back(page.words.size(), words);
        page.words.resize(page.words.size() + words);
        std::memcpy(page.words.data() + spans.back().first, base + offset + F::kRecordHeaderBytes,
                    length);
        bytes += length;
        ++seq;
        progressed = true;
        if (spans.size() >= r.maxCount) break;
      }
      offset = next;
    }
    // This segment has no more: go on in the next one, if it starts here.
    if (full || spans.size() >= r.maxCount) break;
    if (!progressed && segmentOf(seq) == s) break;
    Segment* following = segmentOf(seq);
    if (following == nullptr || following->firstSeq != seq) break;
  }
  page.messages.reserve(spans.size());
  for (auto [offset, words] : spans) page.messages.emplace_back(page.words.data() + offset, words);
}

HistoryReader::HistoryReader(std::string dir, Wakeup& wakeup)
    : reader_(std::move(dir)), wakeup_(wakeup), thread_([this] { run(); }) {}

HistoryReader::~HistoryReader() {
  requests_.enqueue(nullptr);  // stop
  thread_.join();
}

void HistoryReader::request(HistoryRequest request) {
  auto page = std::make_unique<HistoryPage>();
  page->request = std::move(request);
  ++pending_;
  requests_.enqueue(std::move(page));
}

std::unique_ptr<HistoryPage> HistoryReader::take() {
  std::unique_ptr<HistoryPage> page;
  if (pending_ == 0 || !done_.try_dequeue(page)) return nullptr;
  --pending_;
  return page;
}

void HistoryReader::run() {
  for (;;) {
    std::unique_ptr<HistoryPage> page;
    requests_.wait_dequeue(page);
    if (!page) return;
    try {
      reader_.read(*page);
    } catch (const std::exception& e) {
      page->error = e.what();
    }
    if (!page->error.empty()) {
      page->messages.clear();
      page->words.clear();
    }
    done_.enqueue(std::move(page));
    wakeup_.notifyIfArmed();
  }
}

}  // namespace shop
