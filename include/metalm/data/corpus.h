// A corpus: named sources (plain text or JSONL files, see documents.h), tokenized once into
// token shards (io/token_shard.h) under a cache directory and reused by later runs.
//
// The token stream of a document is its lines, each encoded and followed by the `</line>` id;
// the document ends with `</doc>`, stored inside its last line, so that packing (whole lines)
// never separates a document from its end marker:
//   "Let there be\nlight" -> [enc(Let there be) </line>] [enc(light) </line> </doc>]
// (The kosmos-2 loader instead turns a document's last `</line>` into `</s>`, spec 3.3 item 6;
// that layout is not offered. The marker ids are settings: SpecialIds.)
//
// Cache: <cache_dir>/<source>/shard-00000.bin, ... and manifest.json. A source is reused when
// its manifest records the same files (path, size, modification time in ns), the same document
// options, special ids and the tokenizer's vocab hash and size, and its shards validate;
// otherwise it is tokenized again (the old manifest is removed first, so a run killed half-way
// is never mistaken for a complete one). Memory while tokenizing: one line, one document's
// pending line, one write buffer, and the index of the open shard (4 bytes a line); reading is
// by mmap. The whole token stream is never in memory.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "metalm/data/documents.h"
#include "metalm/io/token_shard.h"

namespace metalm::data {

// The project's special ids (the tokenizer reserves them; spec 3.3 item 6).
struct SpecialIds {
  int32_t bos = 0, pad = 1, eos = 2, unk = 3, mask = 4, doc = 5, image = 6, image_end = 7, line = 8;
};

// Appends the ids of one line of text (no line break, no markers) to out. The tokenizer's
// encode; tests pass a fake one. Called from several threads at once (lines are encoded in
// parallel batches), so it must be thread-safe; an exception it throws stops the build.
using EncodeFn = std::function<void(std::string_view text, std::vector<int32_t>& out)>;

struct SourceConfig {
  std::string name;                // 1-64 of [A-Za-z0-9_.-]: it names the cache directory
  std::vector<std::string> paths;  // files, and directories (their files, sorted by name)
  DocumentOptions documents;
  double weight = 1.0;  // its share when the loader mixes sources (> 0)
};

struct CorpusConfig {
  std::vector<SourceConfig> sources;
  std::string cache_dir;  // created if missing
  io::VocabInfo vocab;    // the tokenizer's hash and size
  SpecialIds special;
  uint64_t max_shard_tokens = 1 << 27;  // a new shard starts at the first document boundary past it
  bool verify_reused = true;            // checksum the tokens of reused shards on open
  bool show_progress = true;            // the progress line on stderr
  // Lines are encoded in parallel in batches of about this much text (the shards do not
  // depend on it, nor on the thread count).
  size_t encode_batch_bytes = size_t(1) << 20;
};

// One source's documents across its shards (mapped, validated).
class TokenizedSource {
 public:
  TokenizedSource(SourceConfig config, std::vector<io::Shard> shards, bool reused);
  const SourceConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  uint64_t docs() const { return doc_begin_.back(); }
  uint64_t tokens() const { return tokens_; }
  uint64_t lines() const { return lines_; }
  bool reused() const { return reused_; }  // its shards came from an earlier run
  const std::vector<io::Shard>& shards() const { return shards_; }

  // Document d (in [0, docs())) of the source: its shard and its lines there.
  struct Doc {
    const io::Shard* shard;
    uint64_t first_line, end_line;
  };
  Doc doc(uint64_t d) const;

 private:
  SourceConfig config_;
  std::vector<io::Shard> shards_;
  std::vector<uint64_t> doc_begin_;  // first document of each shard, then the total
  uint64_t tokens_ = 0, lines_ = 0;
  bool reused_ = false;
};

struct Corpus {
  std::vector<TokenizedSource> sources;
};

// Tokenizes every source whose cache is missing or stale, then opens all shards. Errors:
// ValueError for a bad config (no sources, a bad or repeated name, a weight <= 0, special ids
// outside the vocab), IoError for a missing file, FormatError for bad bytes (named by file,
// line and byte offset) and for a source with no document; a failure leaves no shard or
// manifest behind for that source.
Corpus build_corpus(const CorpusConfig& config, const EncodeFn& encode);

// The files of a source in reading order (directories expanded, hidden files skipped).
std::vector<std::string> source_files(const SourceConfig& source);

}  // namespace metalm::data
