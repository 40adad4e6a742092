// Full-sentence packing (fairseq's "complete" and "complete_doc" break modes): sequences of
// exactly tokens_per_sample ids, each starting with <s>, filled greedily with whole lines of
// consecutive documents; the rest is padding, only where the next line does not fit. A line
// longer than tokens_per_sample - 1 fills sequences of its own: by default its rest goes on in
// the next sequences (a corpus whose paragraphs are single lines loses nothing), or with
// LongLines::cut its tail is dropped, as the kosmos-2 loader does. Each sequence reports its
// document segments, its line spans (for the span sampler, which must not cross them) and
// positions.
//
// Packing is deterministic and local: a sequence depends only on where it starts. PackedSource
// keeps only these starts (16 bytes a sequence) and rebuilds any sequence from the mapped
// shards on request, so the loader can shuffle sequences without holding their tokens.
#pragma once
#include <cstdint>
#include <vector>

#include "metalm/data/corpus.h"

namespace metalm::data {

enum class PackMode {
  complete,      // lines of several documents share a sequence (segments tell them apart)
  complete_doc,  // a sequence never holds two documents: each document starts a new one
};

enum class LongLines {
  split,  // a line that does not fit a sequence alone goes on in the next ones
  cut,    // its tail is dropped
};

struct PackOptions {
  int64_t tokens_per_sample = 512;  // >= 2
  PackMode mode = PackMode::complete;
  bool restart_positions = false;  // positions count from 0 in each document segment
  LongLines long_lines = LongLines::split;
};

struct LineSpan {
  int32_t begin = 0, end = 0;  // [begin, end) in the sequence
  bool cut = false;            // the line goes on after `end` (in the next sequence, or dropped)
  bool continued = false;      // the line began in an earlier sequence
};

struct PackedSequence {
  std::vector<int32_t> tokens;      // tokens_per_sample ids: <s>, lines, pad
  std::vector<int32_t> segments;    // per token: its document's index in this sequence (0, 1,
                                    // ...); <s> is in segment 0; pad is -1
  std::vector<int32_t> positions;   // per token: its index, or with restart_positions its index
                                    // in its segment; pad continues the count of the last one
  std::vector<LineSpan> lines;      // in order; lines[0].begin == 1
  std::vector<uint64_t> documents;  // per segment: the document's index in its source
  int32_t length = 0;               // ids before the padding
};

// The sequences of a list of a source's documents (e.g. its training split), in list order.
class PackedSource {
 public:
  // `source` must outlive this. ValueError for tokens_per_sample < 2.
  PackedSource(const TokenizedSource& source, std::vector<uint64_t> documents,
               const PackOptions& options, const SpecialIds& special = {});
  const TokenizedSource& source() const { return *source_; }
  const PackOptions& options() const { return options_; }
  uint64_t size() const { return starts_.size(); }
  // Sequence i (< size()) into out, reusing its storage.
  void sequence(uint64_t i, PackedSequence& out) const;
  uint64_t cut_lines() const { return cut_lines_; }    // lines that did not fit one sequence
  uint64_t cut_tokens() const { return cut_tokens_; }  // tokens dropped (LongLines::cut only)
  uint64_t packed_tokens() const {
    return packed_;
  }  // non-pad ids over all sequences, <s> included

 private:
  struct Pos {
    uint64_t doc = 0;     // index into documents_
    uint64_t line = 0;    // line within that document
    uint64_t offset = 0;  // tokens of that line already in earlier sequences
  };
  // Walks the sequence that starts at p, calling take(doc, shard, line, offset, taken, full)
  // for each line (piece) it holds; returns where the next sequence starts.
  template <typename Take>
  Pos walk(Pos p, Take&& take) const;

  const TokenizedSource* source_;
  std::vector<uint64_t> documents_;
  PackOptions options_;
  SpecialIds special_;
  std::vector<Pos> starts_;
  uint64_t cut_lines_ = 0, cut_tokens_ = 0, packed_ = 0;
};

}  // namespace metalm::data
