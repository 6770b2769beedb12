#include "core/record_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>

#include "core/journal.h"

namespace shop::records {

static_assert(std::endian::native == std::endian::little,
              "journal and snapshot files are written in the machine's byte order, little-endian");

uint32_t getU32(const kj::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t getU64(const kj::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
void putU32(kj::byte* p, uint32_t v) {
  std::memcpy(p, &v, 4);
}
void putU64(kj::byte* p, uint64_t v) {
  std::memcpy(p, &v, 8);
}

std::array<kj::byte, kHeaderBytes> encodeHeader(const char (&magic)[8], uint32_t version,
                                                uint64_t serverId, uint64_t seq) {
  std::array<kj::byte, kHeaderBytes> h{};
  std::memcpy(h.data(), magic, 8);
  putU32(h.data() + 8, version);
  putU64(h.data() + 16, serverId);
  putU64(h.data() + 24, seq);
  putU32(h.data() + 12, crc32c(h.data(), h.size()));
  return h;
}

bool parseHeader(kj::ArrayPtr<const kj::byte> bytes, const char (&magic)[8], uint32_t version,
                 const char* kind, Header& header, std::string& why) {
  const kj::byte* base = bytes.begin();
  if (bytes.size() < kHeaderBytes) {
    why = std::string("the ") + kind + " header is cut short (" + std::to_string(bytes.size()) +
          " bytes)";
    return false;
  }
  if (std::memcmp(base, magic, 8) != 0) {
    why = std::string("not a ") + kind + " (bad magic)";
    return false;
  }
  std::array<kj::byte, kHeaderBytes> copy;
  std::memcpy(copy.data(), base, copy.size());
  putU32(copy.data() + 12, 0);
  if (crc32c(copy.data(), copy.size()) != getU32(base + 12)) {
    why = std::string("the ") + kind + " header's checksum does not match";
    return false;
  }
  if (uint32_t got = getU32(base + 8); got != version) {
    why = "format version " + std::to_string(got) + ", this build reads version " +
          std::to_string(version);
    return false;
  }
  header.serverId = getU64(base + 16);
  header.seq = getU64(base + 24);
  return true;
}

uint32_t checkRecord(const kj::byte* p, size_t left, std::string* why) {
  if (left < kRecordHeaderBytes) {
    if (why) *why = "a record header cut short (" + std::to_string(left) + " bytes)";
    return 0;
  }
  uint32_t length = getU32(p);
  if (length == 0 || length % 8 != 0 || length > kMaxRecordBytes) {
    if (why) *why = "a record length of " + std::to_string(length) + " bytes is impossible";
    return 0;
  }
  if (left - kRecordHeaderBytes < length) {
    if (why) {
      *why = "a record of " + std::to_string(length) + " bytes cut short at " +
             std::to_string(left - kRecordHeaderBytes);
    }
    return 0;
  }
  uint32_t want = getU32(p + 4);
  uint32_t got = crc32c(p + kRecordHeaderBytes, length, crc32c(p, 4));
  if (got != want) {
    if (why) *why = "a record's checksum does not match";
    return 0;
  }
  return length;
}

void sealRecord(kj::byte* p) {
  uint32_t length = getU32(p);
  putU32(p + 4, crc32c(p + kRecordHeaderBytes, length, crc32c(p, 4)));
}

void appendRecord(std::vector<kj::byte>& out, kj::ArrayPtr<const capnp::word> message) {
  size_t at = out.size();
  size_t length = message.size() * sizeof(capnp::word);
  out.resize(at + kRecordHeaderBytes + length);
  putU32(out.data() + at, static_cast<uint32_t>(length));
  std::memcpy(out.data() + at + kRecordHeaderBytes, message.begin(), length);
  sealRecord(out.data() + at);
}

std::system_error systemError(const std::string& what) {
  return std::system_error(errno, std::generic_category(), what);
}

void fsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw systemError("cannot open " + dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw systemError("cannot sync " + dir);
}

void writeAll(int fd, const kj::byte* data, size_t size, const char* what) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw systemError(what);
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
}

}  // namespace shop::records
