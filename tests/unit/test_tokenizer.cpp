// data::Tokenizer on a small corpus the test writes itself: training (unigram and BPE), the
// fixed special ids, literal special tokens, round trips, determinism, the vocabulary hash,
// fairseq / XLM-R id offsets on a model laid out as XLM-R's, and every bad input.
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/test_util.h"
#include "metalm/core/error.h"
#include "metalm/core/random.h"
#include "metalm/data/tokenizer.h"

using namespace metalm;
using metalm::data::Tokenizer;
using metalm::test::throws_with;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kWords = {
    "the",      "quick", "brown",   "fox",    "jumps",   "over",    "lazy",      "dog",
    "and",      "then",  "runs",    "away",   "into",    "forest",  "where",     "many",
    "trees",    "grow",  "tall",    "under",  "bright",  "sun",     "river",     "stone",
    "bridge",   "night", "morning", "café",   "naïve",   "résumé",  "über",      "straße",
    "français", "東京",  "大阪",    "日本語", "written", "reading", "tokenizer", "language",
    "model",    "token", "piece",   "words",  "text"};

const std::vector<std::string> kSyllables = {"ka",  "to", "ri", "men", "sa", "lo",  "vin", "de",
                                             "tra", "po", "ul", "ne",  "ga", "shi", "ber", "mo"};

// n lines of 3..14 words with a fixed seed: half from kWords, half made of 1..3 syllables, so
// that the vocabulary has a few hundred pieces to find.
std::string corpus_text(int n, uint64_t seed) {
  Generator g(seed);
  auto pick = [&](const std::vector<std::string>& v) {
    return v[static_cast<size_t>(g.randint(0, static_cast<int64_t>(v.size())))];
  };
  std::string text;
  for (int i = 0; i < n; ++i) {
    const int64_t len = g.randint(3, 15);
    for (int64_t w = 0; w < len; ++w) {
      if (w) text += ' ';
      if (g.randint(0, 2) == 0) {
        text += pick(kWords);
      } else {
        for (int64_t k = g.randint(1, 4); k > 0; --k) text += pick(kSyllables);
      }
    }
    text += '\n';
  }
  return text;
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
}

std::string read_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class TokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("metalm_tok_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    write_file(dir_ / "corpus.txt", corpus_text(2000, 7));
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  data::TrainOptions options(int64_t vocab = 120) const {
    data::TrainOptions o;
    o.inputs = {path("corpus.txt")};
    o.vocab_size = vocab;
    o.threads = 2;
    return o;
  }
  Tokenizer train(const std::string& name, const data::TrainOptions& o) const {
    Tokenizer::train(o, path(name));
    return Tokenizer::load(path(name));
  }
  // A failed training leaves no directory behind.
  void expect_train_fails(const data::TrainOptions& o, const std::vector<std::string>& parts) {
    const std::string out = path("failed");
    EXPECT_TRUE(throws_with<Error>([&] { Tokenizer::train(o, out); }, parts));
    EXPECT_FALSE(fs::exists(out));
  }
  fs::path dir_;
};

TEST_F(TokenizerTest, SpecialTokensAtFixedIds) {
  const Tokenizer t = train("tok", options());
  EXPECT_EQ(t.vocab_size(), 120);
  for (int32_t id = 0; id < 9; ++id) {
    EXPECT_EQ(t.piece(id), data::kSpecialTokens[static_cast<size_t>(id)]);
    EXPECT_EQ(t.id_of(data::kSpecialTokens[static_cast<size_t>(id)]), id);
  }
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_EQ(t.pad_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.unk_id(), 3);
  const data::TokenizerSpec& s = t.spec();
  EXPECT_EQ(s.id_offset, 0);
  EXPECT_EQ(s.mask_id, 4);
  EXPECT_EQ(s.doc_end_id, 5);
  EXPECT_EQ(s.image_id, 6);
  EXPECT_EQ(s.image_end_id, 7);
  EXPECT_EQ(s.line_end_id, 8);
  EXPECT_EQ(s.vocab_hash, data::format_vocab_hash(t.vocab_hash()));
  EXPECT_FALSE(t.id_of("certainly not a piece").has_value());
}

TEST_F(TokenizerTest, RoundTripOnNormalText) {
  for (const auto type : {data::TokenizerModelType::unigram, data::TokenizerModelType::bpe}) {
    data::TrainOptions o = options(200);
    o.model_type = type;
    const Tokenizer t = train(type == data::TokenizerModelType::bpe ? "bpe" : "unigram", o);
    for (const std::string text :
         {"the quick brown fox jumps over the lazy dog", "café naïve résumé über straße",
          "東京 and 大阪 are in 日本語 text", "tokenizer"}) {
      const std::vector<int32_t> ids = t.encode(text);
      EXPECT_FALSE(ids.empty());
      for (const int32_t id : ids) EXPECT_GE(id, 9) << text;  // no special from plain text
      EXPECT_EQ(t.decode(ids), text);
    }
    EXPECT_TRUE(t.encode("").empty());
    EXPECT_EQ(t.decode({}), "");
  }
}

TEST_F(TokenizerTest, LiteralSpecialTokensAreOneId) {
  const Tokenizer t = train("tok", options());
  const std::vector<int32_t> ids = t.encode("the dog</line>the fox<image></image></doc><mask>");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 8), 1);
  for (const int32_t id : {4, 5, 6, 7}) EXPECT_EQ(std::count(ids.begin(), ids.end(), id), 1);
  for (const int32_t id : ids)
    EXPECT_TRUE(id == 8 || t.piece(id).find("</l") == std::string::npos) << t.piece(id);
  EXPECT_EQ(t.decode(ids), "the dog</line>the fox<image></image></doc><mask>");
  // <s> <pad> </s> are control tokens: text cannot forge them, and they decode to nothing.
  for (const std::string forged : {"<s>", "<pad>", "</s>"}) {
    for (const int32_t id : t.encode(forged)) EXPECT_GT(id, 2) << forged;
  }
  std::vector<int32_t> framed = {0};
  for (const int32_t id : t.encode("the dog")) framed.push_back(id);
  framed.insert(framed.end(), {2, 1, 1});
  EXPECT_EQ(t.decode(framed), "the dog");
}

TEST_F(TokenizerTest, SameSeedSameTokenizer) {
  data::TrainOptions o = options();
  o.input_sentence_size = 500;  // a sample: the seed decides which lines
  const Tokenizer a = train("a", o);
  const Tokenizer b = train("b", o);
  EXPECT_EQ(read_file(dir_ / "a" / "tokenizer.model"), read_file(dir_ / "b" / "tokenizer.model"));
  EXPECT_EQ(read_file(dir_ / "a" / "tokenizer.json"), read_file(dir_ / "b" / "tokenizer.json"));
  o.seed = 2;
  const Tokenizer c = train("c", o);
  EXPECT_NE(a.vocab_hash(), c.vocab_hash());
}

TEST_F(TokenizerTest, HashFollowsTheVocabulary) {
  const Tokenizer a = train("a", options(120));
  const Tokenizer b = train("b", options(121));
  data::TrainOptions bpe = options(120);
  bpe.model_type = data::TokenizerModelType::bpe;
  const Tokenizer c = train("c", bpe);
  EXPECT_NE(a.vocab_hash(), b.vocab_hash());
  EXPECT_NE(a.vocab_hash(), c.vocab_hash());
  // The training settings are not the vocabulary: BPE on another thread count makes the same
  // pieces, and a model file that differs only in the recorded thread count hashes the same.
  // (Unigram's parallel EM sums in another order there, and may pick other pieces.)
  bpe.threads = 1;
  const Tokenizer d = train("d", bpe);
  EXPECT_NE(c.model_bytes(), d.model_bytes());
  EXPECT_EQ(c.vocab_hash(), d.vocab_hash());
  // Imported with the default options, every special finds its piece: the same ids, the
  // same hash. The same pieces at other ids: another hash.
  const Tokenizer e = Tokenizer::from_sentencepiece(path("a/tokenizer.model"), path("e"), {});
  EXPECT_EQ(e.vocab_hash(), a.vocab_hash());
  data::TokenizerSpec swapped = a.spec();
  std::swap(swapped.image_id, swapped.image_end_id);
  swapped.vocab_hash.clear();
  const Tokenizer f = Tokenizer::from_model_bytes(a.model_bytes(), swapped, "swapped");
  EXPECT_NE(f.vocab_hash(), a.vocab_hash());
}

TEST_F(TokenizerTest, LoadedEqualsTrained) {
  data::TrainOptions o = options();
  data::CorpusStats seen;
  o.on_corpus_read = [&](const data::CorpusStats& c) { seen = c; };
  const data::TrainStats s = Tokenizer::train(o, path("tok"));
  EXPECT_EQ(seen.lines, 2000);
  EXPECT_EQ(seen.sentences, 2000);
  EXPECT_EQ(s.corpus.characters, seen.characters);
  EXPECT_GT(seen.characters, 20000);
  const Tokenizer t = Tokenizer::load(path("tok"));
  const Tokenizer again = Tokenizer::from_model_bytes(t.model_bytes(), t.spec(), "copy");
  EXPECT_EQ(t.vocab_hash(), again.vocab_hash());
  EXPECT_EQ(t.encode("the lazy dog"), again.encode("the lazy dog"));
  // No temporary file is left next to the two.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_ / "tok")) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"tokenizer.json", "tokenizer.model"}));
}

TEST_F(TokenizerTest, SamplesAndSkipsAreCounted) {
  write_file(dir_ / "mixed.txt",
             "the dog\n\n   \n" + std::string(5000, 'a') + "\nthe fox\r\n" + corpus_text(300, 1));
  data::TrainOptions o = options();
  o.inputs = {path("mixed.txt"), path("corpus.txt")};
  o.input_sentence_size = 1000;
  const data::TrainStats s = Tokenizer::train(o, path("tok"));
  EXPECT_EQ(s.corpus.files, 2);
  EXPECT_EQ(s.corpus.lines, 2305);
  EXPECT_EQ(s.corpus.skipped_empty, 2);
  EXPECT_EQ(s.corpus.skipped_long, 1);
  EXPECT_EQ(s.corpus.sentences, 1000);
}

// JSONL inputs are read as the corpus reads them: each record's text split into lines. The
// same lines as records or as a text file train the same model, byte for byte; a text line
// longer than max_sentence_length is skipped and counted; a bad record names its line.
TEST_F(TokenizerTest, JsonlRecordsTrainLikeTheSameLinesInATextFile) {
  std::istringstream lines(read_file(dir_ / "corpus.txt"));
  std::string jsonl, line, text;
  int64_t n = 0;
  while (std::getline(lines, line)) {
    text += (text.empty() ? "" : "\n") + line;
    if (++n % 3 == 0) {
      jsonl += nlohmann::json{{"id", n}, {"text", text}}.dump() + "\n";
      text.clear();
    }
  }
  if (!text.empty()) jsonl += nlohmann::json{{"text", text}}.dump() + "\n";
  write_file(dir_ / "corpus.jsonl", jsonl);
  data::TrainOptions o = options();
  const data::TrainStats from_text = Tokenizer::train(o, path("text"));
  o.inputs = {path("corpus.jsonl")};
  const data::TrainStats from_jsonl = Tokenizer::train(o, path("jsonl"));
  EXPECT_EQ(from_jsonl.corpus.sentences, from_text.corpus.sentences);
  EXPECT_EQ(read_file(dir_ / "jsonl" / "tokenizer.model"),
            read_file(dir_ / "text" / "tokenizer.model"));

  write_file(dir_ / "long.jsonl",
             nlohmann::json{{"text", "short line\n" + std::string(300, 'a')}}.dump() + "\n");
  o.inputs = {path("long.jsonl"), path("corpus.txt")};
  o.max_sentence_length = 200;
  const data::TrainStats s = Tokenizer::train(o, path("long"));
  EXPECT_EQ(s.corpus.skipped_long, 1);
  EXPECT_EQ(s.corpus.lines, from_text.corpus.lines + 2);

  write_file(dir_ / "bad.jsonl", "{\"text\": \"fine\"}\n{\"txt\": 1}\n");
  o.inputs = {path("bad.jsonl")};
  expect_train_fails(o, {"bad.jsonl", "line 2", "text"});
}

// SentencePiece's default layout (<unk> 0, <s> 1, </s> 2, no <pad>), which is XLM-R's and
// BEiT-3's: their fairseq dictionary is <s> 0, <pad> 1, </s> 2, <unk> 3, then piece + 1.
TEST_F(TokenizerTest, FairseqOffsetOnAnXlmrStyleModel) {
  const std::unordered_map<std::string, std::string> args = {{"input", path("corpus.txt")},
                                                             {"model_prefix", path("xlmr")},
                                                             {"vocab_size", "100"},
                                                             {"minloglevel", "3"},
                                                             {"num_threads", "2"}};
  const auto trained = sentencepiece::SentencePieceTrainer::Train(args);
  ASSERT_TRUE(trained.ok()) << trained.ToString();
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(path("xlmr.model")).ok());
  ASSERT_EQ(sp.unk_id(), 0);
  ASSERT_EQ(sp.bos_id(), 1);
  ASSERT_EQ(sp.eos_id(), 2);

  const Tokenizer t = Tokenizer::from_sentencepiece(path("xlmr.model"), path("tok"),
                                                    data::ImportOptions::fairseq());
  const int n = sp.GetPieceSize();
  const data::TokenizerSpec& s = t.spec();
  EXPECT_EQ(s.id_offset, 1);
  EXPECT_EQ(std::vector<int64_t>({s.bos_id, s.pad_id, s.eos_id, s.unk_id, s.mask_id, s.doc_end_id,
                                  s.image_id, s.image_end_id, s.line_end_id}),
            std::vector<int64_t>({0, 1, 2, 3, n + 1, n + 2, n + 3, n + 4, n + 5}));
  EXPECT_EQ(t.vocab_size(), n + 6);  // BEiT-3: 64000 pieces, <mask> 64001
  EXPECT_EQ(t.piece(0), "<s>");
  EXPECT_EQ(t.piece(1), "<pad>");
  EXPECT_EQ(t.piece(3), "<unk>");
  EXPECT_EQ(t.piece(4), sp.IdToPiece(3));
  EXPECT_EQ(t.piece(n + 1), "<mask>");
  EXPECT_EQ(t.id_of(sp.IdToPiece(10)), 11);
  for (const std::string text : {"the quick brown fox", "東京 café", "€ is not in the corpus"}) {
    std::vector<int> want;
    ASSERT_TRUE(sp.Encode(text, &want).ok());
    for (int& id : want) id = id == 0 ? 3 : id + 1;  // HF XLMRobertaTokenizer's mapping
    const std::vector<int32_t> got = t.encode(text);
    EXPECT_EQ(std::vector<int>(got.begin(), got.end()), want) << text;
  }
  // The directory loads to the same tokenizer; <mask> of its own decodes to its string, and
  // the space after it stays.
  const Tokenizer loaded = Tokenizer::load(path("tok"));
  EXPECT_EQ(loaded.vocab_hash(), t.vocab_hash());
  std::vector<int32_t> ids = loaded.encode("the dog");
  ids.push_back(static_cast<int32_t>(s.mask_id));
  for (const int32_t id : loaded.encode(" runs")) ids.push_back(id);
  EXPECT_EQ(loaded.decode(ids), "the dog<mask> runs");
  EXPECT_EQ(loaded.decode({0, 4, 2}), loaded.decode({4}));  // <s> </s> decode to nothing

  // Without the fairseq layout every special is appended or finds its piece: <unk> 0, <s> 1,
  // </s> 2, then <pad> n and the rest.
  const Tokenizer plain = Tokenizer::from_sentencepiece(path("xlmr.model"), path("plain"), {});
  EXPECT_EQ(plain.unk_id(), 0);
  EXPECT_EQ(plain.bos_id(), 1);
  EXPECT_EQ(plain.eos_id(), 2);
  EXPECT_EQ(plain.pad_id(), n);
  EXPECT_EQ(plain.spec().line_end_id, n + 5);
  // An offset that leaves id 0 to nothing is refused, naming the gap.
  data::ImportOptions gap;
  gap.id_offset = 1;
  EXPECT_TRUE(throws_with<ValueError>(
      [&] { Tokenizer::from_sentencepiece(path("xlmr.model"), path("gap"), gap); }, "gaps"));
  EXPECT_FALSE(fs::exists(path("gap")));
}

TEST_F(TokenizerTest, BadTrainingInputIsOneClearError) {
  data::TrainOptions o = options();
  o.inputs = {path("corpus.txt"), path("missing.txt")};
  expect_train_fails(o, {"missing.txt", "cannot open"});

  write_file(dir_ / "empty.txt", "");
  o.inputs = {path("empty.txt")};
  expect_train_fails(o, {"no text to train on", "0 lines"});

  write_file(dir_ / "blank.txt", "\n  \n\t\n");
  o.inputs = {path("blank.txt")};
  expect_train_fails(o, {"no text to train on", "3 of them empty"});

  write_file(dir_ / "latin1.txt", "the dog\ncaf\xe9 au lait\n");
  o.inputs = {path("latin1.txt")};
  expect_train_fails(o, {"latin1.txt:2", "not UTF-8", "byte 3"});

  write_file(dir_ / "utf16.txt", std::string("t\0h\0e\0\n", 7));
  o.inputs = {path("utf16.txt")};
  expect_train_fails(o, {"utf16.txt:1", "NUL"});

  write_file(dir_ / "long.txt", std::string(10 << 20, 'a'));  // one 10 MB line
  o.inputs = {path("long.txt")};
  expect_train_fails(o, {"no text to train on", "1 longer than max_sentence_length"});

  o.inputs = {path("corpus.txt")};
  o.vocab_size = 50000;  // more pieces than this corpus has
  expect_train_fails(o, {"Vocabulary size too high (50000)"});
  o.model_type = data::TokenizerModelType::bpe;
  expect_train_fails(o, {"Vocabulary size too high (50000)"});
  o.model_type = data::TokenizerModelType::unigram;
  o.vocab_size = 20;  // fewer than the characters
  expect_train_fails(o, {"smaller than required_chars", "(character_coverage)"});
  o.vocab_size = 9;
  expect_train_fails(o, {"vocab_size must be more than the 9 special tokens"});

  o = options();
  o.character_coverage = 0.5;
  expect_train_fails(o, {"character_coverage must be in [0.98, 1]"});
  o = options();
  o.max_sentence_length = 0;
  expect_train_fails(o, {"max_sentence_length"});
  o = options();
  o.inputs = {};
  expect_train_fails(o, {"no input files"});
  o.inputs = {dir_.string()};
  expect_train_fails(o, {"is a directory"});
}

TEST_F(TokenizerTest, BadTokenizerDirectoryIsOneClearError) {
  train("tok", options());
  const fs::path good = dir_ / "tok";
  const std::string json = read_file(good / "tokenizer.json");
  const std::string model = read_file(good / "tokenizer.model");
  auto broken = [&](const std::string& name, const std::string& j, const std::string& m) {
    fs::create_directories(dir_ / name);
    write_file(dir_ / name / "tokenizer.json", j);
    write_file(dir_ / name / "tokenizer.model", m);
    return path(name);
  };
  auto replace = [](std::string s, const std::string& from, const std::string& to) {
    const size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return at == std::string::npos ? s : s.replace(at, from.size(), to);
  };
  auto fails = [&](const std::string& dir, const std::vector<std::string>& parts) {
    EXPECT_TRUE(throws_with<Error>([&] { Tokenizer::load(dir); }, parts)) << dir;
  };
  fails(path("nowhere"), {"not a directory"});
  fs::create_directories(dir_ / "empty");
  fails(path("empty"), {"no tokenizer.json"});
  fails(broken("no_model", json, ""), {"tokenizer.model", "not a SentencePiece model"});
  fs::remove(dir_ / "no_model" / "tokenizer.model");
  fails(path("no_model"), {"tokenizer.model", "cannot open"});
  fails(broken("garbage", json, "hello, not a protobuf"), {"not a SentencePiece model"});
  // Cut anywhere: either the protobuf no longer parses, or pieces are missing.
  for (const size_t n : {size_t{1}, size_t{100}, size_t{1000}, model.size() / 2, model.size() - 1})
    fails(broken("cut" + std::to_string(n), json, model.substr(0, n)),
          {"[tokenizer] ", "tokenizer."});
  // One piece's string changed in place ("▁xyz" -> "▁xyQ"): still a valid model, the same
  // number of ids, but not the vocabulary tokenizer.json was written for.
  const Tokenizer t = Tokenizer::load(good.string());
  int32_t victim = 9;
  while (t.piece(victim).size() < 5) ++victim;  // "▁" is 3 bytes: at least two letters more
  const std::string piece = t.piece(victim);
  const size_t at = model.find(piece);
  ASSERT_NE(at, std::string::npos);
  std::string edited = model;
  edited[at + piece.size() - 1] = 'Q';
  fails(broken("edited", json, edited), {"vocab_hash", "different tokenizers, or one is damaged"});
  fails(broken("typo", replace(json, "\"mask_id\"", "\"mask_idd\""), model),
        {"tokenizer.json", "mask_idd: unknown field (did you mean mask_id?)"});
  fails(broken("type", replace(json, "\"pad_id\": 1", "\"pad_id\": \"1\""), model),
        {"pad_id: expected an integer"});
  fails(broken("missing", replace(json, "\"pad_id\": 1,", ""), model), {"pad_id: missing"});
  fails(broken("collide", replace(json, "\"pad_id\": 1", "\"pad_id\": 7"), model),
        {"id 7 is both <pad> (pad_id) and </image> (image_end_id)"});
  fails(broken("negative", replace(json, "\"bos_id\": 0", "\"bos_id\": -1"), model),
        {"bos_id: must be in [0,"});
  fails(broken("far", replace(json, "\"line_end_id\": 8", "\"line_end_id\": 1000000000"), model),
        {"vocab_size: 120 recorded"});
  fails(broken("hash", replace(json, "\"vocab_hash\": \"", "\"vocab_hash\": \"x"), model),
        {"vocab_hash: expected 16 lowercase hex digits"});
  fails(broken("not_json", "{\"id_offset\": 0,", model), {"not valid JSON"});
  fails(broken("dup", replace(json, "{", "{\"bos_id\": 0,"), model), {"duplicate key"});
}

TEST_F(TokenizerTest, BadCallsAreErrors) {
  const Tokenizer t = train("tok", options());
  EXPECT_TRUE(throws_with<ValueError>([&] { t.encode("caf\xe9"); }, "not valid UTF-8 (at byte 3)"));
  EXPECT_TRUE(throws_with<ValueError>([&] { t.decode({5, 120}); }, "id 120 out of range [0, 120)"));
  EXPECT_TRUE(throws_with<ValueError>([&] { t.decode({-1}); }, "id -1 out of range"));
  EXPECT_TRUE(throws_with<ValueError>([&] { t.piece(120); }, "out of range"));
  // A model directory's tokenizer is not replaced under its weights.
  write_file(dir_ / "tok" / "model.safetensors", "weights");
  EXPECT_TRUE(throws_with<IoError>([&] { Tokenizer::train(options(121), path("tok")); },
                                   "holds model weights"));
  EXPECT_EQ(Tokenizer::load(path("tok")).vocab_size(), 120);
  // A file where the directory should be.
  write_file(dir_ / "file", "x");
  EXPECT_TRUE(
      throws_with<IoError>([&] { Tokenizer::train(options(), path("file")); }, "not a directory"));
}

}  // namespace
