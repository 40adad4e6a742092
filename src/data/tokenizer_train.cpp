// Tokenizer::train: we read and check the corpus ourselves (bounded lines, UTF-8, the seeded
// sample), then hand the sentences to SentencePiece's trainer through its iterator, in memory.
// Reading ourselves is what turns every bad input into one clear error instead of one of
// SentencePiece's fatal checks, and what keeps the sample under our seed (DESIGN D7).
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <unordered_map>

#include "data/sentencepiece_util.h"
#include "metalm/core/error.h"
#include "metalm/core/random.h"
#include "metalm/core/threads.h"
#include "metalm/data/documents.h"
#include "metalm/data/line_reader.h"
#include "metalm/data/tokenizer.h"

namespace metalm::data {
namespace {

constexpr int64_t kMaxSentenceLengthLimit = int64_t{1} << 26;  // 64 MiB

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t\v\f\r") == std::string::npos;
}

void check_options(const TrainOptions& o) {
  MLM_CHECK(!o.inputs.empty(), ValueError, "[tokenizer] train: no input files");
  MLM_CHECK(o.vocab_size > static_cast<int64_t>(kSpecialTokens.size()) &&
                o.vocab_size <= std::numeric_limits<int32_t>::max(),
            ValueError, "[tokenizer] train: vocab_size must be more than the ",
            kSpecialTokens.size(), " special tokens, got ", o.vocab_size);
  // SentencePiece's own range; outside it its check fails without a message.
  MLM_CHECK(o.character_coverage >= 0.98 && o.character_coverage <= 1.0, ValueError,
            "[tokenizer] train: character_coverage must be in [0.98, 1], got ",
            o.character_coverage);
  MLM_CHECK(o.input_sentence_size >= 0, ValueError,
            "[tokenizer] train: input_sentence_size must be >= 0 (0: every line), got ",
            o.input_sentence_size);
  MLM_CHECK(o.max_sentence_length > 0 && o.max_sentence_length <= kMaxSentenceLengthLimit,
            ValueError, "[tokenizer] train: max_sentence_length must be in [1, ",
            kMaxSentenceLengthLimit, "] bytes, got ", o.max_sentence_length);
  MLM_CHECK(o.threads >= 0, ValueError, "[tokenizer] train: threads must be >= 0, got ", o.threads);
  // Open every file first: a typo in the last of many inputs fails before minutes of reading.
  for (const std::string& path : o.inputs) LineReader(path, 1, "tokenizer");
}

// Reads every input; keeps all lines, or a uniform sample of input_sentence_size of them
// (Algorithm R: line i replaces a random kept line with probability size / (i + 1)).
std::vector<std::string> read_corpus(const TrainOptions& o, CorpusStats& stats) {
  const auto start = std::chrono::steady_clock::now();
  const auto cap = static_cast<size_t>(o.input_sentence_size);
  Generator rng(o.seed);
  std::vector<std::string> kept;
  int64_t candidates = 0;
  // One candidate line; where() names it in an error ("f.txt:12" or "f.jsonl, a record's
  // text"), built only then.
  auto take = [&](std::string_view line, bool too_long, const auto& where) {
    ++stats.lines;
    if (too_long) {
      ++stats.skipped_long;
      return;
    }
    if (is_blank(line)) {
      ++stats.skipped_empty;
      return;
    }
    const size_t bad = find_invalid_utf8(line, /*allow_nul=*/false);
    MLM_CHECK(bad == std::string::npos, ValueError, "[tokenizer] ", where(),
              ": not UTF-8 text (byte ", bad, " of the line is ",
              (line[bad] == '\0' ? "NUL: UTF-16 or binary?" : "invalid"), ")");
    if (cap == 0 || kept.size() < cap) {
      kept.emplace_back(line);
    } else {
      const auto j = static_cast<size_t>(rng.randint(0, candidates + 1));
      if (j < cap) kept[j] = std::string(line);
    }
    ++candidates;
  };
  const auto max_line = static_cast<uint64_t>(o.max_sentence_length);
  for (const std::string& path : o.inputs) {
    if (format_of_path(path) == SourceFormat::jsonl) {
      // The records as the corpus pipeline reads them; a text line too long to train on is
      // skipped like a long line of a text file, a record too long to read is an error.
      DocumentOptions d;
      d.format = SourceFormat::jsonl;
      d.max_line_bytes = std::max<uint64_t>(d.max_line_bytes, max_line);
      DocumentSink sink;
      sink.line = [&](std::string_view line) {
        take(line, line.size() > max_line, [&] { return path + ", a record's text"; });
      };
      sink.end_document = [] {};
      read_documents(path, d, sink);
    } else {
      LineReader reader(path, max_line, "tokenizer", LineReader::LongLines::skip);
      std::string_view line;
      bool too_long = false;
      while (reader.next(line, &too_long))
        take(line, too_long, [&] { return path + ":" + std::to_string(reader.line_number()); });
    }
    ++stats.files;
  }
  stats.sentences = static_cast<int64_t>(kept.size());
  for (const std::string& s : kept) stats.characters += utf8_length(s);
  stats.seconds = seconds_since(start);
  MLM_CHECK(!kept.empty(), ValueError, "[tokenizer] train: no text to train on in ",
            o.inputs.size(), " file(s): ", stats.lines, " lines, ", stats.skipped_empty,
            " of them empty, ", stats.skipped_long, " longer than max_sentence_length (",
            o.max_sentence_length, " bytes)");
  return kept;
}

// Hands SentencePiece the sentences and frees each once it has taken its copy, so that the
// corpus is not held twice through training.
class Sentences : public sentencepiece::SentenceIterator {
 public:
  explicit Sentences(std::vector<std::string>& v) : v_(v) {}
  bool done() const override { return i_ >= v_.size(); }
  void Next() override { std::string().swap(v_[i_++]); }
  const std::string& value() const override { return v_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  std::vector<std::string>& v_;
  size_t i_ = 0;
};

std::string special_list(size_t first) {
  std::string s;
  for (size_t k = first; k < kSpecialTokens.size(); ++k) {
    if (!s.empty()) s += ',';
    s += kSpecialTokens[k];
  }
  return s;
}

}  // namespace

TrainStats Tokenizer::train(const TrainOptions& opts, const std::string& out_dir) {
  check_options(opts);
  TrainStats stats;
  std::vector<std::string> sentences = read_corpus(opts, stats.corpus);
  if (opts.on_corpus_read) opts.on_corpus_read(stats.corpus);

  const int threads = std::clamp(opts.threads > 0 ? opts.threads : get_num_threads(), 1, 128);
  char coverage[32];
  std::snprintf(coverage, sizeof coverage, "%.17g", opts.character_coverage);
  // <s> <pad> </s> <unk> at 0..3 as SentencePiece's control and unknown pieces; the other
  // five as user-defined pieces, which SentencePiece places at 4..8 in this order and matches
  // literally in text (tokenizer.h).
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", opts.model_type == TokenizerModelType::bpe ? "bpe" : "unigram"},
      {"vocab_size", std::to_string(opts.vocab_size)},
      {"character_coverage", coverage},
      {"input_sentence_size", "0"},  // the sample is ours, drawn above
      {"max_sentence_length", std::to_string(opts.max_sentence_length)},
      {"num_threads", std::to_string(threads)},
      {"bos_id", "0"},
      {"pad_id", "1"},
      {"eos_id", "2"},
      {"unk_id", "3"},
      {"user_defined_symbols", special_list(4)},
      // SentencePiece logs to stderr from INFO up; its errors come back in the status.
      {"minloglevel", opts.verbose ? "0" : "3"},
  };
  // SentencePiece draws from its own process-wide generator (in sampling it may do); seed it.
  sentencepiece::SetRandomGeneratorSeed(static_cast<unsigned>(opts.seed ^ (opts.seed >> 32)));
  const auto start = std::chrono::steady_clock::now();
  Sentences it(sentences);
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  if (!status.ok()) {
    std::string m = spm_message(status, "training failed");
    // Its hint names its own flag; ours is spelled differently.
    const std::string flag = "with --character_coverage option";
    if (const size_t at = m.find(flag); at != std::string::npos)
      m.replace(at, flag.size(), "(character_coverage)");
    throw ValueError("[tokenizer] train: SentencePiece: " + m);
  }
  stats.train_seconds = seconds_since(start);

  // The model must hold the specials at 0..8 as tokenizer.h promises; building checks it.
  Tokenizer t = from_model_bytes(std::move(model), TokenizerSpec{}, "trained model");
  MLM_CHECK(t.vocab_size() == opts.vocab_size, ValueError, "[tokenizer] train: SentencePiece made ",
            t.vocab_size(), " ids, not the ", opts.vocab_size, " asked for");
  write_tokenizer_dir(out_dir, t.model_bytes(), t.spec());
  return stats;
}

}  // namespace metalm::data
