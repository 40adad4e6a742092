// Token shards: a tokenized corpus on disk, written once and memory-mapped for reading.
//
// A shard holds documents, a document holds lines (a line is the packing unit: its token ids
// with their markers), in one little-endian file:
//   [0, 256)  header: magic "MLMSHARD", format version, token width (2 bytes when the vocab
//             fits in uint16, else 4), vocab hash and size (the caller's tokenizer), token, line
//             and document counts, checksums of the tokens and of the index, source name (up
//             to 127 bytes), and a checksum of the header itself;
//   tokens    token_count ids, then zero padding to a multiple of 8 bytes;
//   lines     line_count u32: the end (exclusive) of each line in the shard's tokens;
//   docs      doc_count + 1 u32: the first line of each document, then line_count.
// u32 offsets bound a shard to 2^32 - 1 tokens; the corpus builder starts a new shard well
// before. The writer streams tokens to disk through one buffer and keeps only the index (4
// bytes per line) in memory; the file appears under its name only when complete (temporary +
// rename, core::AtomicFile), so a crash never leaves a half-written shard.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "metalm/core/file.h"

namespace metalm::io {

// The tokenizer a shard was made with: a hash of its model and its vocabulary size, both given
// by the caller (the data layer's tokenizer computes them).
struct VocabInfo {
  uint64_t hash = 0;
  uint64_t size = 0;
  bool operator==(const VocabInfo&) const = default;
};

struct ShardHeader {
  static constexpr uint32_t kVersion = 1;
  static constexpr uint64_t kBytes = 256;
  static constexpr size_t kMaxSourceName = 127;
  uint32_t version = kVersion;
  uint32_t token_bytes = 2;
  VocabInfo vocab;
  uint64_t token_count = 0, line_count = 0, doc_count = 0;
  uint64_t tokens_checksum = 0, index_checksum = 0;
  std::string source;
};

// A streaming 64-bit checksum against corruption (not an adversary): four lanes of xxHash64's
// multiply-rotate round over 8-byte words, fed in any chunking with the same result. Not
// xxHash-compatible (the finish is simpler); fast enough (several GB/s) to verify a shard on open.
class Checksum64 {
 public:
  void update(const void* data, size_t n);
  uint64_t digest() const;

 private:
  uint64_t lanes_[4] = {0x9E3779B185EBCA87ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull,
                        0x85EBCA77C2B2AE63ull};
  uint8_t pending_[32] = {};  // bytes of an unfinished 32-byte stripe
  size_t pending_n_ = 0;
  uint64_t total_ = 0;
};

// 2 when every id of the vocab fits in uint16, else 4.
uint32_t token_bytes_for(uint64_t vocab_size);

class ShardWriter {
 public:
  // ValueError for an empty vocab or a source name over 127 bytes; IoError if the temporary
  // file cannot be created.
  ShardWriter(const std::string& path, const VocabInfo& vocab, const std::string& source);
  // Appends a line (n >= 1 ids, each < vocab size: a ValueError names the id) to the current
  // document.
  void add_line(const int32_t* ids, size_t n);
  // Ends the current document (which must have a line).
  void end_document();
  uint64_t token_count() const { return header_.token_count; }
  uint64_t doc_count() const { return header_.doc_count; }
  // Writes index and header and renames the file into place (no open document allowed).
  // Without finish(), the destructor removes the temporary.
  ShardHeader finish();

 private:
  void flush_tokens();

  std::string path_;
  AtomicFile file_;
  ShardHeader header_;
  std::vector<uint8_t> buf_;  // encoded tokens not yet written
  std::vector<uint32_t> line_ends_, doc_starts_;
  Checksum64 tokens_sum_;
  uint64_t doc_lines_ = 0;  // lines of the open document
};

// A shard mapped read-only. Opening validates the whole structure before anything is read
// through it: FormatError "[shard] path: ..." for a file shorter than its header or than its
// counts say (truncated), extra bytes, a wrong magic or version, a header, index or token
// checksum that does not match (corrupt), an index out of order, and, with `expect`, a vocab
// hash or size other than the tokenizer's. IoError if it cannot be opened.
class Shard {
 public:
  // verify_tokens = false skips the pass over the tokens (the header and index are checked
  // always): for a reopened shard whose checksum was verified when it was written or reused.
  explicit Shard(const std::string& path, const std::optional<VocabInfo>& expect = std::nullopt,
                 bool verify_tokens = true);
  const ShardHeader& header() const { return header_; }
  const std::string& path() const { return file_.path(); }
  uint64_t tokens() const { return header_.token_count; }
  uint64_t lines() const { return header_.line_count; }
  uint64_t docs() const { return header_.doc_count; }
  // Lines of document d are [doc_first_line(d), doc_first_line(d + 1)); d in [0, docs()].
  uint64_t doc_first_line(uint64_t d) const { return docs_[d]; }
  // Tokens of line l are [line_begin(l), line_end(l)).
  uint64_t line_end(uint64_t l) const { return lines_[l]; }
  uint64_t line_begin(uint64_t l) const { return l == 0 ? 0 : lines_[l - 1]; }
  int32_t token(uint64_t i) const;
  // Tokens [begin, end) as int32 into out.
  void copy_tokens(uint64_t begin, uint64_t end, int32_t* out) const;

 private:
  MappedFile file_;
  ShardHeader header_;
  const uint8_t* tokens_ = nullptr;
  const uint32_t* lines_ = nullptr;
  const uint32_t* docs_ = nullptr;
};

}  // namespace metalm::io
