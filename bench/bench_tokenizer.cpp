// Tokenizer throughput for bench/run: data::Tokenizer::encode on every line of a text file (the
// same file and tokenizer.model bench/spm_tokenizer.py encodes with python3-sentencepiece),
// on one thread and on --threads (lines split over the OpenMP pool; encode is const and
// SentencePiece's processor is thread-safe). Prints one JSON line per case: UTF-8 bytes
// encoded (newlines not counted), ids produced, best seconds over --repeats.
// Usage: metalm_bench_tokenizer --model DIR --text FILE [--threads N] [--repeats N]
//        metalm_bench_tokenizer --model DIR --corpus DATA_DIR [--cache DIR]
// The second form is the whole pipeline on the real corpora (scripts/fetch_data.sh's
// data/text: plain text and JSONL): documents read and checked, every line encoded (one thread,
// as the corpus builder runs), token shards written, then packed into sequences of 1024 and
// every sequence read. One line "corpus_tokenize_pack": file bytes, seconds, SentencePiece ids
// (without the </line> </doc> the pipeline adds) and the process's peak RSS.
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "corpus_files.h"
#include "metalm/core/threads.h"
#include "metalm/data/corpus.h"
#include "metalm/data/packing.h"
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

// The corpus files of scripts/fetch_data.sh, read as `metalm pretrain --data` reads them.
// On `threads` threads (lines are encoded in parallel batches); the case name says how many.
int corpus_case(const data::Tokenizer& tok, const std::string& dir, const std::string& cache,
                int threads) {
  set_num_threads(threads);
  uint64_t bytes = 0;
  data::CorpusConfig c = bench::corpus_files(dir, &bytes);
  if (c.sources.empty()) {
    std::fprintf(stderr, "no corpus files in %s (run scripts/fetch_data.sh)\n", dir.c_str());
    return 1;
  }
  c.cache_dir = cache;
  c.vocab = {tok.vocab_hash(), static_cast<uint64_t>(tok.vocab_size())};
  std::filesystem::remove_all(cache);
  const auto start = std::chrono::steady_clock::now();
  const data::Corpus corpus =
      data::build_corpus(c, [&](std::string_view text, std::vector<int32_t>& out) {
        const std::vector<int32_t> v = tok.encode(text);
        out.insert(out.end(), v.begin(), v.end());
      });
  uint64_t tokens = 0, lines = 0, docs = 0, seqs = 0, sum = 0;
  data::PackedSequence seq;
  for (const data::TokenizedSource& s : corpus.sources) {
    tokens += s.tokens();
    lines += s.lines();
    docs += s.docs();
    std::vector<uint64_t> all(s.docs());
    for (uint64_t d = 0; d < s.docs(); ++d) all[d] = d;
    const data::PackedSource packed(s, std::move(all), {1024});
    for (uint64_t i = 0; i < packed.size(); ++i) {
      packed.sequence(i, seq);
      sum += static_cast<uint64_t>(seq.tokens[seq.length - 1]);  // keep the reads alive
    }
    seqs += packed.size();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  const std::string name = threads == 1
                               ? "corpus_tokenize_pack"
                               : "corpus_tokenize_pack_" + std::to_string(threads) + "threads";
  nlohmann::json j = {{"name", name},
                      {"bytes", bytes},
                      {"ids", tokens - lines - docs},
                      {"lines", lines},
                      {"documents", docs},
                      {"sequences", seqs},
                      {"seconds", seconds},
                      {"threads", threads},
                      {"peak_bytes", static_cast<int64_t>(ru.ru_maxrss) * 1024},
                      {"checksum", sum % 10}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, text, corpus, cache = "runs/bench-corpus-spm";
  int threads = get_num_threads(), repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    if (!std::strcmp(argv[i], "--text")) text = argv[i + 1];
    if (!std::strcmp(argv[i], "--corpus")) corpus = argv[i + 1];
    if (!std::strcmp(argv[i], "--cache")) cache = argv[i + 1];
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeats")) repeats = std::atoi(argv[i + 1]);
  }
  if (!model.empty() && !corpus.empty())
    return corpus_case(data::Tokenizer::load(model), corpus, cache, threads);
  if (model.empty() || text.empty()) {
    std::fprintf(stderr,
                 "usage: metalm_bench_tokenizer --model DIR --text FILE [--threads N] "
                 "[--repeats N]\n       metalm_bench_tokenizer --model DIR --corpus DATA_DIR "
                 "[--cache DIR] [--threads N]\n");
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
