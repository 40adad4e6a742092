// Corpus pipeline throughput with fake encoders (no tokenizer yet): tokenizing text files into
// shards, reopening them (checksum pass), and packing + reading every sequence. One JSON
// object per line, like bench/run's; there is no PyTorch baseline for this.
//
//   metalm_bench_corpus [DATA_DIR=data/text] [CACHE_DIR=runs/bench-corpus]
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "corpus_files.h"
#include "metalm/data/corpus.h"
#include "metalm/data/packing.h"
#include "metalm/data/split.h"

using namespace metalm;
using namespace metalm::data;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void emit(const char* name, const char* unit, double v) {
  std::printf("{\"name\": \"%s\", \"unit\": \"%s\", \"metalm\": %.3f, \"baseline\": null}\n", name,
              unit, v);
}

// One id per byte (the byte-level LM's tokenizer) ...
void encode_bytes(std::string_view s, std::vector<int32_t>& out) {
  for (unsigned char c : s) out.push_back(16 + c);
}
// ... or one per space-separated word, hashed into 32000 ids (about SentencePiece's id count
// per byte of English, 0.2-0.25, without its cost).
void encode_words(std::string_view s, std::vector<int32_t>& out) {
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    uint64_t h = 0xcbf29ce484222325ull;
    size_t j = i;
    for (; j < s.size() && s[j] != ' '; ++j)
      h = (h ^ static_cast<unsigned char>(s[j])) * 0x100000001b3ull;
    if (j > i) out.push_back(16 + static_cast<int32_t>(h % 32000));
    i = j;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string data_dir = argc > 1 ? argv[1] : "data/text";
  const std::string cache = argc > 2 ? argv[2] : "runs/bench-corpus";
  uint64_t bytes = 0;
  CorpusConfig c = bench::corpus_files(data_dir, &bytes);
  if (c.sources.empty()) {
    std::fprintf(stderr, "no corpus files in %s (run scripts/fetch_data.sh)\n", data_dir.c_str());
    return 1;
  }
  const double mb = 1e-6 * static_cast<double>(bytes);
  std::fprintf(stderr, "%zu files, %.1f MB\n", c.sources.size(), mb);
  for (const auto& [label, encode, vocab] : {std::tuple{"bytes", &encode_bytes, uint64_t{272}},
                                             std::tuple{"words", &encode_words, uint64_t{32016}}}) {
    c.cache_dir = cache + "/" + label;
    c.vocab = {vocab, vocab};
    fs::remove_all(c.cache_dir);
    auto t = Clock::now();
    Corpus corpus = build_corpus(c, encode);
    const double tokenize = seconds_since(t);
    uint64_t tokens = 0;
    for (const TokenizedSource& s : corpus.sources) tokens += s.tokens();
    emit((std::string("corpus_tokenize_") + label).c_str(), "MB/s", mb / tokenize);
    emit((std::string("corpus_tokenize_") + label + "_tokens").c_str(), "Mtok/s",
         1e-6 * static_cast<double>(tokens) / tokenize);

    t = Clock::now();
    corpus = build_corpus(c, encode);  // reused: mapped, index walked, tokens checksummed
    emit((std::string("corpus_reopen_") + label).c_str(), "GB/s of shard",
         1e-9 * static_cast<double>(tokens) * (vocab <= 65536 ? 2 : 4) / seconds_since(t));

    t = Clock::now();
    uint64_t seqs = 0, sum = 0;
    PackedSequence seq;
    for (const TokenizedSource& s : corpus.sources) {
      const DocumentSplit split = split_documents(s.docs(), s.name(), {0.01, -1, 1});
      PackedSource packed(s, split.train, {1024});
      for (uint64_t i = 0; i < packed.size(); ++i) {
        packed.sequence(i, seq);
        sum += static_cast<uint64_t>(seq.tokens[seq.length - 1]);  // keep the reads alive
      }
      seqs += packed.size();
    }
    const double pack = seconds_since(t);
    emit((std::string("corpus_split_pack_read_") + label).c_str(), "Mtok/s",
         1e-6 * static_cast<double>(tokens) / pack);
    std::fprintf(
        stderr,
        "%s: %llu tokens, tokenize %.2f s, pack+read %llu sequences of 1024 %.2f s (%llu)\n", label,
        static_cast<unsigned long long>(tokens), tokenize, static_cast<unsigned long long>(seqs),
        pack, static_cast<unsigned long long>(sum % 10));
  }
  return 0;
}
