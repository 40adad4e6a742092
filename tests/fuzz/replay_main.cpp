// Replays inputs through a libFuzzer target without libFuzzer, so that the seed corpora and the
// regression inputs of every fuzz target run as ordinary ctest cases with any compiler (ctest
// fuzz_replay_<target>, label unit; see tests/CMakeLists.txt). Every regular file of each
// directory given, in name order, and every file given, goes once to LLVMFuzzerTestOneInput. A
// crash, an abort or an escaping exception fails the test; in a METALM_SANITIZE build the
// sanitizers report as under the fuzzer.
//   fuzz_replay_<target> DIR_OR_FILE...
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR_OR_FILE...\n  e.g. %s tests/fuzz/corpus\n", argv[0],
                 argv[0]);
    return 2;
  }
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg = argv[i];
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(arg))
        if (e.is_regular_file()) files.push_back(e.path());
      // An empty directory is a mistake here (a moved corpus would otherwise pass silently).
      if (files.empty()) {
        std::fprintf(stderr, "replay: %s: directory holds no files\n", arg.c_str());
        return 2;
      }
      std::sort(files.begin(), files.end());
      inputs.insert(inputs.end(), files.begin(), files.end());
    } else if (fs::is_regular_file(arg, ec)) {
      inputs.push_back(arg);
    } else {
      std::fprintf(stderr, "replay: %s: no such file or directory\n", arg.c_str());
      return 2;
    }
  }
  for (const fs::path& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "replay: %s: cannot open\n", path.c_str());
      return 2;
    }
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    // A buffer of exactly the input's size, as libFuzzer passes it, so that AddressSanitizer
    // reports a read one byte past the end (a vector's spare capacity would hide it).
    const std::unique_ptr<uint8_t[]> data(new uint8_t[bytes.size()]);
    if (!bytes.empty()) std::memcpy(data.get(), bytes.data(), bytes.size());
    // Named before the call, so that a crash names its input.
    std::printf("%s (%zu bytes)\n", path.c_str(), bytes.size());
    std::fflush(stdout);
    LLVMFuzzerTestOneInput(data.get(), bytes.size());
  }
  std::printf("replayed %zu inputs\n", inputs.size());
  return 0;
}
