// The framing journal segments and snapshot files share, little-endian:
//   header  32 bytes: an 8-byte magic, u32 version, u32 CRC32C of the
//           header with this field zero, u64 serverId, u64 a seq (the
//           segment's first, the snapshot's)
//   record  u32 length L (a multiple of 8, at least 8), u32 CRC32C of the
//           length's 4 bytes and the message, then the L-byte message
// Records are 8-byte aligned, so a mapped file's messages are read in place.
#pragma once

#include <capnp/common.h>
#include <kj/common.h>

#include <array>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

namespace shop::records {

constexpr size_t kHeaderBytes = 32;
constexpr size_t kRecordHeaderBytes = 8;
constexpr uint32_t kMaxRecordBytes = 64u << 20;

uint32_t getU32(const kj::byte* p);
uint64_t getU64(const kj::byte* p);
void putU32(kj::byte* p, uint32_t v);
void putU64(kj::byte* p, uint64_t v);

std::array<kj::byte, kHeaderBytes> encodeHeader(const char (&magic)[8], uint32_t version,
                                                uint64_t serverId, uint64_t seq);

struct Header {
  uint64_t serverId = 0;
  uint64_t seq = 0;
};
// Reads a header written by encodeHeader with this magic and version; false
// and why when it does not read. `kind` names the file in the message.
bool parseHeader(kj::ArrayPtr<const kj::byte> bytes, const char (&magic)[8], uint32_t version,
                 const char* kind, Header& header, std::string& why);

// The record at `p` (with `left` bytes from p to the end) if it is whole
// and its checksum holds: its message length; else 0 and why.
uint32_t checkRecord(const kj::byte* p, size_t left, std::string* why);

// Appends one record holding `message`, checksum included.
void appendRecord(std::vector<kj::byte>& out, kj::ArrayPtr<const capnp::word> message);
// Fills in the checksum of the record at `p` (written with a zero one).
void sealRecord(kj::byte* p);

// errno as a std::system_error saying `what`.
std::system_error systemError(const std::string& what);
// Makes a directory's entries (a new or renamed file) survive a crash.
void fsyncDir(const std::string& dir);
void writeAll(int fd, const kj::byte* data, size_t size, const char* what);

}  // namespace shop::records
