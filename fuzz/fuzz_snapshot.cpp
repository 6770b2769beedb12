// libFuzzer target: untrusted bytes as a snapshot file, through
// readSnapshot, as recovery reads a snapshot from disk.
//
// readSnapshot documents one failure: SnapshotCorrupt, after which recovery
// passes the file over. A crash, a hang, a read out of bounds or any other
// exception is a finding.
//
// Invariants (FUZZ_EXPECT):
//  - a snapshot that reads has the seqs recovery relies on: replayFrom in 1..seq+1;
//  - the aggregates visited are the counts its info record states.
#include <capnp/common.h>

#include <cstring>
#include <vector>

#include "core/snapshot.h"
#include "fuzz/harness.h"

namespace {

struct Counting : shop::SnapshotVisitor {
  uint64_t customers = 0;
  uint64_t products = 0;
  void customer(std::string_view, shop::Customer&&) override { ++customers; }
  void product(std::string_view, shop::Product&&) override { ++products; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shop;
  // Records are read in place as Cap'n Proto words: the input must be
  // 8-byte aligned, as a mapped file is.
  std::vector<capnp::word> words((size + 7) / 8);
  if (size > 0) std::memcpy(words.data(), data, size);
  kj::ArrayPtr<const kj::byte> bytes(reinterpret_cast<const kj::byte*>(words.data()), size);

  Counting seen;
  SnapshotInfo info;
  try {
    info = readSnapshot(bytes, &seen);
  } catch (const SnapshotCorrupt&) {
    return 0;
  }
  FUZZ_EXPECT(info.replayFrom >= 1 && info.replayFrom <= info.seq + 1,
              "replay from %llu for a snapshot at %llu\n",
              static_cast<unsigned long long>(info.replayFrom),
              static_cast<unsigned long long>(info.seq));
  FUZZ_EXPECT(seen.customers == info.customers && seen.products == info.products,
              "visited %llu customers and %llu products, the info says %llu and %llu\n",
              static_cast<unsigned long long>(seen.customers),
              static_cast<unsigned long long>(seen.products),
              static_cast<unsigned long long>(info.customers),
              static_cast<unsigned long long>(info.products));
  return 0;
}
