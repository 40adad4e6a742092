#include "metalm/data/packing.h"

#include <algorithm>

#include "metalm/core/error.h"

namespace metalm::data {

template <typename Take>
PackedSource::Pos PackedSource::walk(Pos p, Take&& take) const {
  const uint64_t T = static_cast<uint64_t>(options_.tokens_per_sample);
  uint64_t used = 1;  // <s>
  while (p.doc < documents_.size()) {
    const TokenizedSource::Doc d = source_->doc(documents_[p.doc]);
    const uint64_t n_lines = d.end_line - d.first_line;
    while (p.line < n_lines) {
      const uint64_t l = d.first_line + p.line;
      const uint64_t full = d.shard->line_end(l) - d.shard->line_begin(l);
      const uint64_t n = full - p.offset;  // what is left of it
      if (used + n <= T) {
        take(p.doc, *d.shard, l, p.offset, n, full);
        used += n;
        ++p.line;
        p.offset = 0;
        continue;
      }
      if (used > 1) return p;  // does not fit: it starts the next sequence
      take(p.doc, *d.shard, l, p.offset, T - 1, full);  // alone and still too long
      if (options_.long_lines == LongLines::split) {
        p.offset += T - 1;  // the rest starts the next sequence (n > T - 1: some is left)
        return p;
      }
      p.offset = 0;
      if (++p.line == n_lines) p = {p.doc + 1, 0, 0};
      return p;
    }
    p = {p.doc + 1, 0, 0};
    if (options_.mode == PackMode::complete_doc || used == T) return p;
  }
  return p;
}

PackedSource::PackedSource(const TokenizedSource& source, std::vector<uint64_t> documents,
                           const PackOptions& options, const SpecialIds& special)
    : source_(&source), documents_(std::move(documents)), options_(options), special_(special) {
  MLM_CHECK(options.tokens_per_sample >= 2 && options.tokens_per_sample <= (int64_t{1} << 30),
            ValueError, "[pack] tokens_per_sample must be in [2, 2^30], got ",
            options.tokens_per_sample);
  // One pass over the line index (no tokens are read) finds where each sequence starts.
  Pos p;
  while (p.doc < documents_.size()) {
    starts_.push_back(p);
    ++packed_;  // <s>
    p = walk(p, [&](uint64_t, const io::Shard&, uint64_t, uint64_t offset, uint64_t taken,
                    uint64_t full) {
      packed_ += taken;
      if (offset == 0 && taken < full) {
        ++cut_lines_;
        if (options_.long_lines == LongLines::cut) cut_tokens_ += full - taken;
      }
    });
  }
}

void PackedSource::sequence(uint64_t i, PackedSequence& out) const {
  MLM_CHECK(i < starts_.size(), ValueError, "[pack] sequence ", i, " out of range (",
            starts_.size(), " sequences)");
  const int32_t T = static_cast<int32_t>(options_.tokens_per_sample);
  out.tokens.assign(T, special_.pad);
  out.segments.assign(T, -1);
  out.positions.assign(T, 0);
  out.lines.clear();
  out.documents.clear();
  out.tokens[0] = special_.bos;
  out.segments[0] = 0;
  int32_t at = 1, segment_start = 0;
  uint64_t last_doc = UINT64_MAX;
  walk(starts_[i],
       [&](uint64_t doc, const io::Shard& shard, uint64_t line, uint64_t offset, uint64_t taken,
           uint64_t full) {
         if (doc != last_doc) {
           if (!out.documents.empty()) segment_start = at;  // segment 0 starts at <s>
           out.documents.push_back(documents_[doc]);
           last_doc = doc;
         }
         const int32_t n = static_cast<int32_t>(taken);
         const uint64_t b = shard.line_begin(line) + offset;
         shard.copy_tokens(b, b + taken, out.tokens.data() + at);
         std::fill_n(out.segments.begin() + at, n, static_cast<int32_t>(out.documents.size() - 1));
         for (int32_t t = at; t < at + n; ++t)
           out.positions[t] = options_.restart_positions ? t - segment_start : t;
         out.lines.push_back({at, at + n, offset + taken < full, offset > 0});
         at += n;
       });
  out.length = at;
  for (int32_t t = at; t < T; ++t)
    out.positions[t] = options_.restart_positions ? t - segment_start : t;
}

}  // namespace metalm::data
