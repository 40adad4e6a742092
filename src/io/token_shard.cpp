// Token shard write and validated read. The header is checked first (size, magic, its own
// checksum, version), so that every later check can trust the counts it reads; the counts then
// fix the exact file size, and the index is walked once before any lookup relies on it.
#include "metalm/io/token_shard.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>

#include "metalm/core/error.h"

namespace metalm::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "token shards are mapped as little-endian arrays");

constexpr char kMagic[8] = {'M', 'L', 'M', 'S', 'H', 'A', 'R', 'D'};
constexpr size_t kBufferBytes = 1 << 20;
constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full;

uint64_t round64(uint64_t acc, uint64_t w) {
  return std::rotl(acc + w * kP2, 31) * kP1;
}
uint64_t load64(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}
std::string hex64(uint64_t v) {
  char s[19];
  std::snprintf(s, sizeof s, "0x%016llx", static_cast<unsigned long long>(v));
  return s;
}
uint64_t align8(uint64_t n) {
  return (n + 7) & ~uint64_t{7};
}

template <typename... Args>
[[noreturn]] void corrupt(const std::string& path, const Args&... args) {
  throw FormatError(detail::cat("[shard] ", path, ": ", args...));
}

// Header fields at fixed offsets; the checksum covers bytes [0, 248).
struct Layout {
  static constexpr size_t version = 8, token_bytes = 12, vocab_hash = 16, vocab_size = 24,
                          token_count = 32, line_count = 40, doc_count = 48, tokens_sum = 56,
                          index_sum = 64, source_len = 72, source = 80, header_sum = 248;
};

void put32(uint8_t* h, size_t at, uint32_t v) {
  std::memcpy(h + at, &v, 4);
}
void put64(uint8_t* h, size_t at, uint64_t v) {
  std::memcpy(h + at, &v, 8);
}
uint32_t get32(const uint8_t* h, size_t at) {
  uint32_t v;
  std::memcpy(&v, h + at, 4);
  return v;
}
uint64_t get64(const uint8_t* h, size_t at) {
  return load64(h + at);
}

uint64_t header_checksum(const uint8_t* h) {
  Checksum64 c;
  c.update(h, Layout::header_sum);
  return c.digest();
}

uint64_t index_checksum(const uint32_t* lines, uint64_t n_lines, const uint32_t* docs,
                        uint64_t n_docs) {
  Checksum64 c;
  c.update(lines, n_lines * 4);
  c.update(docs, (n_docs + 1) * 4);
  return c.digest();
}

// Section offsets from the counts; false if they overflow (a hostile header).
struct Sections {
  uint64_t lines = 0, docs = 0, end = 0;
};
bool sections_of(const ShardHeader& h, Sections& s) {
  constexpr uint64_t kMax = uint64_t{1} << 40;  // far above any shard; keeps the sums exact
  if (h.token_count > kMax || h.line_count > kMax || h.doc_count > kMax) return false;
  s.lines = align8(ShardHeader::kBytes + h.token_count * h.token_bytes);
  s.docs = s.lines + 4 * h.line_count;
  s.end = s.docs + 4 * (h.doc_count + 1);
  return true;
}

}  // namespace

void Checksum64::update(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  total_ += n;
  if (pending_n_ > 0) {
    const size_t take = std::min(n, 32 - pending_n_);
    std::memcpy(pending_ + pending_n_, p, take);
    pending_n_ += take;
    p += take;
    n -= take;
    if (pending_n_ < 32) return;
    for (int i = 0; i < 4; ++i) lanes_[i] = round64(lanes_[i], load64(pending_ + 8 * i));
    pending_n_ = 0;
  }
  for (; n >= 32; p += 32, n -= 32)
    for (int i = 0; i < 4; ++i) lanes_[i] = round64(lanes_[i], load64(p + 8 * i));
  std::memcpy(pending_, p, n);
  pending_n_ = n;
}

uint64_t Checksum64::digest() const {
  uint64_t h = std::rotl(lanes_[0], 1) + std::rotl(lanes_[1], 7) + std::rotl(lanes_[2], 12) +
               std::rotl(lanes_[3], 18);
  h = round64(h, total_);
  uint8_t tail[32] = {};
  std::memcpy(tail, pending_, pending_n_);
  for (int i = 0; i < 4; ++i) h = round64(h, load64(tail + 8 * i));
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  return h;
}

uint32_t token_bytes_for(uint64_t vocab_size) {
  return vocab_size <= 65536 ? 2 : 4;
}

// ---------------------------------------------------------------------------- writing

ShardWriter::ShardWriter(const std::string& path, const VocabInfo& vocab, const std::string& source)
    : path_(path), file_("shard", path) {
  MLM_CHECK(vocab.size > 0 && vocab.size <= (uint64_t{1} << 31), ValueError, "[shard] ", path,
            ": vocab size must be in [1, 2^31], got ", vocab.size);
  MLM_CHECK(source.size() <= ShardHeader::kMaxSourceName, ValueError, "[shard] ", path,
            ": source name is ", source.size(), " bytes, the limit is ",
            ShardHeader::kMaxSourceName);
  header_.vocab = vocab;
  header_.token_bytes = token_bytes_for(vocab.size);
  header_.source = source;
  const uint8_t placeholder[ShardHeader::kBytes] = {};  // rewritten by finish()
  file_.write(placeholder, sizeof placeholder);
  buf_.reserve(kBufferBytes);
  doc_starts_.push_back(0);
}

void ShardWriter::add_line(const int32_t* ids, size_t n) {
  MLM_CHECK(n > 0, ValueError, "[shard] ", path_, ": a line needs at least one token");
  MLM_CHECK(header_.token_count + n < std::numeric_limits<uint32_t>::max(), ValueError, "[shard] ",
            path_, ": more than 2^32 - 1 tokens in one shard");
  // One unsigned compare per id catches negative ids too; the loop vectorizes.
  uint32_t largest = 0;
  for (size_t i = 0; i < n; ++i) largest = std::max(largest, static_cast<uint32_t>(ids[i]));
  if (largest >= header_.vocab.size)
    for (size_t i = 0; i < n; ++i)
      MLM_CHECK(ids[i] >= 0 && static_cast<uint64_t>(ids[i]) < header_.vocab.size, ValueError,
                "[shard] ", path_, ": token id ", ids[i], " is outside the vocab [0, ",
                header_.vocab.size, ")");
  const size_t width = header_.token_bytes;
  for (size_t done = 0; done < n;) {  // in pieces that fit the buffer (a line may not)
    if (buf_.size() + width > kBufferBytes) flush_tokens();
    const size_t take = std::min(n - done, (kBufferBytes - buf_.size()) / width);
    const size_t at = buf_.size();
    buf_.resize(at + take * width);
    uint8_t* dst = buf_.data() + at;
    if (width == 2) {
      for (size_t i = 0; i < take; ++i) {
        const uint16_t v = static_cast<uint16_t>(ids[done + i]);
        std::memcpy(dst + 2 * i, &v, 2);
      }
    } else {
      std::memcpy(dst, ids + done, 4 * take);
    }
    done += take;
  }
  header_.token_count += n;
  line_ends_.push_back(static_cast<uint32_t>(header_.token_count));
  ++doc_lines_;
}

void ShardWriter::end_document() {
  MLM_CHECK(doc_lines_ > 0, ValueError, "[shard] ", path_, ": a document needs at least one line");
  doc_starts_.push_back(static_cast<uint32_t>(line_ends_.size()));
  ++header_.doc_count;
  doc_lines_ = 0;
}

void ShardWriter::flush_tokens() {
  tokens_sum_.update(buf_.data(), buf_.size());
  file_.write(buf_.data(), buf_.size());
  buf_.clear();
}

ShardHeader ShardWriter::finish() {
  MLM_CHECK(doc_lines_ == 0, ValueError, "[shard] ", path_, ": finish() inside a document");
  flush_tokens();
  const uint64_t token_end = ShardHeader::kBytes + header_.token_count * header_.token_bytes;
  const uint8_t zeros[8] = {};
  file_.write(zeros, align8(token_end) - token_end);
  header_.line_count = line_ends_.size();
  header_.tokens_checksum = tokens_sum_.digest();
  header_.index_checksum =
      index_checksum(line_ends_.data(), line_ends_.size(), doc_starts_.data(), header_.doc_count);
  file_.write(line_ends_.data(), 4 * line_ends_.size());
  file_.write(doc_starts_.data(), 4 * doc_starts_.size());

  uint8_t h[ShardHeader::kBytes] = {};
  std::memcpy(h, kMagic, 8);
  put32(h, Layout::version, header_.version);
  put32(h, Layout::token_bytes, header_.token_bytes);
  put64(h, Layout::vocab_hash, header_.vocab.hash);
  put64(h, Layout::vocab_size, header_.vocab.size);
  put64(h, Layout::token_count, header_.token_count);
  put64(h, Layout::line_count, header_.line_count);
  put64(h, Layout::doc_count, header_.doc_count);
  put64(h, Layout::tokens_sum, header_.tokens_checksum);
  put64(h, Layout::index_sum, header_.index_checksum);
  put32(h, Layout::source_len, static_cast<uint32_t>(header_.source.size()));
  std::memcpy(h + Layout::source, header_.source.data(), header_.source.size());
  put64(h, Layout::header_sum, header_checksum(h));
  file_.write_at(0, h, sizeof h);
  file_.commit();
  return header_;
}

// ---------------------------------------------------------------------------- reading

Shard::Shard(const std::string& path, const std::optional<VocabInfo>& expect, bool verify_tokens)
    : file_(path, "shard") {
  const uint8_t* p = file_.data();
  const uint64_t size = file_.size();
  if (size < ShardHeader::kBytes)
    corrupt(path, "truncated: ", size, " bytes, shorter than the ", ShardHeader::kBytes,
            "-byte header");
  if (std::memcmp(p, kMagic, 8) != 0) corrupt(path, "not a metalm token shard (wrong magic)");
  if (get64(p, Layout::header_sum) != header_checksum(p))
    corrupt(path, "header checksum mismatch (corrupt shard; delete it to re-tokenize)");
  ShardHeader& h = header_;
  h.version = get32(p, Layout::version);
  if (h.version != ShardHeader::kVersion)
    corrupt(path, "format version ", h.version, ", this build reads version ",
            ShardHeader::kVersion, " (re-tokenize the corpus)");
  h.token_bytes = get32(p, Layout::token_bytes);
  h.vocab = {get64(p, Layout::vocab_hash), get64(p, Layout::vocab_size)};
  h.token_count = get64(p, Layout::token_count);
  h.line_count = get64(p, Layout::line_count);
  h.doc_count = get64(p, Layout::doc_count);
  h.tokens_checksum = get64(p, Layout::tokens_sum);
  h.index_checksum = get64(p, Layout::index_sum);
  const uint32_t name_len = get32(p, Layout::source_len);
  if (name_len > ShardHeader::kMaxSourceName) corrupt(path, "source name length ", name_len);
  h.source.assign(reinterpret_cast<const char*>(p + Layout::source), name_len);
  if (h.vocab.size == 0 || h.token_bytes != token_bytes_for(h.vocab.size))
    corrupt(path, "token width ", h.token_bytes, " does not fit vocab size ", h.vocab.size);
  if (expect && h.vocab != *expect)
    corrupt(path, "tokenized with another vocab (hash ", hex64(h.vocab.hash), ", size ",
            h.vocab.size, "), the tokenizer has hash ", hex64(expect->hash), ", size ",
            expect->size, " (re-tokenize the corpus)");

  Sections s;
  if (!sections_of(h, s)) corrupt(path, "implausible counts in the header");
  if (size < s.end) corrupt(path, "truncated: ", size, " bytes, the header says ", s.end);
  if (size > s.end) corrupt(path, size - s.end, " bytes after the end the header gives");
  tokens_ = p + ShardHeader::kBytes;
  lines_ = reinterpret_cast<const uint32_t*>(p + s.lines);
  docs_ = reinterpret_cast<const uint32_t*>(p + s.docs);
  if (index_checksum(lines_, h.line_count, docs_, h.doc_count) != h.index_checksum)
    corrupt(path, "index checksum mismatch (corrupt shard)");
  // The index is trusted below this point only because the walk here passed.
  uint64_t prev = 0;
  for (uint64_t l = 0; l < h.line_count; ++l) {
    if (lines_[l] <= prev) corrupt(path, "line ", l, " is empty or out of order");
    prev = lines_[l];
  }
  if (prev != h.token_count) corrupt(path, "lines end at ", prev, ", tokens at ", h.token_count);
  if (docs_[0] != 0 || docs_[h.doc_count] != h.line_count)
    corrupt(path, "document index does not cover the lines");
  for (uint64_t d = 0; d < h.doc_count; ++d)
    if (docs_[d + 1] <= docs_[d]) corrupt(path, "document ", d, " is empty or out of order");
  if (verify_tokens) {
    Checksum64 c;
    c.update(tokens_, h.token_count * h.token_bytes);
    if (c.digest() != h.tokens_checksum)
      corrupt(path, "token checksum mismatch (corrupt shard; delete it to re-tokenize)");
  }
}

int32_t Shard::token(uint64_t i) const {
  if (header_.token_bytes == 2) {
    uint16_t v;
    std::memcpy(&v, tokens_ + 2 * i, 2);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, tokens_ + 4 * i, 4);
  return static_cast<int32_t>(v);
}

void Shard::copy_tokens(uint64_t begin, uint64_t end, int32_t* out) const {
  if (header_.token_bytes == 2) {
    const uint8_t* p = tokens_ + 2 * begin;
    for (uint64_t i = begin; i < end; ++i, p += 2) {
      uint16_t v;
      std::memcpy(&v, p, 2);
      *out++ = v;
    }
  } else {
    std::memcpy(out, tokens_ + 4 * begin, 4 * (end - begin));
  }
}

}  // namespace metalm::io
