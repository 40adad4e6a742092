// `metalm tokenizer train | encode | import`: SentencePiece tokenizers with the project's
// special tokens (include/metalm/data/tokenizer.h).
#include <array>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "apps/common.h"
#include "metalm/core/threads.h"
#include "metalm/data/tokenizer.h"

namespace metalm::apps {
namespace {

struct TokenizerOptions {
  CommonOptions common;
  CLI::App *train = nullptr, *encode = nullptr, *import = nullptr;
  data::TrainOptions opts;
  std::string model_type = "unigram";
  std::string out, model, sentencepiece;
  std::vector<std::string> texts;
  bool pieces = false, fairseq = false;
  int64_t id_offset = 0;
};

const char* type_name(data::TokenizerModelType t) {
  return t == data::TokenizerModelType::bpe ? "bpe" : "unigram";
}

int run_train(TokenizerOptions& o) {
  data::TrainOptions& t = o.opts;
  t.model_type =
      o.model_type == "bpe" ? data::TokenizerModelType::bpe : data::TokenizerModelType::unigram;
  t.seed = o.common.seed;
  t.threads = get_num_threads();
  t.on_corpus_read = [&](const data::CorpusStats& c) {
    std::printf("read %lld file(s) in %.1f s: %lld lines, %lld sentences kept (%.2fM characters)",
                static_cast<long long>(c.files), c.seconds, static_cast<long long>(c.lines),
                static_cast<long long>(c.sentences), static_cast<double>(c.characters) / 1e6);
    if (c.skipped_empty || c.skipped_long)
      std::printf("; skipped %lld empty, %lld longer than %lld bytes",
                  static_cast<long long>(c.skipped_empty), static_cast<long long>(c.skipped_long),
                  static_cast<long long>(t.max_sentence_length));
    std::printf("\ntraining a %s tokenizer of %lld ids on %d threads...\n", type_name(t.model_type),
                static_cast<long long>(t.vocab_size), t.threads);
    std::fflush(stdout);  // training takes a while: show this line now
  };
  const data::TrainStats s = data::Tokenizer::train(t, o.out);
  const data::Tokenizer tok = data::Tokenizer::load(o.out);
  std::printf("wrote %s: %s, %d ids, vocab_hash %s; trained in %.1f s (%.1f s in all)\n",
              o.out.c_str(), type_name(t.model_type), tok.vocab_size(),
              tok.spec().vocab_hash.c_str(), s.train_seconds, s.train_seconds + s.corpus.seconds);
  return 0;
}

int run_encode(const TokenizerOptions& o) {
  const data::Tokenizer tok = data::Tokenizer::load(o.model);
  for (const std::string& text : o.texts) {
    const std::vector<int32_t> ids = tok.encode(text);
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) line += ' ';
      line += o.pieces ? tok.piece(ids[i]) : std::to_string(ids[i]);
    }
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

int run_import(const TokenizerOptions& o) {
  data::ImportOptions opts = o.fairseq ? data::ImportOptions::fairseq() : data::ImportOptions{};
  if (!o.fairseq) opts.id_offset = o.id_offset;
  const data::Tokenizer tok = data::Tokenizer::from_sentencepiece(o.sentencepiece, o.out, opts);
  const data::TokenizerSpec& s = tok.spec();
  std::printf("wrote %s: %d ids (SentencePiece ids + %lld), vocab_hash %s\n", o.out.c_str(),
              tok.vocab_size(), static_cast<long long>(s.id_offset), s.vocab_hash.c_str());
  const std::array<int64_t, 9> ids = s.special_ids();
  for (size_t k = 0; k < ids.size(); ++k)
    std::printf("  %-8s %lld\n", data::kSpecialTokens[k], static_cast<long long>(ids[k]));
  return 0;
}

}  // namespace

Command add_tokenizer_command(CLI::App& app) {
  auto o = std::make_shared<TokenizerOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tokenizer",
      "Train, import and run SentencePiece tokenizers with the special tokens <s> <pad> </s>\n"
      "<unk> <mask> </doc> <image> </image> </line> (ids 0..8 when trained here).\n"
      "Example: metalm tokenizer train --input corpus.txt --vocab-size 8000 --out runs/tok");
  cmd->require_subcommand(1);

  CLI::App* train = o->train = cmd->add_subcommand(
      "train",
      "Train a tokenizer on text files (one sentence per line, UTF-8) and write its directory\n"
      "(tokenizer.model + tokenizer.json). Prints what it read and how long training took.\n"
      "Example: metalm tokenizer train --input a.txt b.txt --vocab-size 8000 --out runs/tok");
  add_common(train, o->common);
  train
      ->add_option("--input", o->opts.inputs,
                   "text files, one sentence per line; *.jsonl: JSONL records {\"text\": ...}")
      ->required()
      ->expected(1, -1);
  train->add_option("--vocab-size", o->opts.vocab_size, "ids in all, the 9 special tokens included")
      ->required();
  train->add_option("--out", o->out, "tokenizer directory to write")->required();
  train->add_option("--model-type", o->model_type, "unigram or bpe")
      ->capture_default_str()
      ->check(CLI::IsMember({"unigram", "bpe"}));
  train
      ->add_option("--character-coverage", o->opts.character_coverage,
                   "share of the characters the alphabet must cover, in [0.98, 1] (rarer ones "
                   "become <unk>)")
      ->capture_default_str();
  train
      ->add_option("--input-sentence-size", o->opts.input_sentence_size,
                   "train on a uniform sample of this many lines (drawn from --seed); 0: all")
      ->capture_default_str();
  train
      ->add_option("--max-sentence-length", o->opts.max_sentence_length,
                   "lines longer than this many bytes are skipped (and counted)")
      ->capture_default_str();
  train->add_flag("--verbose", o->opts.verbose, "show SentencePiece's own log on stderr");

  CLI::App* encode = o->encode = cmd->add_subcommand(
      "encode",
      "Print the ids of texts, one line of space-separated ids per --text (no <s> or </s> is\n"
      "added).\n"
      "Example: metalm tokenizer encode --model runs/tok --text \"Hello world</line>\"");
  add_common(encode, o->common);
  encode->add_option("--model", o->model, "tokenizer or model directory")->required();
  encode->add_option("--text", o->texts, "text to encode (repeat for several)")->required();
  encode->add_flag("--pieces", o->pieces, "print the pieces instead of their ids");

  CLI::App* import = o->import = cmd->add_subcommand(
      "import",
      "Write a tokenizer directory from an existing SentencePiece model. --fairseq gives the\n"
      "XLM-R / BEiT-3 ids: <s> 0, <pad> 1, </s> 2, <unk> 3, SentencePiece ids + 1, then <mask>\n"
      "and the other special tokens after the last piece.\n"
      "Example: metalm tokenizer import --sentencepiece beit3.spm --fairseq --out runs/beit3-tok");
  add_common(import, o->common);
  import->add_option("--sentencepiece", o->sentencepiece, "SentencePiece model file")->required();
  import->add_option("--out", o->out, "tokenizer directory to write")->required();
  CLI::Option* fairseq =
      import->add_flag("--fairseq", o->fairseq, "the fairseq / XLM-R id layout (above)");
  import
      ->add_option("--id-offset", o->id_offset,
                   "without --fairseq: our id = SentencePiece id + this; special tokens the "
                   "model has keep their piece, the others follow the last piece")
      ->capture_default_str()
      ->excludes(fairseq);

  return {cmd, &o->common, [o] {
            if (o->train->parsed()) return run_train(*o);
            if (o->encode->parsed()) return run_encode(*o);
            return run_import(*o);
          }};
}

}  // namespace metalm::apps
