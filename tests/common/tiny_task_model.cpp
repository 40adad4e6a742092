#include "common/tiny_task_model.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "metalm/core/random.h"
#include "metalm/models/config.h"
#include "metalm/models/factory.h"

namespace metalm::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path& tokenizer_dir() {
  static fs::path dir;
  return dir;
}

json decoder_fields(int64_t V) {
  return {{"decoder_embed_dim", 32}, {"decoder_attention_heads", 4}, {"decoder_ffn_embed_dim", 64},
          {"decoder_layers", 2},     {"vocab_size", V},             {"max_target_positions", 256}};
}

std::unique_ptr<models::Model> build(const json& c, uint64_t seed) {
  auto m = models::build_model(models::model_config_from_json(c), {seed, true});
  m->eval();
  return m;
}

}  // namespace

const data::Tokenizer& tiny_tokenizer() {
  static const data::Tokenizer tok = [] {
    fs::path dir = fs::temp_directory_path() / ("metalm_tiny_tok_" + std::to_string(::getpid()));
    tokenizer_dir() = dir;
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::atexit([] { fs::remove_all(tokenizer_dir()); });
    const std::vector<std::string> words = {"the", "film", "was", "great", "awful", "review",
                                            "answer", "good", "bad", "movie", "plot", "acting"};
    Generator g(5);
    std::ofstream f(dir / "corpus.txt");
    for (int i = 0; i < 400; ++i) {
      for (int w = 0; w < 8; ++w) f << (w ? " " : "") << words[g.randint(0, 12)];
      f << (i % 3 ? " sentiment: positive\n" : " sentiment: negative\n");
    }
    f.close();
    data::TrainOptions o;
    o.inputs = {(dir / "corpus.txt").string()};
    o.vocab_size = 40;  // what SentencePiece finds in this small corpus
    o.threads = 1;
    data::Tokenizer::train(o, (dir / "tok").string());
    return data::Tokenizer::load((dir / "tok").string());
  }();
  return tok;
}

std::unique_ptr<models::Model> tiny_metalm(uint64_t seed) {
  const int64_t V = tiny_tokenizer().vocab_size();
  const json c = {{"model_type", "metalm"},
                  {"decoder", decoder_fields(V)},
                  {"encoders",
                   {{{"name", "text"}, {"span", "text"},
                     {"config",
                      {{"encoder_embed_dim", 24}, {"encoder_attention_heads", 4},
                       {"encoder_ffn_embed_dim", 48}, {"encoder_layers", 2}, {"vocab_size", V},
                       {"max_source_positions", 40}}},
                     {"connector", {{"kind", "complex"}}}}}}};
  return build(c, seed);
}

std::unique_ptr<models::Model> tiny_gpt(uint64_t seed) {
  json c = decoder_fields(tiny_tokenizer().vocab_size());
  c["model_type"] = "decoder";
  return build(c, seed);
}

}  // namespace metalm::test
