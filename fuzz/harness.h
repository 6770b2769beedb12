// What the fuzz targets and the corpus generator share: the invariant check
// and the format of a command input.
//
// FUZZ_EXPECT(condition, format, ...): an invariant of the code under test.
// A failure prints where and why to stderr and aborts. libFuzzer reports the
// abort as a crash (with the stack and the input saved as crash-<sha1>); the
// replay executable fails its ctest. It is deliberately not an exception:
// the code under test could catch one, and one thrown from inside an engine
// callback would unwind through engine code.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_EXPECT(condition, ...)                                                          \
  do {                                                                                       \
    if (!(condition)) [[unlikely]] {                                                         \
      std::fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #condition); \
      std::fprintf(stderr, __VA_ARGS__);                                                     \
      std::fprintf(stderr, "\n");                                                            \
      std::abort();                                                                          \
    }                                                                                        \
  } while (false)

namespace shop::fuzz {

// A fuzz_command input is one command frame, or several joined by this.
// Eight bytes, so that frames stay whole words; a frame that happens to
// contain it is split, which is harmless.
inline constexpr std::string_view kFrameSeparator = "--frame\n";
// Frames after this many in one input are ignored: an input stays cheap.
inline constexpr size_t kMaxFramesPerInput = 32;

}  // namespace shop::fuzz
