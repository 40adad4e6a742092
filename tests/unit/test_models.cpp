// The models layer: the factory keyed by model_type, composite configs, model directories that
// load straight into the parameters (memory bound, F16, the tied duplicate, strict errors), and
// compute settings that travel with each model.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/test_util.h"
#include "common/tiny_stacks.h"
#include "metalm/autograd/autograd.h"
#include "metalm/core/allocator.h"
#include "metalm/io/safetensors.h"
#include "metalm/models/factory.h"
#include "metalm/models/model_dir.h"
#include "metalm/models/stack.h"

using namespace metalm;
using metalm::test::all_close;
using metalm::test::random_tokens;
using metalm::test::throws_with;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

json decoder_fields(int64_t d = 32, int64_t vocab = 60) {
  return {{"decoder_embed_dim", d}, {"decoder_attention_heads", 4},
          {"decoder_ffn_embed_dim", 2 * d}, {"decoder_layers", 2},
          {"vocab_size", vocab}, {"max_target_positions", 32}};
}
json encoder_fields(int64_t d = 24, int64_t vocab = 60) {
  return {{"encoder_embed_dim", d}, {"encoder_attention_heads", 4},
          {"encoder_ffn_embed_dim", 2 * d}, {"encoder_layers", 1}, {"vocab_size", vocab}};
}
json metalm_json() {
  return {{"model_type", "metalm"},
          {"decoder", decoder_fields()},
          {"encoders",
           {{{"name", "text"}, {"span", "text"}, {"config", encoder_fields()},
             {"connector", {{"kind", "complex"}}}}}},
          {"heads", {{{"name", "cls"}, {"input", "text"}, {"num_classes", 3}}}}};
}

json merged(json base, const json& patch) {
  base.merge_patch(patch);
  return base;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no exception";
}

class ModelDirs : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("metalm_models_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

Tensor logits_of(models::Model& m, const Tensor& ids) {
  NoGradGuard ng;
  models::StackInputs in;
  in.tokens = ids;
  return m.forward(in).logits;
}

// A safetensors file written byte by byte, for dtypes metalm does not write (F16).
void write_raw_safetensors(const std::string& path, const json& header, const std::string& data) {
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::ofstream f(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>((h.size() >> (8 * i)) & 0xff));
  f << h << data;
}

}  // namespace

// ------------------------------------------------------------------ factory and configs

TEST(Factory, BuildsEveryStackByModelType) {
  auto dec = models::build_model(models::model_config_from_json(
      merged(decoder_fields(), {{"model_type", "decoder"}})));
  EXPECT_NE(dynamic_cast<models::Decoder*>(dec.get()), nullptr);
  EXPECT_EQ(dec->model_config().model_type, "decoder");
  auto enc = models::build_model(models::model_config_from_json(
      merged(encoder_fields(), {{"model_type", "encoder"}})));
  EXPECT_NE(dynamic_cast<models::Encoder*>(enc.get()), nullptr);
  // The same seed builds the same weights; init = false draws nothing but keeps the shapes.
  const models::ModelConfig cfg = dec->model_config();
  auto again = models::build_model(cfg, {1, true});
  EXPECT_TRUE(all_close(again->state_dict().at("layers.0.ffn.fc1.weight"),
                        dec->state_dict().at("layers.0.ffn.fc1.weight"), 0, 0));
  auto other = models::build_model(cfg, {2, true});
  EXPECT_FALSE(all_close(other->state_dict().at("layers.0.ffn.fc1.weight"),
                         dec->state_dict().at("layers.0.ffn.fc1.weight"), 0, 0));
  auto empty = models::build_model(cfg, {1, false});
  EXPECT_EQ(empty->parameter_count(), dec->parameter_count());
}

TEST(Factory, RefusesATypeItCannotBuild) {
  models::ModelConfig cfg = models::model_config_from_json(metalm_json());
  // Heads are parsed and validated but not built yet.
  EXPECT_TRUE(throws_with<ValueError>([&] { models::build_model(cfg); },
                                      "[MetaLM] task heads are not built yet"));
  cfg.model_type = "gpt";
  EXPECT_TRUE(throws_with<ValueError>([&] { models::build_model(cfg); }, "model_type"));
}

TEST(CompositeConfig, ParsesValidatesAndRoundTrips) {
  const models::ModelConfig cfg = models::model_config_from_json(metalm_json());
  EXPECT_EQ(cfg.model_type, "metalm");
  EXPECT_FALSE(cfg.is_single_stack());
  EXPECT_EQ(cfg.decoder.embed_dim, 32);
  ASSERT_EQ(cfg.encoders.size(), 1u);
  EXPECT_EQ(cfg.encoders[0].name, "text");
  EXPECT_EQ(cfg.encoders[0].span, models::SpanKind::text);
  EXPECT_EQ(cfg.encoders[0].config.embed_dim, 24);
  EXPECT_EQ(cfg.encoders[0].connector.kind, "complex");
  ASSERT_EQ(cfg.heads.size(), 1u);
  EXPECT_EQ(cfg.heads[0].num_classes, 3);
  EXPECT_EQ(cfg.heads[0].pooling, "cls");
  // Written back, it reads the same, every field explicit.
  const json once = models::to_json(cfg);
  EXPECT_EQ(models::to_json(models::model_config_from_json(once)), once);
  EXPECT_EQ(once["encoders"][0]["connector"]["latent_query_num"], 64);
  EXPECT_EQ(once["decoder"]["model_type"], "decoder");
}

TEST(CompositeConfig, ErrorsNameThePart) {
  auto err = [](const std::function<void(json&)>& patch) {
    json j = metalm_json();
    patch(j);
    return error_of([&] { (void)models::model_config_from_json(j); });
  };
  EXPECT_EQ(err([](json& j) { j["encoders"][0]["config"]["encoder_layers"] = 0; }),
            "[config] encoders[0].config.encoder_layers: must be > 0, got 0");
  EXPECT_EQ(err([](json& j) { j["encoders"][0]["connector"]["knd"] = "simple"; }),
            "[config] encoders[0].connector.knd: unknown field (did you mean kind?)");
  EXPECT_EQ(err([](json& j) { j["encoders"][0]["connector"]["kind"] = "linear"; }),
            "[config] encoders[0].connector.kind: expected \"none\", \"simple\", \"complex\" or "
            "\"xconnector\", got \"linear\"");
  EXPECT_EQ(err([](json& j) { j["encoders"][0]["connector"]["kind"] = "none"; }),
            "[config] encoders[0].connector.kind: \"none\" docks the encoder's vectors as they "
            "are, but its width 24 differs from the decoder's 32");
  EXPECT_EQ(err([](json& j) { j["encoders"][0]["connector"]["kind"] = "xconnector"; }),
            "[config] encoders[0].connector.kind: a text span docks one vector per token: not "
            "\"xconnector\"");
  EXPECT_EQ(err([](json& j) { j["encoders"][0]["config"]["vocab_size"] = 61; }),
            "[config] encoders[0].config.vocab_size: a text-span encoder reads the LM's tokens: "
            "vocab_size must equal the decoder's 60, got 61");
  EXPECT_EQ(err([](json& j) { j["encoders"][0]["name"] = "Text"; }),
            "[config] encoders[0].name: must be 1-64 characters of a-z, 0-9 and _, got \"Text\"");
  EXPECT_EQ(err([](json& j) { j["encoders"].push_back(j["encoders"][0]); }),
            "[config] encoders[1].name: \"text\" is given twice");
  EXPECT_EQ(err([](json& j) { j["encoders"][0].erase("config"); }),
            "[config] encoders[0].config: missing (required)");
  EXPECT_EQ(err([](json& j) { j["encoders"] = json::array(); }),
            "[config] encoders: a metalm model docks at least one encoder");
  EXPECT_EQ(err([](json& j) { j["encoders"][0]["span"] = "audio"; }),
            "[config] encoders[0].span: expected \"text\", \"image\" or \"image_text\", got "
            "\"audio\"");
  EXPECT_EQ(err([](json& j) { j["heads"][0]["input"] = "vision"; }),
            "[config] heads[0].input: expected \"decoder\" or a docked encoder's name, got "
            "\"vision\"");
  EXPECT_EQ(err([](json& j) { j["heads"][0]["num_classes"] = 0; }),
            "[config] heads[0].num_classes: must be > 0, got 0");
  EXPECT_EQ(err([](json& j) { j["decoder"]["dropout"] = 2; }),
            "[config] decoder.dropout: must be in [0, 1), got 2");
  EXPECT_EQ(err([](json& j) { j.erase("decoder"); }),
            "[config] decoder: missing (a composite model needs its decoder)");
  EXPECT_EQ(err([](json& j) { j["decoder_layers"] = 2; }),
            "[config] decoder_layers: unknown field");
}

// ------------------------------------------------------------------ model directories

TEST_F(ModelDirs, LoadsStraightIntoTheParametersWithinTheMemoryBound) {
  const models::ModelConfig cfg = models::model_config_from_json(
      merged(decoder_fields(64, 600), {{"model_type", "decoder"}}));
  auto m = models::build_model(cfg, {3, true});
  models::save_model_dir(path("m"), *m);
  const Tensor ids = random_tokens(2, 7, 60, 1);
  const Tensor want = logits_of(*m, ids);
  const size_t weights = static_cast<size_t>(m->state_bytes());
  m.reset();

  memory_reset_peak();
  const size_t base = memory_stats().current_bytes;
  auto loaded = models::load_model(path("m"));
  const size_t peak = memory_stats().peak_bytes - base;
  EXPECT_LE(peak, weights + weights / 10) << "peak " << peak << " for " << weights << " bytes";
  EXPECT_GE(peak, weights);  // the counter does see the parameters
  EXPECT_FALSE(loaded->is_training());
  EXPECT_TRUE(all_close(logits_of(*loaded, ids), want, 0, 0));
}

TEST_F(ModelDirs, ReadsF16AndTheTiedDuplicateAndRefusesAMismatch) {
  const models::ModelConfig cfg = models::model_config_from_json(
      merged(decoder_fields(8, 5), {{"model_type", "decoder"},
                                    {"decoder_attention_heads", 2},
                                    {"decoder_layers", 1},
                                    {"share_decoder_input_output_embed", true},
                                    {"padding_idx", -1}}));
  auto m = models::build_model(cfg, {4, true});
  models::save_model_dir(path("m"), *m);
  // Rewrite the weights as F16 (values exactly representable), adding TorchScale's duplicate.
  json header = json::object();
  std::string data;
  TensorMap state = m->state_dict();
  state["output_projection.weight"] = state.at("embed_tokens.weight");
  std::map<std::string, std::vector<float>> values;
  for (const auto& [name, t] : state) {
    std::vector<float> v = t.to_vector<float>();
    const size_t begin = data.size();
    for (float& x : v) {
      x = static_cast<float>(static_cast<int>(x * 64)) / 64;  // 7-bit values: exact in F16
      uint32_t u;
      std::memcpy(&u, &x, 4);
      // f32 -> f16 for values with |x| in [2^-6, 2) or 0, truncating (exact here).
      const uint32_t sign = (u >> 16) & 0x8000u;
      const int e = static_cast<int>((u >> 23) & 0xff) - 127 + 15;
      const uint16_t h = x == 0 ? static_cast<uint16_t>(sign)
                                : static_cast<uint16_t>(sign | (e << 10) | ((u >> 13) & 0x3ffu));
      data.append(reinterpret_cast<const char*>(&h), 2);
    }
    values[name] = v;
    header[name] = {{"dtype", "F16"}, {"shape", t.shape()}, {"data_offsets", {begin, data.size()}}};
  }
  const std::string st = path("m/model.safetensors");
  write_raw_safetensors(st, header, data);
  auto loaded = models::load_model(path("m"));
  for (const auto& [name, t] : loaded->state_dict())
    EXPECT_EQ(t.to_vector<float>(), values.at(name)) << name;

  // The duplicate must equal the embedding.
  values["output_projection.weight"][3] += 0.5f;
  std::string bad = data;
  const uint64_t off = header["output_projection.weight"]["data_offsets"][0].get<uint64_t>();
  bad[off + 6] ^= 0x40;
  write_raw_safetensors(st, header, bad);
  EXPECT_TRUE(throws_with<ValueError>([&] { models::load_model(path("m")); },
                                      "output_projection.weight differs from embed_tokens.weight"));
}

TEST_F(ModelDirs, StrictErrorsListEveryBadName) {
  auto m = models::build_model(models::model_config_from_json(
      merged(decoder_fields(), {{"model_type", "decoder"}})));
  models::save_model_dir(path("m"), *m);
  TensorMap state = m->state_dict();
  ASSERT_EQ(state.erase("layers.1.ffn.fc2.bias"), 1u);
  state["layers.0.ffn.fc1.weight"] = Tensor::zeros({3, 3});
  state["extra.weight"] = Tensor::zeros({2});
  io::save_safetensors(path("m/model.safetensors"), state);
  const std::string msg = error_of([&] { models::load_model(path("m")); });
  EXPECT_NE(msg.find("[model_dir] " + path("m/model.safetensors")), std::string::npos) << msg;
  EXPECT_NE(msg.find("mis-shaped: layers.0.ffn.fc1.weight (checkpoint [3, 3], model [64, 32])"),
            std::string::npos) << msg;
  EXPECT_NE(msg.find("missing: layers.1.ffn.fc2.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected: extra.weight"), std::string::npos) << msg;
  // The header-only check says the same without reading any data.
  EXPECT_EQ(error_of([&] { models::check_weights(*m, path("m/model.safetensors")); }), msg);
  EXPECT_TRUE(throws_with<IoError>([&] { models::load_model(path("none")); }, "not a directory"));
}

// A model built for loading derives the same dropout generators as the one that was saved:
// the same training-mode forward after loading.
TEST_F(ModelDirs, ALoadedModelDrawsTheSameDropoutAsTheSavedOne) {
  const models::ModelConfig cfg = models::model_config_from_json(
      merged(decoder_fields(), {{"model_type", "decoder"}, {"dropout", 0.3}}));
  auto m = models::build_model(cfg, {9, true});
  models::save_model_dir(path("m"), *m);
  auto loaded = models::load_model(path("m"), 9);
  loaded->train();
  const Tensor ids = random_tokens(2, 6, 60, 2);
  EXPECT_TRUE(all_close(logits_of(*loaded, ids), logits_of(*m, ids), 0, 0));
  auto other_seed = models::load_model(path("m"), 10);
  other_seed->train();
  EXPECT_FALSE(all_close(logits_of(*other_seed, ids), logits_of(*m, ids), 1e-3, 1e-3));
}

// ------------------------------------------------------------------ compute settings

// Two models at different precisions in one process, on two threads at once: each gives what
// it gives alone, and the caller's mode is untouched.
TEST(ComputeMode, TravelsWithEachModel) {
  const models::ModelConfig cfg = models::model_config_from_json(
      merged(decoder_fields(64, 60), {{"model_type", "decoder"}, {"max_target_positions", 128}}));
  auto a = models::build_model(cfg, {5, true});
  auto b = models::build_model(cfg, {5, true});
  a->eval();
  b->eval();
  b->compute = ops::ComputeMode{ops::MatmulPrecision::bf16, false};
  // > 64 queries: attention takes bf16 products too.
  const Tensor ids = random_tokens(2, 80, 60, 3);
  const Tensor alone_a = logits_of(*a, ids), alone_b = logits_of(*b, ids);
  EXPECT_EQ(ops::matmul_precision(), ops::MatmulPrecision::f32);
  // bf16 moves the result on CPUs with AVX512-BF16 (elsewhere it is f32 as well).
#ifdef __AVX512BF16__
  EXPECT_FALSE(all_close(alone_a, alone_b, 0, 0));
#endif
  Tensor got_a, got_b;
  std::thread ta([&] {
    for (int i = 0; i < 5; ++i) got_a = logits_of(*a, ids);
  });
  std::thread tb([&] {
    for (int i = 0; i < 5; ++i) got_b = logits_of(*b, ids);
  });
  ta.join();
  tb.join();
  EXPECT_TRUE(all_close(got_a, alone_a, 0, 0));
  EXPECT_TRUE(all_close(got_b, alone_b, 0, 0));
  // A model without its own setting follows the caller's guard; one with a setting keeps it.
  {
    ops::MatmulPrecisionGuard g(ops::MatmulPrecision::bf16);
    EXPECT_TRUE(all_close(logits_of(*a, ids), alone_b, 0, 0));
    a->compute = ops::ComputeMode{};
    EXPECT_TRUE(all_close(logits_of(*a, ids), alone_a, 0, 0));
    EXPECT_EQ(ops::matmul_precision(), ops::MatmulPrecision::bf16);
  }
  EXPECT_EQ(ops::matmul_precision(), ops::MatmulPrecision::f32);
}
