// Architecture config: TorchScale defaults and field names, JSON and file round trips, the §1.2
// post-processing (including the DeepNorm decoder quirk both ways), every validation error with
// its exact message, the §1.4 init scalings against hand-computed values, and configs/*.json.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "metalm/core/error.h"
#include "metalm/models/config.h"
#include "metalm/nn/config.h"
#include "metalm/nn/init.h"

using namespace metalm;
using namespace metalm::nn;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// The message of the E thrown by f; a failure (and "") if f throws something else or nothing.
template <typename E = ValueError>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no exception";
  return "";
}

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// A valid small decoder / encoder to patch in the error tests.
json decoder_json() {
  return {{"decoder_embed_dim", 64}, {"decoder_attention_heads", 4}, {"vocab_size", 100}};
}
json encoder_json() {
  return {{"encoder_embed_dim", 64}, {"encoder_attention_heads", 4}};
}
json patched(json base, const json& patch) {
  base.merge_patch(patch);  // a null in patch would delete: tests that need null set it directly
  return base;
}

// A fresh directory per test, removed afterwards.
class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("metalm_cfg_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
    return path(name);
  }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename());
    return out;
  }
  fs::path dir_;
};

// ---------------------------------------------------------------- defaults and field names

TEST(Config, EncoderDefaultsAreTorchScales) {
  const EncoderConfig c;
  EXPECT_EQ(c.embed_dim, 768);
  EXPECT_EQ(c.attention_heads, 12);
  EXPECT_EQ(c.ffn_embed_dim, 3072);
  EXPECT_EQ(c.layers, 12);
  EXPECT_TRUE(c.normalize_before);
  EXPECT_TRUE(c.normalize_output);
  EXPECT_EQ(c.activation_fn, ops::Activation::gelu);
  EXPECT_EQ(c.dropout, 0.0);
  EXPECT_EQ(c.attention_dropout, 0.0);
  EXPECT_EQ(c.activation_dropout, 0.0);
  EXPECT_EQ(c.drop_path_rate, 0.0);
  EXPECT_TRUE(c.no_scale_embedding);
  EXPECT_FALSE(c.layernorm_embedding);
  EXPECT_EQ(c.moe_freq, 0);
  EXPECT_FALSE(c.moe_top1_expert);
  EXPECT_EQ(c.moe_expert_count, 0);
  EXPECT_TRUE(c.moe_gating_use_fp32);
  EXPECT_EQ(c.moe_eval_capacity_token_fraction, 0.25);
  EXPECT_EQ(c.moe_second_expert_policy, "random");
  EXPECT_FALSE(c.moe_normalize_gate_prob_before_dropping);
  EXPECT_FALSE(c.use_xmoe);
  EXPECT_EQ(c.rel_pos_buckets, 0);
  EXPECT_EQ(c.max_rel_pos, 0);
  EXPECT_FALSE(c.deepnorm);
  EXPECT_TRUE(c.subln);
  EXPECT_FALSE(c.bert_init);
  EXPECT_FALSE(c.multiway);
  EXPECT_FALSE(c.share_input_output_embed);
  EXPECT_EQ(c.max_positions, 1024);
  EXPECT_FALSE(c.no_output_layer);
  EXPECT_EQ(c.layernorm_eps, 1e-5);
  EXPECT_EQ(c.vocab_size, -1);
  EXPECT_EQ(c.img_size, 224);
  EXPECT_EQ(c.patch_size, 16);
  EXPECT_EQ(c.in_chans, 3);
  EXPECT_FALSE(c.checkpoint_activations);
  EXPECT_FALSE(c.fsdp);
  EXPECT_EQ(c.ddp_rank, 0);
  EXPECT_FALSE(c.xpos_rel_pos);
  EXPECT_EQ(c.xpos_scale_base, 512);
  EXPECT_FALSE(c.flash_attention);
  // Extensions default to TorchScale's behaviour.
  EXPECT_EQ(c.positions, PositionKind::learned);
  EXPECT_EQ(c.padding_idx, 1);
  EXPECT_EQ(c.multiway_vl_layers, 0);
  EXPECT_FALSE(c.multiway_shared_attention);
  EXPECT_EQ(c.layer_scale_init, 0.0);
  // TorchScale's defaults are a valid encoder (BEiT-3's text-less vision case included).
  EXPECT_NO_THROW(validate(c));
  EXPECT_EQ(to_json(encoder_config_from_json(json::object())), to_json(c));
}

TEST(Config, DecoderDefaultsAreTorchScales) {
  const DecoderConfig c;
  EXPECT_EQ(c.embed_dim, 768);
  EXPECT_EQ(c.attention_heads, 12);
  EXPECT_EQ(c.ffn_embed_dim, 3072);
  EXPECT_EQ(c.layers, 12);
  EXPECT_TRUE(c.normalize_before);
  EXPECT_EQ(c.activation_fn, ops::Activation::gelu);
  EXPECT_TRUE(c.no_scale_embedding);
  EXPECT_FALSE(c.layernorm_embedding);
  EXPECT_EQ(c.moe_eval_capacity_token_fraction, 0.25);
  EXPECT_EQ(c.moe_second_expert_policy, "random");
  EXPECT_FALSE(c.deepnorm);
  EXPECT_TRUE(c.subln);
  EXPECT_FALSE(c.multiway);
  EXPECT_FALSE(c.share_input_output_embed);
  EXPECT_EQ(c.max_positions, 1024);
  EXPECT_FALSE(c.no_output_layer);
  EXPECT_EQ(c.layernorm_eps, 1e-5);
  EXPECT_EQ(c.vocab_size, -1);
  EXPECT_EQ(c.xpos_scale_base, 512);
  EXPECT_EQ(c.positions, PositionKind::learned);
  EXPECT_EQ(c.padding_idx, 1);
  EXPECT_FALSE(c.torchscale_deepnorm_decoder_quirk);
  // TorchScale's vocab_size = -1 would build an LM without an output layer: rejected here.
  EXPECT_EQ(error_of([&] { validate(c); }),
            "[config] vocab_size: must be > 0 for the output layer (set no_output_layer for a "
            "decoder without one), got -1");
  DecoderConfig with_vocab = c;
  with_vocab.vocab_size = 100;
  EXPECT_EQ(to_json(decoder_config_from_json({{"vocab_size", 100}})), to_json(with_vocab));
}

// Every TorchScale field name is written (and so accepted), plus model_type and the extensions.
TEST(Config, JsonCarriesExactlyTorchScaleFieldsPlusExtensions) {
  const std::set<std::string> shared = {
      "activation_fn", "dropout", "drop_path_rate", "attention_dropout", "activation_dropout",
      "no_scale_embedding", "layernorm_embedding", "moe_freq", "moe_top1_expert",
      "moe_expert_count", "moe_gating_use_fp32", "moe_eval_capacity_token_fraction",
      "moe_second_expert_policy", "moe_normalize_gate_prob_before_dropping", "use_xmoe",
      "rel_pos_buckets", "max_rel_pos", "deepnorm", "subln", "bert_init", "multiway",
      "no_output_layer", "layernorm_eps", "vocab_size", "checkpoint_activations", "fsdp",
      "ddp_rank", "xpos_rel_pos", "xpos_scale_base", "flash_attention", "segment_length",
      "dilated_ratio", "seq_parallel",
      // metalm extensions
      "model_type", "positions", "padding_idx"};
  std::set<std::string> enc = shared, dec = shared;
  enc.insert({"encoder_embed_dim", "encoder_attention_heads", "encoder_ffn_embed_dim",
              "encoder_layers", "encoder_normalize_before", "normalize_output",
              "share_encoder_input_output_embed", "max_source_positions", "img_size", "patch_size",
              "in_chans", "multiway_vl_layers", "multiway_shared_attention", "layer_scale_init"});
  dec.insert({"decoder_embed_dim", "decoder_attention_heads", "decoder_ffn_embed_dim",
              "decoder_layers", "decoder_normalize_before", "share_decoder_input_output_embed",
              "max_target_positions", "torchscale_deepnorm_decoder_quirk"});
  auto keys = [](const json& j) {
    std::set<std::string> k;
    for (const auto& item : j.items()) k.insert(item.key());
    return k;
  };
  EXPECT_EQ(keys(to_json(EncoderConfig{})), enc);
  EXPECT_EQ(keys(to_json(DecoderConfig{})), dec);
  const json e = to_json(EncoderConfig{});
  EXPECT_EQ(e["model_type"], "encoder");
  EXPECT_TRUE(e["segment_length"].is_null());
  EXPECT_TRUE(e["dilated_ratio"].is_null());
  EXPECT_EQ(e["seq_parallel"], false);  // TorchScale's default is False, not None
  EXPECT_EQ(e["positions"], "learned");
  EXPECT_EQ(to_json(DecoderConfig{})["model_type"], "decoder");
}

// ---------------------------------------------------------------- round trips

TEST(Config, JsonRoundTripKeepsEveryField) {
  EncoderConfig e;
  e.embed_dim = 96;
  e.attention_heads = 6;
  e.ffn_embed_dim = 200;
  e.layers = 3;
  e.normalize_output = false;
  e.activation_fn = ops::Activation::quick_gelu;
  e.dropout = 0.125;
  e.attention_dropout = 0.2;
  e.activation_dropout = 0.3;
  e.drop_path_rate = 0.05;
  e.no_scale_embedding = false;
  e.layernorm_embedding = true;
  e.rel_pos_buckets = 32;
  e.max_rel_pos = 128;
  e.subln = false;
  e.normalize_before = false;
  e.bert_init = true;
  e.multiway = true;
  e.share_input_output_embed = true;
  e.max_positions = 77;
  e.layernorm_eps = 1e-6;
  e.vocab_size = 500;
  e.img_size = 48;
  e.patch_size = 8;
  e.in_chans = 1;
  e.checkpoint_activations = true;
  e.fsdp = true;
  e.ddp_rank = 3;
  e.xpos_rel_pos = true;
  e.xpos_scale_base = 256;
  e.flash_attention = true;
  e.moe_top1_expert = true;
  e.moe_gating_use_fp32 = false;
  e.moe_eval_capacity_token_fraction = 0.5;
  e.moe_second_expert_policy = "sampling";
  e.positions = PositionKind::sinusoidal;
  e.padding_idx = 0;
  e.multiway_vl_layers = 2;
  e.multiway_shared_attention = true;
  e.layer_scale_init = 0.1;
  const json j = to_json(e);
  EXPECT_EQ(j["positions"], "sinusoidal");
  EXPECT_EQ(j["layernorm_eps"], 1e-6);
  const EncoderConfig back = encoder_config_from_json(j);
  EXPECT_EQ(to_json(back), j);
  EXPECT_EQ(back.activation_fn, ops::Activation::quick_gelu);
  EXPECT_EQ(back.positions, PositionKind::sinusoidal);
  EXPECT_EQ(back.multiway_vl_layers, 2);
  EXPECT_EQ(back.layer_scale_init, 0.1);
  EXPECT_FALSE(back.normalize_before);
  // A TorchScale config holds no model_type; the text parses the same through a string.
  json no_type = j;
  no_type.erase("model_type");
  EXPECT_EQ(to_json(encoder_config_from_json(json::parse(no_type.dump()))), j);

  DecoderConfig d;
  d.embed_dim = 32;
  d.attention_heads = 2;
  d.layers = 5;
  d.deepnorm = true;
  d.torchscale_deepnorm_decoder_quirk = true;
  d.positions = PositionKind::none;
  d.vocab_size = 7;
  d.padding_idx = -1;
  d.no_output_layer = true;
  postprocess(d);
  const json jd = to_json(d);
  EXPECT_EQ(jd["positions"], "none");
  EXPECT_EQ(to_json(decoder_config_from_json(jd)), jd);
  EXPECT_EQ(models::to_json(models::model_config_from_json(jd)), jd);
}

TEST_F(ConfigFiles, SaveAndLoadRoundTripAtomically) {
  DecoderConfig d;
  d.embed_dim = 64;
  d.attention_heads = 4;
  d.vocab_size = 50;
  d.xpos_rel_pos = true;
  models::save_model_config(path("config.json"), models::ModelConfig::single(d));
  EXPECT_EQ(files(), std::vector<std::string>{"config.json"});  // no temporary left behind
  const models::ModelConfig a = models::load_model_config_file(path("config.json"));
  EXPECT_EQ(a.model_type, "decoder");
  EXPECT_EQ(a.decoder.embed_dim, 64);
  EXPECT_EQ(to_json(a.decoder), to_json(d));

  // Overwrite with an encoder.
  EncoderConfig e;
  e.multiway = true;
  models::save_model_config(path("config.json"), models::ModelConfig::single(e));
  EXPECT_EQ(files(), std::vector<std::string>{"config.json"});
  const models::ModelConfig b = models::load_model_config_file(path("config.json"));
  EXPECT_EQ(b.model_type, "encoder");
  EXPECT_TRUE(b.encoder.multiway);
  EXPECT_EQ(models::to_json(b), to_json(e));

  // A bad config is refused before anything is written, and the old file survives.
  EncoderConfig bad;
  bad.dropout = 1.5;
  EXPECT_EQ(error_of([&] {
              models::save_model_config(path("config.json"), models::ModelConfig::single(bad));
            }),
            "[config] " + path("config.json") + ": dropout: must be in [0, 1), got 1.5");
  EXPECT_TRUE(models::load_model_config_file(path("config.json")).encoder.multiway);
  EXPECT_EQ(files(), std::vector<std::string>{"config.json"});
  // An unwritable target is an IoError naming it, with no temporary left.
  EXPECT_TRUE(contains(error_of<IoError>([&] {
                         models::save_model_config(path("no/such/dir.json"),
                                                   models::ModelConfig::single(e));
                       }),
                       "[config] " + path("no/such/dir.json") + ": cannot create"));
}

// ---------------------------------------------------------------- post-processing (§1.2)

TEST(Config, DeepnormWinsOverSubln) {
  // subln defaults to true; deepnorm runs first and turns it off.
  const EncoderConfig e = encoder_config_from_json({{"deepnorm", true}});
  EXPECT_TRUE(e.deepnorm);
  EXPECT_FALSE(e.subln);
  EXPECT_FALSE(e.normalize_before);
  EXPECT_FALSE(e.has_final_layer_norm());
  // Even with subln and Pre-LN asked for explicitly.
  const EncoderConfig e2 = encoder_config_from_json(
      {{"deepnorm", true}, {"subln", true}, {"encoder_normalize_before", true}});
  EXPECT_TRUE(e2.deepnorm);
  EXPECT_FALSE(e2.subln);
  EXPECT_FALSE(e2.normalize_before);

  const DecoderConfig d = decoder_config_from_json(patched(decoder_json(), {{"deepnorm", true}}));
  EXPECT_TRUE(d.deepnorm);
  EXPECT_FALSE(d.subln);
  EXPECT_FALSE(d.normalize_before);  // the paper's Post-LN DeepNet decoder
  EXPECT_FALSE(d.has_final_layer_norm());
}

TEST(Config, SublnForcesPreLn) {
  const EncoderConfig e = encoder_config_from_json({{"encoder_normalize_before", false}});
  EXPECT_TRUE(e.subln);
  EXPECT_TRUE(e.normalize_before);
  const DecoderConfig d =
      decoder_config_from_json(patched(decoder_json(), {{"decoder_normalize_before", false}}));
  EXPECT_TRUE(d.normalize_before);
  // Without subln, Post-LN stays Post-LN.
  const DecoderConfig post = decoder_config_from_json(
      patched(decoder_json(), {{"decoder_normalize_before", false}, {"subln", false}}));
  EXPECT_FALSE(post.normalize_before);
  EXPECT_FALSE(post.subln);
  EXPECT_FALSE(post.deepnorm);
}

TEST(Config, DeepnormDecoderQuirkBothWays) {
  // Default (paper): deepnorm makes the decoder Post-LN.
  DecoderConfig paper;
  paper.vocab_size = 10;
  paper.deepnorm = true;
  postprocess(paper);
  EXPECT_FALSE(paper.normalize_before);
  EXPECT_FALSE(paper.subln);

  // Quirk (TorchScale): the rules write a field the decoder never reads, so it stays Pre-LN,
  // with the final layer_norm, yet keeps DeepNorm's α residual.
  const DecoderConfig ts = decoder_config_from_json(
      patched(decoder_json(), {{"deepnorm", true}, {"torchscale_deepnorm_decoder_quirk", true}}));
  EXPECT_TRUE(ts.deepnorm);
  EXPECT_FALSE(ts.subln);
  EXPECT_TRUE(ts.normalize_before);
  EXPECT_TRUE(ts.has_final_layer_norm());
  EXPECT_NEAR(ts.residual_alpha(), std::pow(24.0, 0.25), 1e-15);  // (2M)^¼, M = 12
  // TorchScale's tests pass decoder_normalize_before=False by hand to get Post-LN.
  const DecoderConfig ts_post =
      decoder_config_from_json(patched(decoder_json(), {{"deepnorm", true},
                                                        {"torchscale_deepnorm_decoder_quirk", true},
                                                        {"decoder_normalize_before", false}}));
  EXPECT_FALSE(ts_post.normalize_before);
  // The quirk also keeps subln from forcing Pre-LN, as in TorchScale.
  const DecoderConfig ts_subln =
      decoder_config_from_json(patched(decoder_json(), {{"torchscale_deepnorm_decoder_quirk", true},
                                                        {"decoder_normalize_before", false}}));
  EXPECT_TRUE(ts_subln.subln);
  EXPECT_FALSE(ts_subln.normalize_before);
}

TEST(Config, PostprocessIsIdempotentAndAppliesXmoeRule) {
  for (bool deepnorm : {false, true}) {
    for (bool subln : {false, true}) {
      for (bool before : {false, true}) {
        for (bool quirk : {false, true}) {
          DecoderConfig d;
          d.deepnorm = deepnorm;
          d.subln = subln;
          d.normalize_before = before;
          d.torchscale_deepnorm_decoder_quirk = quirk;
          postprocess(d);
          const json once = to_json(d);
          postprocess(d);
          EXPECT_EQ(to_json(d), once);
          EXPECT_FALSE(d.deepnorm && d.subln);
        }
        EncoderConfig e;
        e.deepnorm = deepnorm;
        e.subln = subln;
        e.normalize_before = before;
        postprocess(e);
        const json once = to_json(e);
        postprocess(e);
        EXPECT_EQ(to_json(e), once);
        // The resulting LN placement of each combination.
        EXPECT_EQ(e.normalize_before, deepnorm ? false : subln ? true : before);
      }
    }
  }
  EncoderConfig x;
  x.use_xmoe = true;
  x.moe_second_expert_policy = "all";
  postprocess(x);
  EXPECT_TRUE(x.moe_normalize_gate_prob_before_dropping);
  EXPECT_EQ(x.moe_second_expert_policy, "random");
}

// ---------------------------------------------------------------- validation

struct ErrorCase {
  json patch;
  std::string message;  // the whole message, after "[config] "
};

TEST(Config, DecoderValidationErrors) {
  const std::vector<ErrorCase> cases = {
      {{{"decoder_embed_dim", 0}}, "decoder_embed_dim: must be > 0, got 0"},
      {{{"decoder_embed_dim", 3000000000LL}},
       "decoder_embed_dim: must be at most 2147483647, got 3000000000"},
      {{{"decoder_attention_heads", -2}}, "decoder_attention_heads: must be > 0, got -2"},
      {{{"decoder_embed_dim", 100}, {"decoder_attention_heads", 3}},
       "decoder_embed_dim: 100 is not divisible by decoder_attention_heads (3)"},
      {{{"decoder_ffn_embed_dim", 0}}, "decoder_ffn_embed_dim: must be > 0, got 0"},
      {{{"decoder_layers", 0}}, "decoder_layers: must be > 0, got 0"},
      {{{"max_target_positions", -1}}, "max_target_positions: must be > 0, got -1"},
      {{{"dropout", 1.0}}, "dropout: must be in [0, 1), got 1"},
      {{{"attention_dropout", -0.1}}, "attention_dropout: must be in [0, 1), got -0.1"},
      {{{"activation_dropout", 2}}, "activation_dropout: must be in [0, 1), got 2"},
      {{{"drop_path_rate", 1.5}}, "drop_path_rate: must be in [0, 1), got 1.5"},
      {{{"activation_fn", "tanh"}},
       "activation_fn: expected \"relu\", \"gelu\", \"gelu_tanh\", \"gelu_fast\", \"swish\", "
       "\"silu\" or \"quick_gelu\", got \"tanh\""},
      {{{"layernorm_eps", 0}}, "layernorm_eps: must be > 0, got 0"},
      {{{"layernorm_eps", -1e-5}}, "layernorm_eps: must be > 0, got -1e-05"},
      {{{"rel_pos_buckets", 32}},
       "max_rel_pos: relative position bias needs both rel_pos_buckets and max_rel_pos > 0 "
       "(TorchScale would silently disable it), got rel_pos_buckets = 32, max_rel_pos = 0"},
      {{{"max_rel_pos", 128}},
       "rel_pos_buckets: relative position bias needs both rel_pos_buckets and max_rel_pos > 0 "
       "(TorchScale would silently disable it), got rel_pos_buckets = 0, max_rel_pos = 128"},
      {{{"rel_pos_buckets", -1}}, "rel_pos_buckets: must be >= 0, got -1"},
      {{{"max_rel_pos", -3}}, "max_rel_pos: must be >= 0, got -3"},
      {{{"rel_pos_buckets", 2}, {"max_rel_pos", 16}},
       "rel_pos_buckets: must be in [4, 2147483647] (half the buckets per direction, half of "
       "those exact), got 2"},
      {{{"rel_pos_buckets", 32}, {"max_rel_pos", 8}},
       "max_rel_pos: must exceed the exact range rel_pos_buckets / 4 = 8 (and be at most "
       "2147483647), got 8"},
      {{{"xpos_rel_pos", true}, {"decoder_embed_dim", 60}, {"decoder_attention_heads", 4}},
       "xpos_rel_pos: xPos rotates pairs of channels and needs an even head dim, got "
       "decoder_embed_dim / decoder_attention_heads = 15"},
      {{{"xpos_scale_base", 0}}, "xpos_scale_base: must be > 0, got 0"},
      {{{"positions", "sinusoidal"}, {"decoder_embed_dim", 2}, {"decoder_attention_heads", 1}},
       "positions: sinusoidal positions need decoder_embed_dim >= 4 (the frequencies divide by "
       "d/2 - 1), got 2"},
      {{{"vocab_size", 0}},
       "vocab_size: must be > 0 for the output layer (set no_output_layer for a decoder without "
       "one), got 0"},
      {{{"vocab_size", -5}, {"no_output_layer", true}},
       "vocab_size: must be > 0, or -1 for none, got -5"},
      {{{"vocab_size", 3000000000LL}}, "vocab_size: must be at most 2147483647, got 3000000000"},
      {{{"vocab_size", -1}, {"no_output_layer", true}, {"share_decoder_input_output_embed", true}},
       "share_decoder_input_output_embed: needs vocab_size > 0 (there is no token embedding to "
       "tie)"},
      {{{"padding_idx", 100}}, "padding_idx: must be < vocab_size (100), got 100"},
      {{{"padding_idx", -2}}, "padding_idx: must be >= 0, or -1 for none, got -2"},
      {{{"moe_freq", 2}},
       "moe_freq: mixture-of-experts layers are not supported yet (must be 0), got 2"},
      {{{"moe_freq", -1}}, "moe_freq: must be >= 0, got -1"},
      {{{"moe_expert_count", 8}},
       "moe_expert_count: mixture-of-experts layers are not supported yet (must be 0), got 8"},
      {{{"moe_expert_count", -8}}, "moe_expert_count: must be >= 0, got -8"},
      {{{"use_xmoe", true}}, "use_xmoe: X-MoE routing is not supported yet (must be false)"},
      {{{"moe_second_expert_policy", "best"}},
       "moe_second_expert_policy: expected \"sampling\", \"random\" or \"all\", got \"best\""},
      {{{"segment_length", "[2048, 4096]"}},
       "segment_length: LongNet dilated attention is not supported yet (must be null), got "
       "string \"[2048, 4096]\""},
      {{{"dilated_ratio", json::array({1, 2})}},
       "dilated_ratio: LongNet dilated attention is not supported yet (must be null), got "
       "array [1,2]"},
      {{{"seq_parallel", true}},
       "seq_parallel: LongNet sequence parallelism is not supported yet (must be false or "
       "null), got boolean true"},
      {{{"positions", "rope"}},
       "positions: expected \"learned\", \"sinusoidal\" or \"none\", got \"rope\""},
      {{{"model_type", "encoder"}}, "model_type: expected \"decoder\", got \"encoder\""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.patch.dump());
    EXPECT_EQ(error_of([&] { (void)decoder_config_from_json(patched(decoder_json(), c.patch)); }),
              "[config] " + c.message);
  }
}

TEST(Config, EncoderValidationErrors) {
  const std::vector<ErrorCase> cases = {
      {{{"encoder_embed_dim", 100}, {"encoder_attention_heads", 8}},
       "encoder_embed_dim: 100 is not divisible by encoder_attention_heads (8)"},
      {{{"encoder_layers", -1}}, "encoder_layers: must be > 0, got -1"},
      {{{"max_source_positions", 0}}, "max_source_positions: must be > 0, got 0"},
      {{{"vocab_size", 0}}, "vocab_size: must be > 0, or -1 for an encoder without text, got 0"},
      {{{"vocab_size", -2}}, "vocab_size: must be > 0, or -1 for an encoder without text, got -2"},
      {{{"share_encoder_input_output_embed", true}},
       "share_encoder_input_output_embed: needs vocab_size > 0 (there is no token embedding to "
       "tie)"},
      {{{"img_size", 225}}, "img_size: 225 is not divisible by patch_size (16)"},
      {{{"img_size", 0}}, "img_size: must be > 0, got 0"},
      {{{"patch_size", 0}}, "patch_size: must be > 0, got 0"},
      {{{"in_chans", 0}}, "in_chans: must be > 0, got 0"},
      {{{"multiway", true}, {"multiway_vl_layers", 13}},
       "multiway_vl_layers: must be in [0, encoder_layers = 12], got 13"},
      {{{"multiway", true}, {"multiway_vl_layers", -1}},
       "multiway_vl_layers: must be in [0, encoder_layers = 12], got -1"},
      {{{"multiway_vl_layers", 2}},
       "multiway_vl_layers: needs multiway = true (the VL expert is a third expert)"},
      {{{"multiway_shared_attention", true}}, "multiway_shared_attention: needs multiway = true"},
      {{{"layer_scale_init", -0.1}}, "layer_scale_init: must be >= 0 (0 = off), got -0.1"},
      {{{"xpos_rel_pos", true}, {"encoder_embed_dim", 12}, {"encoder_attention_heads", 4}},
       "xpos_rel_pos: xPos rotates pairs of channels and needs an even head dim, got "
       "encoder_embed_dim / encoder_attention_heads = 3"},
      {{{"dropout", 1}}, "dropout: must be in [0, 1), got 1"},
      {{{"model_type", "decoder"}}, "model_type: expected \"encoder\", got \"decoder\""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.patch.dump());
    EXPECT_EQ(error_of([&] { (void)encoder_config_from_json(patched(encoder_json(), c.patch)); }),
              "[config] " + c.message);
  }
  // Boundaries that are fine: one VL layer per layer, a vision-only encoder, eps tiny.
  EXPECT_NO_THROW((void)encoder_config_from_json(patched(
      encoder_json(), {{"multiway", true}, {"multiway_vl_layers", 12}, {"vocab_size", -1}})));
  EXPECT_NO_THROW((void)encoder_config_from_json(
      patched(encoder_json(), {{"layernorm_eps", 1e-12}, {"dropout", 0.999}})));
  EXPECT_NO_THROW((void)encoder_config_from_json(
      patched(encoder_json(), {{"rel_pos_buckets", 4}, {"max_rel_pos", 2}})));
}

TEST(Config, ValidateCatchesNanAndInfSetInCode) {
  EncoderConfig e;
  e.dropout = std::nan("");
  EXPECT_EQ(error_of([&] { validate(e); }), "[config] dropout: must be in [0, 1), got nan");
  e = EncoderConfig{};
  e.layernorm_eps = INFINITY;
  EXPECT_EQ(error_of([&] { validate(e); }), "[config] layernorm_eps: must be > 0, got inf");
  e = EncoderConfig{};
  e.layer_scale_init = std::nan("");
  EXPECT_TRUE(contains(error_of([&] { validate(e); }), "[config] layer_scale_init: must be >= 0"));
}

TEST(Config, ValidateWantsAPostprocessedConfig) {
  EncoderConfig e;
  e.deepnorm = true;  // subln is still true: layers would see both
  EXPECT_EQ(error_of([&] { validate(e); }),
            "[config] deepnorm: deepnorm and subln are both true; call postprocess() first "
            "(deepnorm wins, reference-spec 1.2)");
  postprocess(e);
  EXPECT_NO_THROW(validate(e));
  e = EncoderConfig{};
  e.normalize_before = false;  // subln forces Pre-LN
  EXPECT_EQ(error_of([&] { validate(e); }),
            "[config] encoder_normalize_before: is false but subln makes it true; call "
            "postprocess() first (reference-spec 1.2)");
  DecoderConfig d;
  d.vocab_size = 10;
  d.deepnorm = true;
  d.subln = false;
  EXPECT_EQ(error_of([&] { validate(d); }),
            "[config] decoder_normalize_before: is true but deepnorm makes it false; call "
            "postprocess() first (reference-spec 1.2)");
  d.torchscale_deepnorm_decoder_quirk = true;  // with the quirk, Pre-LN is what it should be
  EXPECT_NO_THROW(validate(d));
}

TEST(Config, WrongJsonTypes) {
  const std::vector<ErrorCase> cases = {
      {{{"decoder_layers", "12"}}, "decoder_layers: expected an integer, got string \"12\""},
      {{{"decoder_layers", 12.5}}, "decoder_layers: expected an integer, got number 12.5"},
      {{{"decoder_layers", 12.0}}, "decoder_layers: expected an integer, got number 12.0"},
      {{{"decoder_layers", true}}, "decoder_layers: expected an integer, got boolean true"},
      {{{"vocab_size", json::array({1})}}, "vocab_size: expected an integer, got array [1]"},
      {{{"vocab_size", json::array({1, 2, 3, 4, 5, 6, 7, 8, 9})}},
       "vocab_size: expected an integer, got array (9 elements)"},
      {{{"vocab_size", {{"a", {{"b", 1}}}}}},
       "vocab_size: expected an integer, got object (1 key)"},
      {{{"decoder_layers", 18446744073709551615ULL}},
       "decoder_layers: integer out of range, got 18446744073709551615"},
      {{{"subln", 1}}, "subln: expected true or false, got number 1"},
      {{{"deepnorm", "true"}}, "deepnorm: expected true or false, got string \"true\""},
      {{{"dropout", false}}, "dropout: expected a number, got boolean false"},
      {{{"dropout", "0.1"}}, "dropout: expected a number, got string \"0.1\""},
      {{{"activation_fn", 3}}, "activation_fn: expected a string, got number 3"},
      {{{"positions", json::object()}}, "positions: expected a string, got object {}"},
      {{{"model_type", 1}}, "model_type: expected a string, got number 1"},
      {{{"activation_fn", std::string(200, 'x')}},
       "activation_fn: expected \"relu\", \"gelu\", \"gelu_tanh\", \"gelu_fast\", \"swish\", "
       "\"silu\" or \"quick_gelu\", got \"" + std::string(60, 'x') + "\"..."},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.patch.dump());
    EXPECT_EQ(error_of([&] { (void)decoder_config_from_json(patched(decoder_json(), c.patch)); }),
              "[config] " + c.message);
  }
  // null is not "use the default" (TorchScale would keep None and fail later).
  json j = decoder_json();
  j["decoder_layers"] = nullptr;
  EXPECT_EQ(error_of([&] { (void)decoder_config_from_json(j); }),
            "[config] decoder_layers: expected an integer, got null");
  // Integers are fine for doubles.
  EXPECT_EQ(decoder_config_from_json(patched(decoder_json(), {{"layernorm_eps", 1}})).layernorm_eps,
            1.0);
  // Not an object at all.
  EXPECT_EQ(error_of([] {
              (void)decoder_config_from_json(json::array({1, 2}));
            }),
            "[config] expected a JSON object, got array [1,2]");
  EXPECT_EQ(error_of([] { (void)models::model_config_from_json(json("decoder")); }),
            "[config] expected a JSON object, got string \"decoder\"");
}

TEST(Config, LongNetFieldsAcceptOnlyTheirDefaults) {
  json j = decoder_json();
  j["segment_length"] = nullptr;
  j["dilated_ratio"] = "";  // TorchScale skips the empty string as well
  j["seq_parallel"] = nullptr;
  EXPECT_NO_THROW((void)decoder_config_from_json(j));
  j["seq_parallel"] = false;
  EXPECT_NO_THROW((void)decoder_config_from_json(j));
  // Accepted but without effect: flash_attention and the fairscale switches.
  EXPECT_TRUE(decoder_config_from_json(patched(decoder_json(), {{"flash_attention", true}}))
                  .flash_attention);
  EXPECT_NO_THROW((void)decoder_config_from_json(patched(
      decoder_json(), {{"checkpoint_activations", true}, {"fsdp", true}, {"ddp_rank", 5}})));
}

TEST(Config, UnknownFieldsAreListedWithSuggestions) {
  // A typo one edit away.
  EXPECT_EQ(error_of([] {
              (void)decoder_config_from_json(patched(decoder_json(), {{"decoder_embd_dim", 64}}));
            }),
            "[config] decoder_embd_dim: unknown field (did you mean decoder_embed_dim?)");
  // A transposition counts as one edit.
  EXPECT_EQ(error_of([] {
              (void)encoder_config_from_json({{"dropuot", 0.1}});
            }),
            "[config] dropuot: unknown field (did you mean dropout?)");
  // The other stack's field: say so, and point at ours.
  EXPECT_EQ(error_of([] {
              (void)encoder_config_from_json({{"decoder_layers", 2}});
            }),
            "[config] decoder_layers: a decoder field, not valid in an encoder config (did you "
            "mean encoder_layers?)");
  EXPECT_EQ(error_of([] {
              (void)decoder_config_from_json(patched(decoder_json(), {{"multiway_vl_layers", 2}}));
            }),
            "[config] multiway_vl_layers: an encoder field, not valid in a decoder config");
  EXPECT_EQ(error_of([] {
              (void)decoder_config_from_json(patched(decoder_json(), {{"normalize_output", true}}));
            }),
            "[config] normalize_output: an encoder field, not valid in a decoder config");
  // Nothing close: no suggestion. Several: all listed, in key order.
  EXPECT_EQ(error_of([] {
              (void)decoder_config_from_json(
                  patched(decoder_json(), {{"hidden_size", 64}, {"lr", 1}, {"vocab_sise", 5}}));
            }),
            "[config] hidden_size: unknown field; lr: unknown field; vocab_sise: unknown field "
            "(did you mean vocab_size?)");
  // Short names get a tighter edit budget: "x" is not a typo of anything.
  EXPECT_EQ(error_of([] {
              (void)encoder_config_from_json({{"x", 1}});
            }),
            "[config] x: unknown field");
  // Many: the first ten and a count. Unknown fields are reported before type errors.
  json many = {{"decoder_layers", "bad"}};
  for (int i = 0; i < 15; ++i) many["zzz_unknown_" + std::to_string(10 + i)] = i;
  const std::string msg = error_of([&] { (void)decoder_config_from_json(many); });
  EXPECT_TRUE(contains(msg, "[config] zzz_unknown_10: unknown field; zzz_unknown_11"));
  EXPECT_TRUE(contains(msg, "zzz_unknown_19: unknown field; and 5 more unknown fields"));
  EXPECT_FALSE(contains(msg, "zzz_unknown_20"));
  // A hostile key is clipped in the message.
  const std::string long_key(5000, 'k');
  EXPECT_EQ(error_of([&] {
              (void)encoder_config_from_json({{long_key, 1}});
            }),
            "[config] " + std::string(57, 'k') + "...: unknown field");
}

TEST(Config, ModelConfigNeedsModelType) {
  EXPECT_EQ(error_of([] {
              (void)models::model_config_from_json({{"decoder_layers", 2}});
            }),
            "[config] model_type: missing; expected \"encoder\", \"decoder\" or \"metalm\"");
  EXPECT_EQ(error_of([] {
              (void)models::model_config_from_json({{"model_type", "gpt"}});
            }),
            "[config] model_type: expected \"encoder\", \"decoder\" or \"metalm\", got \"gpt\"");
  EXPECT_EQ(error_of([] {
              (void)models::model_config_from_json({{"model_type", "kosmos"}});
            }),
            "[config] model_type: expected \"encoder\", \"decoder\" or \"metalm\", got "
            "\"kosmos\" (not supported yet)");
  const models::ModelConfig a =
      models::model_config_from_json({{"model_type", "encoder"}, {"multiway", true}});
  EXPECT_EQ(a.model_type, "encoder");
  EXPECT_TRUE(a.encoder.multiway);
  EXPECT_TRUE(a.is_single_stack());
}

// ---------------------------------------------------------------- files

TEST_F(ConfigFiles, FileErrorsNameTheFile) {
  const std::string bad = write("bad.json", "{\"model_type\": \"decoder\", \"decoder_layers\": 0}");
  EXPECT_EQ(error_of([&] { (void)models::load_model_config_file(bad); }),
            "[config] " + bad + ": decoder_layers: must be > 0, got 0");
  const std::string typo =
      write("typo.json", "{\"model_type\": \"encoder\", \"encoder_layer\": 2}");
  EXPECT_EQ(error_of([&] { (void)models::load_model_config_file(typo); }),
            "[config] " + typo + ": encoder_layer: unknown field (did you mean encoder_layers?)");
  // The stack parsers check model_type when it is given.
  EXPECT_EQ(error_of([&] { (void)encoder_config_from_json({{"model_type", "decoder"}}); }),
            "[config] model_type: expected \"encoder\", got \"decoder\"");
  EXPECT_EQ(encoder_config_from_json({{"encoder_layers", 2}}).layers, 2);
  const std::string untyped = write("untyped.json", "{\"encoder_layers\": 2}");
  EXPECT_EQ(error_of([&] { (void)models::load_model_config_file(untyped); }),
            "[config] " + untyped +
                ": model_type: missing; expected \"encoder\", \"decoder\" or \"metalm\"");
}

TEST_F(ConfigFiles, HostileAndBrokenFiles) {
  // A key given twice: JSON libraries silently keep the last one.
  const std::string dup = write("dup.json",
                                "{\"model_type\": \"decoder\", \"vocab_size\": 10, "
                                "\"decoder_layers\": 2, \"decoder_layers\": 24}");
  EXPECT_EQ(error_of<FormatError>([&] { (void)models::load_model_config_file(dup); }),
            "[config] " + dup + ": duplicate key \"decoder_layers\"");
  // Syntax errors, truncation, comments, empty files: FormatError naming the file.
  for (const std::string text : {"{\"model_type\": \"decoder\",", "", "{} trailing",
                                 "{\"a\": 1 // no comments in JSON\n}", "{\"a\": NaN}"}) {
    SCOPED_TRACE(text);
    const std::string p = write("broken.json", text);
    EXPECT_TRUE(contains(error_of<FormatError>([&] { (void)models::load_model_config_file(p); }),
                         "[config] " + p + ": config file is not valid JSON: "));
  }
  // Valid JSON of the wrong shape.
  const std::string arr = write("array.json", "[1, 2, 3]");
  EXPECT_EQ(error_of([&] { (void)models::load_model_config_file(arr); }),
            "[config] " + arr + ": expected a JSON object, got array [1,2,3]");
  // Deep nesting is refused while parsing, long before it could exhaust a stack.
  const std::string deep = write(
      "deep.json", "{\"model_type\": \"encoder\", \"encoder_layers\": " + std::string(100000, '[') +
                       std::string(100000, ']') + "}");
  EXPECT_EQ(error_of<FormatError>([&] { (void)models::load_model_config_file(deep); }),
            "[config] " + deep + ": config file nests deeper than 64 levels");
  // Shallow nesting is just a wrong type.
  const std::string nested =
      write("nested.json", "{\"model_type\": \"encoder\", \"encoder_layers\": [[1]]}");
  EXPECT_TRUE(contains(error_of([&] { (void)models::load_model_config_file(nested); }),
                       "encoder_layers: expected an integer, got array (1 element)"));
  // Oversized: a wrong path to a checkpoint is refused before it is read whole.
  const std::string big = write("big.json", std::string((1 << 20) + 1, ' '));
  EXPECT_TRUE(contains(error_of<FormatError>([&] { (void)models::load_model_config_file(big); }),
                       "[config] " + big + ": 1048577 bytes is too large for a config file"));
  // Missing file and a directory: IoError naming the path.
  EXPECT_TRUE(contains(error_of<IoError>([&] { (void)models::load_model_config_file(path("none.json")); }),
                       "[config] " + path("none.json") + ": cannot open: "));
  EXPECT_EQ(error_of<IoError>([&] { (void)models::load_model_config_file(dir_.string()); }),
            "[config] " + dir_.string() + ": is a directory, not a file");
}

// ---------------------------------------------------------------- derived values and §1.4

TEST(Config, ParseFromTextNamesTheSourceAndKeepsTheSizeLimit) {
  EXPECT_TRUE(metalm::test::throws_with<ValueError>(
      [] { models::parse_model_config(R"({"model_type": "decoder", "decoder_layerz": 2})", "inline"); },
      {"[config] inline", "did you mean decoder_layers"}));
  EXPECT_TRUE(metalm::test::throws_with<FormatError>(
      [] { models::parse_model_config("{\"model_type\"", "cut"); }, {"[config] cut", "not valid JSON"}));
  const std::string huge = "{\"model_type\": \"decoder\"" + std::string(2 << 20, ' ') + "}";
  EXPECT_TRUE(metalm::test::throws_with<FormatError>([&] { models::parse_model_config(huge, "big"); },
                                             {"[config] big", "too large"}));
}

TEST(Config, DerivedValues) {
  EncoderConfig e;
  EXPECT_EQ(e.head_dim(), 64);
  EXPECT_EQ(e.num_patches(), 196);  // (224 / 16)^2
  EXPECT_EQ(e.embed_scale(), 1.0);
  e.no_scale_embedding = false;
  e.embed_dim = 256;
  EXPECT_EQ(e.embed_scale(), 16.0);
  EXPECT_FALSE(e.has_rel_pos());
  e.rel_pos_buckets = 32;
  EXPECT_FALSE(e.has_rel_pos());
  e.max_rel_pos = 128;
  EXPECT_TRUE(e.has_rel_pos());
  EXPECT_TRUE(e.has_final_layer_norm());
  e.normalize_output = false;
  EXPECT_FALSE(e.has_final_layer_norm());
  EXPECT_FALSE(e.has_output_layer());  // vocab_size -1
  e.vocab_size = 10;
  EXPECT_TRUE(e.has_output_layer());
  e.no_output_layer = true;
  EXPECT_FALSE(e.has_output_layer());
  // VL expert in the top layers only.
  e.layers = 12;
  e.multiway_vl_layers = 2;
  EXPECT_FALSE(e.is_vl_layer(9));
  EXPECT_TRUE(e.is_vl_layer(10));
  EXPECT_TRUE(e.is_vl_layer(11));
  e.multiway_vl_layers = 0;
  EXPECT_FALSE(e.is_vl_layer(11));

  // Drop path: torch.linspace(0, 0.1, 4) in float32 = [0, 0.033333335, 0.06666667, 0.1].
  e.layers = 4;
  e.drop_path_rate = 0.1;
  EXPECT_EQ(e.drop_path_prob(0), 0.0);
  EXPECT_EQ(e.drop_path_prob(1), static_cast<double>(0.1f / 3.0f));
  EXPECT_EQ(e.drop_path_prob(3), static_cast<double>(0.1f));
  EXPECT_NEAR(e.drop_path_prob(2), 0.0666667, 1e-7);
  e.layers = 1;
  EXPECT_EQ(e.drop_path_prob(0), 0.0);

  DecoderConfig d;
  d.embed_dim = 2048;
  d.attention_heads = 32;
  EXPECT_EQ(d.head_dim(), 64);
  EXPECT_TRUE(d.has_final_layer_norm());
  d.normalize_before = false;
  EXPECT_FALSE(d.has_final_layer_norm());
}

TEST(Config, DeepNormScalingsMatchHandComputedValues) {
  // Encoder-only N = 32: α = 64^¼ = 2√2, init_scale = 256^¼ = 4.
  EXPECT_NEAR(deepnorm_alpha(StackRole::encoder_only, 32, 0), 2.0 * std::sqrt(2.0), 1e-14);
  EXPECT_NEAR(deepnorm_init_scale(StackRole::encoder_only, 32, 0), 4.0, 1e-14);
  // Decoder-only M = 2: α = 4^¼ = √2, init_scale = 16^¼ = 2.
  EXPECT_NEAR(deepnorm_alpha(StackRole::decoder_only, 0, 2), std::sqrt(2.0), 1e-14);
  EXPECT_NEAR(deepnorm_init_scale(StackRole::decoder_only, 0, 2), 2.0, 1e-14);
  // 12-layer decoder: α = 24^¼ = 2.2133638394, init_scale = 96^¼ = 3.1301691601.
  EXPECT_NEAR(deepnorm_alpha(StackRole::decoder_only, 0, 12), 2.213363839400643, 1e-12);
  EXPECT_NEAR(deepnorm_init_scale(StackRole::decoder_only, 0, 12), 3.1301691601465746, 1e-12);
  // Enc-dec encoder, N = 2, M = 16: N⁴M = 256, 256^(1/16) = √2, so α = 0.81·√2 and
  // init_scale = √2 / 1.15 (TorchScale's code, not the paper's 0.87).
  EXPECT_NEAR(deepnorm_alpha(StackRole::encdec_encoder, 2, 16), 0.81 * std::sqrt(2.0), 1e-14);
  EXPECT_NEAR(deepnorm_init_scale(StackRole::encdec_encoder, 2, 16), std::sqrt(2.0) / 1.15, 1e-14);
  // Enc-dec 6+6: (6⁴·6)^(1/16) = 6^(5/16) = 1.7505409; α = 1.4179381, init_scale = 1.5222095.
  EXPECT_NEAR(deepnorm_alpha(StackRole::encdec_encoder, 6, 6), 1.417938140685523, 1e-12);
  EXPECT_NEAR(deepnorm_init_scale(StackRole::encdec_encoder, 6, 6), 1.5222094908057142, 1e-12);
  // Enc-dec decoder, M = 27: α = 81^¼ = 3, init_scale = 324^¼ = √18.
  EXPECT_NEAR(deepnorm_alpha(StackRole::encdec_decoder, 5, 27), 3.0, 1e-14);
  EXPECT_NEAR(deepnorm_init_scale(StackRole::encdec_decoder, 5, 27), std::sqrt(18.0), 1e-14);
  // The enc-dec decoder does not depend on N.
  EXPECT_EQ(deepnorm_alpha(StackRole::encdec_decoder, 1, 27),
            deepnorm_alpha(StackRole::encdec_decoder, 99, 27));
}

TEST(Config, SublnGammaMatchesHandComputedValues) {
  // sqrt(ln 2N): N = 1 -> sqrt(ln 2) = 0.8325546; N = 12 -> sqrt(ln 24) = 1.7827097.
  EXPECT_NEAR(subln_init_gamma(StackRole::encoder_only, 1, 0), 0.8325546111576977, 1e-12);
  EXPECT_NEAR(subln_init_gamma(StackRole::encoder_only, 12, 0), 1.782709687623856, 1e-12);
  // sqrt(ln 2M), M = 24 -> sqrt(ln 48) = 1.9675368.
  EXPECT_NEAR(subln_init_gamma(StackRole::decoder_only, 0, 24), 1.9675367876885788, 1e-12);
  // Enc-dec encoder sqrt(ln(3M)·ln(2N)/3), N = 12, M = 6: sqrt(ln 18 · ln 24 / 3) = 1.7498340.
  EXPECT_NEAR(subln_init_gamma(StackRole::encdec_encoder, 12, 6), 1.7498339955846698, 1e-12);
  // Enc-dec decoder sqrt(ln 3M), M = 6: sqrt(ln 18) = 1.7001093.
  EXPECT_NEAR(subln_init_gamma(StackRole::encdec_decoder, 12, 6), 1.70010933704164, 1e-12);
  // The depth the formula needs must be >= 1; the unused one may be anything.
  EXPECT_EQ(error_of([] { (void)subln_init_gamma(StackRole::encoder_only, 0, 5); }),
            "[subln_init_gamma] encoder_layers must be >= 1, got 0");
  EXPECT_EQ(error_of([] { (void)deepnorm_alpha(StackRole::encdec_encoder, 6, 0); }),
            "[deepnorm_alpha] decoder_layers must be >= 1, got 0");
  EXPECT_EQ(error_of([] { (void)deepnorm_init_scale(StackRole::decoder_only, 3, -1); }),
            "[deepnorm_init_scale] decoder_layers must be >= 1, got -1");
  EXPECT_NO_THROW((void)deepnorm_alpha(StackRole::encoder_only, 3, 0));
}

TEST(Config, ConfigLevelResidualAlphaAndInitGain) {
  // subln (the default): α = 1, gain γ = sqrt(ln 2N).
  EncoderConfig e;  // 12 layers
  EXPECT_EQ(e.residual_alpha(), 1.0);
  EXPECT_NEAR(e.init_weight_gain(), 1.782709687623856, 1e-12);
  // deepnorm: α = (2N)^¼ and gain 1 / (8N)^¼; N = 32 gives 2√2 and 1/4.
  e.layers = 32;
  e.deepnorm = true;
  postprocess(e);
  EXPECT_NEAR(e.residual_alpha(), 2.0 * std::sqrt(2.0), 1e-14);
  EXPECT_NEAR(e.init_weight_gain(), 0.25, 1e-15);
  // Neither: plain Pre-LN, no rescaling.
  DecoderConfig d;
  d.subln = false;
  EXPECT_EQ(d.residual_alpha(), 1.0);
  EXPECT_EQ(d.init_weight_gain(), 1.0);
  d.deepnorm = true;
  d.layers = 2;
  postprocess(d);
  EXPECT_NEAR(d.residual_alpha(), std::sqrt(2.0), 1e-14);
  EXPECT_NEAR(d.init_weight_gain(), 0.5, 1e-15);
}

// ---------------------------------------------------------------- configs/

TEST(Config, EveryExampleConfigLoadsAndIsDocumented) {
  const fs::path dir = fs::path(METALM_SOURCE_DIR) / "configs";
  std::ifstream readme_in(dir / "README.md");
  const std::string readme((std::istreambuf_iterator<char>(readme_in)),
                           std::istreambuf_iterator<char>());
  ASSERT_FALSE(readme.empty()) << "configs/README.md is missing";
  std::map<std::string, models::ModelConfig> loaded;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    const std::string name = entry.path().filename().string();
    SCOPED_TRACE(name);
    EXPECT_TRUE(contains(readme, "`" + name + "`")) << "document it in configs/README.md";
    models::ModelConfig cfg;
    ASSERT_NO_THROW(cfg = models::load_model_config_file(entry.path().string()));
    // From its text (what fuzz_config drives), the same config.
    std::ifstream text_in(entry.path());
    const std::string text((std::istreambuf_iterator<char>(text_in)),
                           std::istreambuf_iterator<char>());
    EXPECT_EQ(models::to_json(models::parse_model_config(text, name)), models::to_json(cfg));
    // Saved back, it reads the same (post-processing is idempotent).
    EXPECT_EQ(models::to_json(models::model_config_from_json(models::to_json(cfg))), models::to_json(cfg));
    loaded.emplace(name, cfg);
  }
  // The variants the issue lists, each with the property it exists to show.
  const std::vector<std::string> expected = {
      "beit3-multiway.json", "bert-relpos.json", "gpt-deepnorm.json",
      "gpt-postln.json",     "gpt-preln.json",   "gpt-sinusoidal.json",
      "gpt-subln-xpos.json", "vit-clip.json",    "vlmo-vl-expert.json"};
  for (const auto& name : expected) ASSERT_TRUE(loaded.count(name)) << name;

  const auto& preln = loaded.at("gpt-preln.json").decoder;
  EXPECT_TRUE(preln.normalize_before && !preln.subln && !preln.deepnorm);
  const auto& postln = loaded.at("gpt-postln.json").decoder;
  EXPECT_TRUE(!postln.normalize_before && !postln.subln && !postln.deepnorm);
  const auto& deep = loaded.at("gpt-deepnorm.json").decoder;
  EXPECT_TRUE(deep.deepnorm && !deep.subln && !deep.normalize_before);
  EXPECT_NEAR(deep.residual_alpha(), std::pow(8.0, 0.25), 1e-14);  // (2M)^¼, M = 4
  const auto& xpos = loaded.at("gpt-subln-xpos.json").decoder;
  EXPECT_TRUE(xpos.subln && xpos.normalize_before && xpos.xpos_rel_pos);
  EXPECT_EQ(xpos.positions, PositionKind::none);
  EXPECT_EQ(xpos.head_dim() % 2, 0);
  const auto& sin = loaded.at("gpt-sinusoidal.json").decoder;
  EXPECT_EQ(sin.positions, PositionKind::sinusoidal);
  const auto& bert = loaded.at("bert-relpos.json").encoder;
  EXPECT_TRUE(bert.has_rel_pos() && !bert.normalize_before && bert.has_output_layer());
  const auto& beit3 = loaded.at("beit3-multiway.json").encoder;
  EXPECT_TRUE(beit3.multiway && beit3.subln && beit3.has_final_layer_norm());
  EXPECT_FALSE(beit3.multiway_shared_attention);
  EXPECT_EQ(beit3.multiway_vl_layers, 0);
  const auto& vlmo = loaded.at("vlmo-vl-expert.json").encoder;
  EXPECT_TRUE(vlmo.multiway && vlmo.multiway_shared_attention && !vlmo.subln);
  EXPECT_GT(vlmo.multiway_vl_layers, 0);
  EXPECT_GT(vlmo.layer_scale_init, 0.0);
  const auto& clip = loaded.at("vit-clip.json").encoder;
  EXPECT_EQ(clip.activation_fn, ops::Activation::quick_gelu);
  EXPECT_TRUE(clip.normalize_before && !clip.subln && !clip.has_output_layer());
  EXPECT_EQ(clip.vocab_size, -1);
  // Small enough for tests to run every one.
  for (const auto& [name, cfg] : loaded) {
    std::vector<const nn::StackConfig*> stacks;
    if (cfg.model_type == "encoder") stacks.push_back(&cfg.encoder);
    if (cfg.model_type != "encoder") stacks.push_back(&cfg.decoder);
    for (const auto& e : cfg.encoders) stacks.push_back(&e.config);
    for (const nn::StackConfig* c : stacks) {
      EXPECT_LE(c->layers, 4) << name;
      EXPECT_LE(c->embed_dim, 256) << name;
    }
  }
}

}  // namespace
