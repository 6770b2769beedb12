// Replays a corpus without libFuzzer, with any compiler and sanitizer: calls
// LLVMFuzzerTestOneInput once per file, for each file named and for every
// regular file in each directory named, in name order (a fuzz target may
// keep state from one input to the next, so the order is fixed).
//
//   fuzz_command_replay fuzz/corpus/command [more files or directories]
//
// Exits 0 after the last input; a failed invariant or a sanitizer report
// aborts first. Finding no input at all is an error (a wrong path).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<uint8_t> readAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    fs::path arg = argv[i];
    if (fs::is_directory(arg)) {
      std::vector<fs::path> files;
      for (const auto& entry : fs::directory_iterator(arg)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
      inputs.insert(inputs.end(), files.begin(), files.end());
    } else if (fs::is_regular_file(arg)) {
      inputs.push_back(arg);
    } else {
      std::fprintf(stderr, "replay: no file or directory %s\n", argv[i]);
      return 2;
    }
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "usage: %s FILE_OR_DIR... (found no input)\n", argv[0]);
    return 2;
  }
  for (const auto& path : inputs) {
    // stderr is unbuffered: after a crash, the last name printed is the input.
    std::fprintf(stderr, "replay: %s\n", path.c_str());
    std::vector<uint8_t> bytes = readAll(path);
    // A distinct heap block of the exact size, as libFuzzer passes it, so
    // that ASan sees a read past the end.
    std::unique_ptr<uint8_t[]> copy(new uint8_t[bytes.size()]);
    std::copy(bytes.begin(), bytes.end(), copy.get());
    LLVMFuzzerTestOneInput(copy.get(), bytes.size());
  }
  std::fprintf(stderr, "replay: %zu inputs, no finding\n", inputs.size());
  return 0;
}
