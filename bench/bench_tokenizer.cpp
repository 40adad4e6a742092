// Tokenizer throughput for bench/run: data::Tokenizer::encode on every line of a text file (the
// same file and tokenizer.model bench/spm_tokenizer.py encodes with python3-sentencepiece),
// on one thread and on --threads (lines split over the OpenMP pool; encode is const and
// SentencePiece's processor is thread-safe). Prints one JSON line per case: UTF-8 bytes
// encoded (newlines not counted), ids produced, best seconds over --repeats.
// Usage: metalm_bench_tokenizer --model DIR --text FILE [--threads N] [--repeats N]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "metalm/core/threads.h"
#include "metalm/data/tokenizer.h"

using namespace metalm;

namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(f, line);) lines.push_back(std::move(line));
  return lines;
}

// Encodes every line `repeats` times and returns the best time and the ids of one pass.
std::pair<double, int64_t> time_encode(const data::Tokenizer& tok,
                                       const std::vector<std::string>& lines, int threads,
                                       int repeats) {
  double best = 1e300;
  int64_t ids = 0;
  for (int r = 0; r < repeats; ++r) {
    int64_t n = 0;
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel for num_threads(threads) schedule(dynamic, 256) reduction(+ : n)
    for (size_t i = 0; i < lines.size(); ++i)
      n += static_cast<int64_t>(tok.encode(lines[i]).size());
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    ids = n;
  }
  return {best, ids};
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, text;
  int threads = get_num_threads(), repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    if (!std::strcmp(argv[i], "--text")) text = argv[i + 1];
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeats")) repeats = std::atoi(argv[i + 1]);
  }
  if (model.empty() || text.empty()) {
    std::fprintf(stderr,
                 "usage: metalm_bench_tokenizer --model DIR --text FILE [--threads N] "
                 "[--repeats N]\n");
    return 2;
  }
  const data::Tokenizer tok = data::Tokenizer::load(model);
  const std::vector<std::string> lines = read_lines(text);
  int64_t bytes = 0;
  for (const std::string& l : lines) bytes += static_cast<int64_t>(l.size());
  std::vector<int> counts = {1};
  if (threads > 1) counts.push_back(threads);
  for (const int t : counts) {
    const auto [seconds, ids] = time_encode(tok, lines, t, repeats);
    const std::string name =
        "tokenizer_encode_" + std::to_string(t) + (t == 1 ? "thread" : "threads");
    nlohmann::json j = {{"name", name},
                        {"bytes", bytes},
                        {"ids", ids},
                        {"lines", lines.size()},
                        {"seconds", seconds},
                        {"threads", t},
                        {"vocab_size", tok.vocab_size()}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}
