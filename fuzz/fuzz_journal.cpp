// libFuzzer target: untrusted bytes as a journal segment, through
// scanSegment, as recovery and the history reader read segments from disk.
// Every record that passes its checksum is decoded, as recovery decodes it.
//
// scanSegment documents no failure: it returns where and why it stopped.
// decodeEvent may throw on a message that is not an event (recovery turns
// that into a refusal to start); that alone is caught. A crash, a hang, a
// read out of bounds or any other exception is a finding.
//
// Invariants (FUZZ_EXPECT):
//  - the good bytes are within the input, and all of it when nothing stopped the scan;
//  - the records counted are the records visited, with consecutive seqs from the header's;
//  - a scan that stopped names why.
#include <capnp/common.h>
#include <kj/exception.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "core/event_codec.h"
#include "core/journal.h"
#include "fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shop;
  // Records are read in place as Cap'n Proto words: the input must be
  // 8-byte aligned, as a mapped file is.
  std::vector<capnp::word> words((size + 7) / 8);
  if (size > 0) std::memcpy(words.data(), data, size);
  kj::ArrayPtr<const kj::byte> bytes(reinterpret_cast<const kj::byte*>(words.data()), size);

  Seq visited = 0;
  Seq expected = 0;
  SegmentScan scan = scanSegment(bytes, [&](Seq seq, kj::ArrayPtr<const capnp::word> message) {
    if (visited == 0) expected = seq;
    FUZZ_EXPECT(seq == expected + visited, "seq %llu after %llu records from %llu\n",
                static_cast<unsigned long long>(seq), static_cast<unsigned long long>(visited),
                static_cast<unsigned long long>(expected));
    ++visited;
    try {
      (void)decodeEvent(message);
    } catch (const kj::Exception&) {
    } catch (const std::runtime_error&) {
    }
  });
  FUZZ_EXPECT(scan.goodBytes <= size, "good bytes %zu of %zu\n", scan.goodBytes, size);
  FUZZ_EXPECT(scan.records == visited, "%llu records, %llu visited\n",
              static_cast<unsigned long long>(scan.records),
              static_cast<unsigned long long>(visited));
  if (scan.stop.empty()) {
    FUZZ_EXPECT(scan.goodBytes == size, "stopped at %zu of %zu with no reason\n", scan.goodBytes,
                size);
  } else {
    FUZZ_EXPECT(scan.goodBytes < size || size < JournalFormat::kHeaderBytes,
                "stopped (%s) at the end\n", scan.stop.c_str());
  }
  if (visited > 0) FUZZ_EXPECT(expected == scan.firstSeq, "first seq\n");
  return 0;
}
