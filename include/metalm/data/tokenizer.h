// The tokenizer (DESIGN D1: SentencePiece): text <-> int32 ids, with the project's special
// tokens at ids recorded next to the model, so that model directories, corpus shards and
// prompts agree on what every id means.
//
// A tokenizer directory (also part of a model directory, DESIGN section 4) holds two files:
//   tokenizer.model  a SentencePiece model (unigram or BPE), byte for byte what spm_train writes;
//   tokenizer.json   our ids over it, every field required, unknown fields refused:
//     {"id_offset": 0, "bos_id": 0, "pad_id": 1, "eos_id": 2, "unk_id": 3, "mask_id": 4,
//      "doc_end_id": 5, "image_id": 6, "image_end_id": 7, "line_end_id": 8,
//      "vocab_size": 8000, "vocab_hash": "4f0c1d7e9a3b2c55"}
//   id_offset    our id = SentencePiece id + id_offset for every piece that is not a special
//                token: 0 for the tokenizers metalm trains, 1 for XLM-R / BEiT-3 models, whose
//                fairseq dictionary puts <s> <pad> </s> <unk> in front of the SentencePiece ids.
//   *_id         our id of each special token (strings in kSpecialTokens). A special whose
//                string is a piece of the SentencePiece model (for <unk>: its unknown piece)
//                takes that piece's place; the others have an id of their own that no piece
//                uses (XLM-R: SentencePiece's <unk> 0, <s> 1, </s> 2 become 3, 0, 2; <pad> is
//                1 and <mask> the id after the last piece). mask_id to line_end_id may be -1:
//                the tokenizer has no such token.
//   vocab_size   the number of ids; every id in [0, vocab_size) is exactly one piece or one
//                special token (checked at load).
//   vocab_hash   vocab_hash() as 16 hex digits: checked at load, so a tokenizer.model from
//                another tokenizer, or a damaged one, is an error instead of wrong ids.
//
// Tokenizers metalm trains have the nine specials at the fixed ids 0..8 in kSpecialTokens
// order (fairseq's bos 0, pad 1, eos 2, unk 3, as the configs' padding_idx 1 assumes). In
// their SentencePiece model <s> <pad> </s> are control pieces: encode() never produces them
// from text, so no document can forge a sequence boundary or padding; the pipeline adds them
// by id. <mask> </doc> <image> </image> </line> are user-defined pieces: written literally in
// the text, each becomes its one id (a corpus pipeline can join lines with "</line>").
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace metalm::data {

// The special tokens in id order of a trained tokenizer: kSpecialTokens[i] has id i.
inline constexpr std::array<const char*, 9> kSpecialTokens = {
    "<s>", "<pad>", "</s>", "<unk>", "<mask>", "</doc>", "<image>", "</image>", "</line>"};

// The contents of tokenizer.json (the field table is in tokenizer.cpp).
struct TokenizerSpec {
  int64_t id_offset = 0;
  int64_t bos_id = 0, pad_id = 1, eos_id = 2, unk_id = 3;  // required (>= 0)
  int64_t mask_id = 4, doc_end_id = 5, image_id = 6, image_end_id = 7, line_end_id = 8;  // or -1
  int64_t vocab_size = 0;
  std::string vocab_hash;

  // The nine special ids in kSpecialTokens order.
  std::array<int64_t, 9> special_ids() const;
  void set_special_ids(const std::array<int64_t, 9>& ids);
};

enum class TokenizerModelType { unigram, bpe };

// What train() read before training: the progress line's numbers.
struct CorpusStats {
  int64_t files = 0;
  int64_t lines = 0;          // every line read
  int64_t sentences = 0;      // lines kept for training (after sampling)
  int64_t characters = 0;     // Unicode characters in the kept lines
  int64_t skipped_empty = 0;  // empty or whitespace-only lines
  int64_t skipped_long = 0;   // lines longer than max_sentence_length bytes
  double seconds = 0;
};

struct TrainOptions {
  // UTF-8 text files, one sentence (line) per line; files named *.jsonl are JSONL records
  // {"text": ...} as the corpus reads them (documents.h), one sentence per line of a text.
  std::vector<std::string> inputs;
  int64_t vocab_size = 8000;  // every id, the nine specials included
  TokenizerModelType model_type = TokenizerModelType::unigram;
  double character_coverage = 0.9995;  // share of characters the alphabet covers, in [0.98, 1]
  // 0: train on every line; else on a uniform sample of this many lines (reservoir sampling
  // drawn from `seed`), which bounds the memory training takes on a large corpus.
  int64_t input_sentence_size = 0;
  // Lines longer than this many bytes are skipped and counted (SentencePiece's default).
  int64_t max_sentence_length = 4192;
  // The same inputs, options, seed and thread count give the same tokenizer.model, byte for
  // byte. Another thread count may not: unigram training sums its EM statistics per thread.
  uint64_t seed = 1;
  int threads = 0;       // 0: metalm's thread count (get_num_threads())
  bool verbose = false;  // let SentencePiece's own log through to stderr
  // Called once the corpus is read, before the (long) training, e.g. to print a progress line.
  std::function<void(const CorpusStats&)> on_corpus_read;
};

struct TrainStats {
  CorpusStats corpus;
  double train_seconds = 0;
};

// How from_sentencepiece() places the special tokens. kAppend: the piece with the special's
// string if the model has one, else the next id after every piece (in kSpecialTokens order).
struct ImportOptions {
  static constexpr int64_t kAppend = -2;
  int64_t id_offset = 0;
  std::array<int64_t, 9> special_ids = {kAppend, kAppend, kAppend, kAppend, kAppend,
                                        kAppend, kAppend, kAppend, kAppend};
  // The fairseq / XLM-R dictionary: <s> 0, <pad> 1, </s> 2, <unk> 3, SentencePiece ids + 1,
  // then <mask> (and the other specials) after the last piece: BEiT-3's <mask> is 64001.
  static ImportOptions fairseq();
};

class Tokenizer {
 public:
  // Reads a tokenizer directory (tokenizer.model + tokenizer.json) and checks the two agree.
  // IoError / FormatError / ValueError naming the file and the field.
  static Tokenizer load(const std::string& dir);

  // Trains a SentencePiece model on opts.inputs with the special tokens at 0..8, and writes
  // the directory out_dir (each file to a temporary name, then renamed; nothing is written
  // unless training succeeded). Bad input (a missing file, no text, invalid UTF-8, a
  // vocabulary the corpus cannot fill) is an error naming it; SentencePiece's log stays
  // silent unless opts.verbose.
  static TrainStats train(const TrainOptions& opts, const std::string& out_dir);

  // Writes out_dir from an existing SentencePiece model (its bytes copied unchanged) and the
  // ids `opts` gives, checked as load() checks them; returns the loaded tokenizer.
  static Tokenizer from_sentencepiece(const std::string& model_path, const std::string& out_dir,
                                      const ImportOptions& opts);

  // A tokenizer from SentencePiece model bytes held in memory and the ids of `spec`. Its
  // vocab_size and vocab_hash are checked against the model when vocab_hash is set (as
  // tokenizer.json has it), else filled in. `source` names the model in messages.
  static Tokenizer from_model_bytes(std::string model_bytes, TokenizerSpec spec,
                                    const std::string& source);

  // Text -> ids; adds no special token (the caller adds <s> / </s> by id). ValueError if the
  // text is not valid UTF-8.
  std::vector<int32_t> encode(std::string_view text) const;
  // Ids -> text. Control tokens (<s> <pad> </s>) decode to nothing, as in SentencePiece;
  // ValueError for an id outside [0, vocab_size).
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t vocab_size() const;
  // The piece of an id ("▁the", "<mask>"); ValueError when out of range.
  const std::string& piece(int32_t id) const;
  // The id of a piece or special-token string, if it is one.
  std::optional<int32_t> id_of(std::string_view piece) const;

  // A stable 64-bit FNV-1a hash of what maps text to ids: the SentencePiece pieces (string,
  // score, type, in order), its normalization rules, the id offset and the special ids. Not
  // the training settings, so the same vocabulary trained with another thread count hashes
  // the same. Shard headers record it to check a corpus was tokenized with this tokenizer.
  uint64_t vocab_hash() const;
  const TokenizerSpec& spec() const;
  // The SentencePiece model, byte for byte as tokenizer.model holds it.
  const std::string& model_bytes() const;
  // Writes tokenizer.model and tokenizer.json into dir (a model directory: the tokenizer its
  // weights read), each atomically. A dir that already holds this tokenizer is left as it is;
  // one holding another tokenizer is a ValueError (its ids would change meaning).
  void save(const std::string& dir) const;

  int32_t bos_id() const { return static_cast<int32_t>(spec().bos_id); }
  int32_t pad_id() const { return static_cast<int32_t>(spec().pad_id); }
  int32_t eos_id() const { return static_cast<int32_t>(spec().eos_id); }
  int32_t unk_id() const { return static_cast<int32_t>(spec().unk_id); }

  struct State;  // the SentencePiece processor and the id tables (tokenizer.cpp)

 private:
  explicit Tokenizer(std::shared_ptr<const State> s) : s_(std::move(s)) {}
  // Immutable once built: copies share it, and encode/decode may run on many threads.
  std::shared_ptr<const State> s_;
};

// "4f0c1d7e9a3b2c55": a hash as tokenizer.json writes it.
std::string format_vocab_hash(uint64_t hash);

}  // namespace metalm::data
