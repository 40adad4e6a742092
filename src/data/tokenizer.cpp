// The tokenizer: SentencePiece underneath, our id tables on top (tokenizer.h says how the two
// id spaces relate), tokenizer.json through a strict field table.
#include "metalm/data/tokenizer.h"

#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>

#include "data/sentencepiece_util.h"
#include "metalm/data/line_reader.h"
#include "metalm/core/error.h"
#include "metalm/core/file.h"
#include "metalm/io/fields.h"
#include "metalm/io/json.h"

namespace metalm::data {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxModelBytes = 256ull << 20;  // XLM-R's 250k-piece model is 5 MB
constexpr uint64_t kMaxSpecBytes = 64 << 10;
constexpr int64_t kMaxIds = int64_t{1} << 30;  // ids are int32; leave room for arithmetic

// Special k without an id of its own decodes to nothing if it is a control token (as
// SentencePiece decodes its control pieces), else to its string.
bool is_control(size_t k) {
  return k <= 2;
}  // <s> <pad> </s>

const std::array<std::string, 9>& special_strings() {
  static const std::array<std::string, 9> s = [] {
    std::array<std::string, 9> a;
    for (size_t k = 0; k < a.size(); ++k) a[k] = kSpecialTokens[k];
    return a;
  }();
  return s;
}

const io::FieldTable<TokenizerSpec>& spec_table() {
  static const io::FieldTable<TokenizerSpec> t(
      "tokenizer.json",
      {io::field("id_offset", &TokenizerSpec::id_offset),
       io::field("bos_id", &TokenizerSpec::bos_id), io::field("pad_id", &TokenizerSpec::pad_id),
       io::field("eos_id", &TokenizerSpec::eos_id), io::field("unk_id", &TokenizerSpec::unk_id),
       io::field("mask_id", &TokenizerSpec::mask_id),
       io::field("doc_end_id", &TokenizerSpec::doc_end_id),
       io::field("image_id", &TokenizerSpec::image_id),
       io::field("image_end_id", &TokenizerSpec::image_end_id),
       io::field("line_end_id", &TokenizerSpec::line_end_id),
       io::field("vocab_size", &TokenizerSpec::vocab_size),
       io::field("vocab_hash", &TokenizerSpec::vocab_hash)});
  return t;
}

const char* special_field(size_t k) {
  static const char* names[9] = {"bos_id",     "pad_id",   "eos_id",       "unk_id",     "mask_id",
                                 "doc_end_id", "image_id", "image_end_id", "line_end_id"};
  return names[k];
}

// Every field is required: a tokenizer.json missing one was not written by us and guessing
// its ids would tokenize silently wrong.
TokenizerSpec read_spec_file(const std::string& path) {
  const io::Json j = io::load_json_file(path, "tokenizer", "tokenizer.json", {kMaxSpecBytes});
  const io::JsonWhere where{"tokenizer", path};
  TokenizerSpec spec;
  spec_table().read(j, spec, where);
  for (const std::string& name : spec_table().names())
    if (!j.contains(name)) where.fail(name, "missing (every field of tokenizer.json is required)");
  const bool hex = spec.vocab_hash.size() == 16 &&
                   spec.vocab_hash.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!hex)
    where.fail("vocab_hash", "expected 16 lowercase hex digits, got " + io::quote(spec.vocab_hash));
  return spec;
}

// FNV-1a, 64 bit: simple, stable across platforms and releases, enough to tell vocabularies
// apart (it is a consistency check, not a defence against forgery).
struct Fnv1a {
  uint64_t h = 0xcbf29ce484222325ull;
  void bytes(std::string_view s) {
    for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  }
  void u64(uint64_t v) {  // little-endian, whatever the host
    for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * 0x100000001b3ull;
  }
};

// Calls fn(field_number, bytes) for every length-delimited top-level field of a protobuf
// message; false if the bytes are not a well-formed message. The Debian package ships no
// generated ModelProto header, and three fields of the wire format are all we need.
template <typename Fn>
bool for_each_bytes_field(std::string_view msg, Fn fn) {
  size_t i = 0;
  auto varint = [&](uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64 && i < msg.size(); shift += 7) {
      const auto b = static_cast<unsigned char>(msg[i++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (i < msg.size()) {
    uint64_t key = 0, v = 0;
    if (!varint(key)) return false;
    switch (key & 7) {
      case 0:
        if (!varint(v)) return false;
        break;
      case 1:
      case 5: {
        const size_t n = (key & 7) == 1 ? 8 : 4;
        if (msg.size() - i < n) return false;
        i += n;
        break;
      }
      case 2:
        if (!varint(v) || v > msg.size() - i) return false;
        fn(key >> 3, msg.substr(i, v));
        i += v;
        break;
      default:
        return false;
    }
  }
  return true;
}

}  // namespace

struct Tokenizer::State {
  std::string model_bytes;
  sentencepiece::SentencePieceProcessor sp;
  TokenizerSpec spec;
  std::vector<int32_t> spm_to_id;  // SentencePiece id -> ours
  std::vector<int32_t> id_to_spm;  // ours -> SentencePiece id, or -1 - k for special k
  uint64_t hash = 0;
};

std::array<int64_t, 9> TokenizerSpec::special_ids() const {
  return {bos_id, pad_id, eos_id, unk_id, mask_id, doc_end_id, image_id, image_end_id, line_end_id};
}

void TokenizerSpec::set_special_ids(const std::array<int64_t, 9>& ids) {
  bos_id = ids[0], pad_id = ids[1], eos_id = ids[2], unk_id = ids[3], mask_id = ids[4];
  doc_end_id = ids[5], image_id = ids[6], image_end_id = ids[7], line_end_id = ids[8];
}

ImportOptions ImportOptions::fairseq() {
  ImportOptions o;
  o.id_offset = 1;
  for (int64_t k = 0; k < 4; ++k) o.special_ids[static_cast<size_t>(k)] = k;
  return o;
}

std::string format_vocab_hash(uint64_t hash) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, hash);
  return buf;
}

std::string spm_message(const sentencepiece::util::Status& status, std::string_view fallback) {
  std::string m = status.error_message() ? status.error_message() : "";
  if (m.find(".cc(") != std::string::npos) {
    const size_t open = m.find(" [");
    const size_t close = open == std::string::npos ? open : m.find("] ", open);
    m = close == std::string::npos ? std::string() : m.substr(close + 2);
  }
  for (char& c : m)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  while (!m.empty() && m.back() == ' ') m.pop_back();
  return m.empty() ? std::string(fallback) : m;
}

namespace {

// The SentencePiece id holding special k (for <unk>: the unknown piece), or -1.
int spm_piece_of(const sentencepiece::SentencePieceProcessor& sp, size_t k) {
  if (k == 3) return sp.unk_id();
  const int p = sp.PieceToId(special_strings()[k]);
  return p >= 0 && p < sp.GetPieceSize() && sp.IdToPiece(p) == special_strings()[k] ? p : -1;
}

// Fills s.spm_to_id / id_to_spm from s.spec and checks that they are one-to-one onto
// [0, vocab_size); when `fill`, vocab_size comes from the model instead of being checked.
void build_id_tables(Tokenizer::State& s, bool fill, const io::JsonWhere& where) {
  const TokenizerSpec& spec = s.spec;
  const std::array<int64_t, 9> ids = spec.special_ids();
  MLM_CHECK(spec.id_offset >= 0 && spec.id_offset < kMaxIds, ValueError, where.prefix(),
            "id_offset: must be in [0, ", kMaxIds, "), got ", spec.id_offset);
  for (size_t k = 0; k < ids.size(); ++k) {
    const int64_t lo = k <= 3 ? 0 : -1;  // <s> <pad> </s> <unk> are required
    if (ids[k] < lo || ids[k] >= kMaxIds)
      where.fail(special_field(k),
                 detail::cat("must be in [", lo, ", ", kMaxIds, ") (",
                             lo == 0 ? "required" : "-1: none", "), got ", ids[k]));
  }
  const int n = s.sp.GetPieceSize();
  s.spm_to_id.assign(static_cast<size_t>(n), -1);
  std::array<int, 9> piece_of{};
  for (size_t k = 0; k < ids.size(); ++k) {
    piece_of[k] = ids[k] >= 0 ? spm_piece_of(s.sp, k) : -1;
    if (piece_of[k] >= 0)
      s.spm_to_id[static_cast<size_t>(piece_of[k])] = static_cast<int32_t>(ids[k]);
  }
  int64_t size = 0;
  for (int p = 0; p < n; ++p) {
    int32_t& id = s.spm_to_id[static_cast<size_t>(p)];
    if (id < 0) id = static_cast<int32_t>(p + spec.id_offset);
    size = std::max<int64_t>(size, int64_t{id} + 1);
  }
  for (const int64_t id : ids) size = std::max(size, id + 1);
  if (fill) s.spec.vocab_size = size;
  MLM_CHECK(spec.vocab_size == size, ValueError, where.prefix(), "vocab_size: ", spec.vocab_size,
            " recorded, but the model gives ", size, " ids (", n,
            " SentencePiece pieces, id_offset ", spec.id_offset,
            ", the special ids): tokenizer.model is not the one this file was "
            "written for");

  // One-to-one onto [0, size) needs exactly size owners: checked before the table below is
  // allocated, so that a hostile id near 2^30 costs no memory.
  int64_t own_ids = 0;
  for (size_t k = 0; k < ids.size(); ++k) own_ids += ids[k] >= 0 && piece_of[k] < 0;
  MLM_CHECK(size == n + own_ids, ValueError, where.prefix(), "the ids leave gaps: vocab_size ",
            size, ", but ", n, " SentencePiece pieces and ", own_ids,
            " special tokens of their own (every id below vocab_size must be one of them)");

  // Who owns each id: a piece (>= 0) or special k (-1 - k); every id exactly once.
  constexpr int32_t kFree = INT32_MIN;
  s.id_to_spm.assign(static_cast<size_t>(size), kFree);
  auto owner = [&](int32_t o) {
    for (size_t k = 0; k < ids.size() && o >= 0; ++k)
      if (piece_of[k] == o) return detail::cat(special_strings()[k], " (", special_field(k), ")");
    return o >= 0 ? detail::cat("the piece ", io::quote(s.sp.IdToPiece(o)), " (SentencePiece id ",
                                o, " + id_offset ", spec.id_offset, ")")
                  : detail::cat(special_strings()[static_cast<size_t>(-1 - o)], " (",
                                special_field(static_cast<size_t>(-1 - o)), ")");
  };
  auto claim = [&](int64_t id, int32_t o) {
    int32_t& slot = s.id_to_spm[static_cast<size_t>(id)];
    MLM_CHECK(slot == kFree, ValueError, where.prefix(), "id ", id, " is both ", owner(slot),
              " and ", owner(o));
    slot = o;
  };
  for (int p = 0; p < n; ++p) claim(s.spm_to_id[static_cast<size_t>(p)], p);
  for (size_t k = 0; k < ids.size(); ++k)
    if (ids[k] >= 0 && piece_of[k] < 0) claim(ids[k], -1 - static_cast<int32_t>(k));
  for (int64_t id = 0; id < size; ++id)
    MLM_CHECK(s.id_to_spm[static_cast<size_t>(id)] != kFree, ValueError, where.prefix(), "id ", id,
              " is neither a piece nor a special token (every id below vocab_size ", size,
              " must be one)");
}

uint64_t compute_hash(const Tokenizer::State& s, const std::string& source) {
  Fnv1a h;
  // ModelProto fields 1 (pieces: string, score, type), 3 (normalizer), 5 (denormalizer);
  // field 2, the trainer spec, holds settings such as the thread count that do not change
  // how text maps to ids.
  const bool ok = for_each_bytes_field(s.model_bytes, [&](uint64_t field, std::string_view b) {
    if (field != 1 && field != 3 && field != 5) return;
    h.u64(field);
    h.u64(b.size());
    h.bytes(b);
  });
  MLM_CHECK(ok, FormatError, "[tokenizer] ", source,
            ": not a SentencePiece model (malformed protobuf)");
  h.u64(static_cast<uint64_t>(s.spec.id_offset));
  for (const int64_t id : s.spec.special_ids()) h.u64(static_cast<uint64_t>(id));
  h.u64(static_cast<uint64_t>(s.spec.vocab_size));
  return h.h;
}

// Messages about the model name model_source, those about the ids spec_source (tokenizer.json
// when loading a directory).
std::shared_ptr<const Tokenizer::State> build_state(std::string model_bytes, TokenizerSpec spec,
                                                    const std::string& model_source,
                                                    const std::string& spec_source) {
  auto s = std::make_shared<Tokenizer::State>();
  s->model_bytes = std::move(model_bytes);
  s->spec = std::move(spec);
  const auto status = s->sp.LoadFromSerializedProto(s->model_bytes);
  MLM_CHECK(status.ok(), FormatError, "[tokenizer] ", model_source, ": not a SentencePiece model (",
            spm_message(status, "the protobuf does not parse"), ")");
  const bool fill = s->spec.vocab_hash.empty();
  build_id_tables(*s, fill, io::JsonWhere{"tokenizer", spec_source});
  s->hash = compute_hash(*s, model_source);
  const std::string hash = format_vocab_hash(s->hash);
  if (fill) s->spec.vocab_hash = hash;
  MLM_CHECK(s->spec.vocab_hash == hash, FormatError, "[tokenizer] ", spec_source, ": vocab_hash ",
            s->spec.vocab_hash, " recorded, the files give ", hash,
            ": tokenizer.model and tokenizer.json come from different tokenizers, or one is "
            "damaged");
  return s;
}

}  // namespace

Tokenizer Tokenizer::from_model_bytes(std::string model_bytes, TokenizerSpec spec,
                                      const std::string& source) {
  return Tokenizer(build_state(std::move(model_bytes), std::move(spec), source, source));
}

Tokenizer Tokenizer::load(const std::string& dir) {
  MLM_CHECK(fs::is_directory(dir), IoError, "[tokenizer] ", dir, ": not a directory");
  const std::string json_path = (fs::path(dir) / "tokenizer.json").string();
  const std::string model_path = (fs::path(dir) / "tokenizer.model").string();
  MLM_CHECK(fs::exists(json_path), IoError, "[tokenizer] ", dir,
            ": no tokenizer.json (is this a tokenizer directory? `metalm tokenizer train` "
            "writes one)");
  const TokenizerSpec spec = read_spec_file(json_path);
  std::string bytes =
      read_file_bounded(model_path, kMaxModelBytes, "tokenizer", "a SentencePiece model");
  return Tokenizer(build_state(std::move(bytes), spec, model_path, json_path));
}

Tokenizer Tokenizer::from_sentencepiece(const std::string& model_path, const std::string& out_dir,
                                        const ImportOptions& opts) {
  std::string bytes =
      read_file_bounded(model_path, kMaxModelBytes, "tokenizer", "a SentencePiece model");
  sentencepiece::SentencePieceProcessor sp;
  const auto status = sp.LoadFromSerializedProto(bytes);
  MLM_CHECK(status.ok(), FormatError, "[tokenizer] ", model_path, ": not a SentencePiece model (",
            spm_message(status, "the protobuf does not parse"), ")");
  // kAppend: the model's own piece if it has one, else the next id after everything given.
  std::array<int64_t, 9> ids = opts.special_ids;
  int64_t next = sp.GetPieceSize() + opts.id_offset;
  for (const int64_t id : ids) next = std::max(next, id + 1);
  for (size_t k = 0; k < ids.size(); ++k) {
    if (ids[k] != ImportOptions::kAppend) continue;
    const int p = spm_piece_of(sp, k);
    ids[k] = p >= 0 ? p + opts.id_offset : next++;
  }
  TokenizerSpec spec;
  spec.id_offset = opts.id_offset;
  spec.set_special_ids(ids);
  Tokenizer t = from_model_bytes(std::move(bytes), spec, model_path);
  write_tokenizer_dir(out_dir, t.model_bytes(), t.spec());
  return t;
}

void write_tokenizer_dir(const std::string& dir, const std::string& model_bytes,
                         const TokenizerSpec& spec) {
  const fs::path d(dir);
  std::error_code ec;
  MLM_CHECK(!fs::exists(d, ec) || fs::is_directory(d, ec), IoError, "[tokenizer] ", dir,
            ": exists and is not a directory");
  MLM_CHECK(!fs::exists(d / "model.safetensors", ec) || !fs::exists(d / "tokenizer.json", ec),
            IoError, "[tokenizer] ", dir,
            ": holds model weights trained with its tokenizer; write the new tokenizer to "
            "another directory");
  const bool created = fs::create_directories(d, ec);
  MLM_CHECK(!ec, IoError, "[tokenizer] ", dir, ": cannot create the directory: ", ec.message());
  try {
    AtomicFile model("tokenizer", (d / "tokenizer.model").string());
    model.write(model_bytes.data(), model_bytes.size());
    AtomicFile json("tokenizer", (d / "tokenizer.json").string());
    const std::string text = spec_table().write(spec).dump(2) + "\n";
    json.write(text.data(), text.size());
    model.commit();
    json.commit();
  } catch (...) {
    if (created) fs::remove(d, ec);  // only if still empty
    throw;
  }
}

void Tokenizer::save(const std::string& dir) const {
  const fs::path d(dir);
  std::error_code ec;
  if (fs::exists(d / "tokenizer.json", ec)) {
    const Tokenizer there = load(dir);
    MLM_CHECK(there.vocab_hash() == vocab_hash(), ValueError, "[tokenizer] ", dir,
              ": holds another tokenizer (vocab hash ", format_vocab_hash(there.vocab_hash()),
              ", this one ", format_vocab_hash(vocab_hash()), ")");
    return;
  }
  fs::create_directories(d, ec);
  MLM_CHECK(!ec, IoError, "[tokenizer] ", dir, ": cannot create the directory: ", ec.message());
  AtomicFile model("tokenizer", (d / "tokenizer.model").string());
  model.write(model_bytes().data(), model_bytes().size());
  AtomicFile json("tokenizer", (d / "tokenizer.json").string());
  const std::string text = spec_table().write(spec()).dump(2) + "\n";
  json.write(text.data(), text.size());
  model.commit();
  json.commit();
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const size_t bad = find_invalid_utf8(text);
  MLM_CHECK(bad == std::string_view::npos, ValueError,
            "[tokenizer] encode: the text is not valid UTF-8 (at byte ", bad, ")");
  std::vector<int> spm_ids;
  const auto status = s_->sp.Encode(text, &spm_ids);
  MLM_CHECK(status.ok(), ValueError, "[tokenizer] encode: ", spm_message(status, "failed"));
  std::vector<int32_t> ids(spm_ids.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = s_->spm_to_id[static_cast<size_t>(spm_ids[i])];
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  std::vector<int> run;  // SentencePiece ids decoded together, so spacing follows its rules
  auto flush = [&] {
    if (run.empty()) return;
    std::string part;
    const auto status = s_->sp.Decode(run, &part);
    MLM_CHECK(status.ok(), ValueError, "[tokenizer] decode: ", spm_message(status, "failed"));
    // SentencePiece drops the space that starts its output (the dummy prefix "▁"); inside a
    // text, after a special token of our own, that space is the text's.
    if (!text.empty() && s_->sp.IdToPiece(run.front()).rfind("\xE2\x96\x81", 0) == 0) text += ' ';
    text += part;
    run.clear();
  };
  for (const int32_t id : ids) {
    MLM_CHECK(id >= 0 && id < vocab_size(), ValueError, "[tokenizer] decode: id ", id,
              " out of range [0, ", vocab_size(), ")");
    const int32_t o = s_->id_to_spm[static_cast<size_t>(id)];
    if (o >= 0) {
      run.push_back(o);
      continue;
    }
    flush();
    const auto k = static_cast<size_t>(-1 - o);
    if (!is_control(k)) text += special_strings()[k];
  }
  flush();
  return text;
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(s_->spec.vocab_size);
}

const std::string& Tokenizer::piece(int32_t id) const {
  MLM_CHECK(id >= 0 && id < vocab_size(), ValueError, "[tokenizer] piece: id ", id,
            " out of range [0, ", vocab_size(), ")");
  const int32_t o = s_->id_to_spm[static_cast<size_t>(id)];
  return o >= 0 ? s_->sp.IdToPiece(o) : special_strings()[static_cast<size_t>(-1 - o)];
}

std::optional<int32_t> Tokenizer::id_of(std::string_view piece) const {
  const std::array<int64_t, 9> ids = s_->spec.special_ids();
  for (size_t k = 0; k < ids.size(); ++k)
    if (ids[k] >= 0 && piece == special_strings()[k]) return static_cast<int32_t>(ids[k]);
  const int p = s_->sp.PieceToId(piece);
  if (p >= 0 && p < s_->sp.GetPieceSize() && s_->sp.IdToPiece(p) == piece)
    return s_->spm_to_id[static_cast<size_t>(p)];
  return std::nullopt;
}

uint64_t Tokenizer::vocab_hash() const {
  return s_->hash;
}
const TokenizerSpec& Tokenizer::spec() const {
  return s_->spec;
}
const std::string& Tokenizer::model_bytes() const {
  return s_->model_bytes;
}

}  // namespace metalm::data
