// Transformer layers and stacks (src/nn/transformer.cpp, encoder.cpp, decoder.cpp): incremental
// decoding with the KV cache against the full forward, the §1.4 init scalings on exactly the
// named parameters, multiway routing against the separate experts, f64 gradient checks of the
// layers in every normalisation form, docking gradients, drop-path and argument errors.
// PyTorch parity lives in tests/reference/test_ref_torchscale.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "common/tiny_stacks.h"
#include "metalm/autograd/autograd.h"
#include "metalm/models/stack.h"
#include "metalm/nn/transformer.h"
#include "metalm/ops/ops.h"

using namespace metalm;
using metalm::test::all_close;
using metalm::test::gradcheck;
using metalm::test::randn;
using metalm::test::random_tokens;
using metalm::test::randomise;
using metalm::test::tiny_decoder;
using metalm::test::tiny_encoder;

namespace {

// ------------------------------------------------------------------ incremental decoding

struct IncCase {
  const char* name;
  bool xpos;
  bool rel;
  nn::PositionKind positions;
};

void PrintTo(const IncCase& c, std::ostream* os) { *os << c.name; }

class IncrementalTest : public ::testing::TestWithParam<IncCase> {};

// Prefill a prompt, then decode token by token (or in chunks): the logits of every position
// equal the full causal forward over the whole sequence.
TEST_P(IncrementalTest, MatchesFullForward) {
  const IncCase p = GetParam();
  nn::DecoderConfig cfg = tiny_decoder();
  cfg.xpos_rel_pos = p.xpos;
  cfg.xpos_scale_base = 64;
  if (p.rel) cfg.rel_pos_buckets = 16, cfg.max_rel_pos = 32;
  cfg.positions = p.positions;
  cfg.no_scale_embedding = false;
  Generator gen(11);
  models::Decoder dec(cfg, gen);
  randomise(dec, 3);
  dec.eval();
  NoGradGuard ng;

  for (int64_t steps : {1, 7, 64}) {
    const int64_t B = 2, P = 4, T = P + steps;
    Tensor tokens = random_tokens(B, T, cfg.vocab_size, 100 + steps);
    models::StackInputs full;
    full.tokens = tokens;
    Tensor ref = dec.forward(full).logits;  // [B, T, V]

    // Chunk sizes: the prompt, then one token at a time; and a chunked variant (3 at a time).
    for (int64_t chunk : {int64_t{1}, int64_t{3}}) {
      models::IncrementalState state(dec, B, T);
      int64_t pos = 0;
      std::vector<int64_t> sizes = {P};
      for (int64_t left = steps; left > 0; left -= chunk) sizes.push_back(std::min(chunk, left));
      for (int64_t n : sizes) {
        models::StackInputs in;
        in.tokens = tokens.slice(1, pos, pos + n).contiguous();
        in.state = &state;
        Tensor logits = dec.forward(in).logits;
        ASSERT_TRUE(all_close(logits, ref.slice(1, pos, pos + n), 1e-4, 2e-5))
            << p.name << ": steps " << steps << ", chunk " << chunk << ", positions " << pos
            << ".." << pos + n - 1;
        pos += n;
        EXPECT_EQ(state.length(), pos);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Decoder, IncrementalTest,
    ::testing::Values(IncCase{"learned", false, false, nn::PositionKind::learned},
                      IncCase{"sinusoidal", false, false, nn::PositionKind::sinusoidal},
                      IncCase{"xpos", true, false, nn::PositionKind::none},
                      IncCase{"relbias", false, true, nn::PositionKind::learned},
                      IncCase{"xpos_relbias", true, true, nn::PositionKind::none}),
    [](const ::testing::TestParamInfo<IncCase>& i) { return std::string(i.param.name); });

// Encoder-decoder: cross-attention (with its relative bias) continues from the cache length too.
TEST(Incremental, CrossAttentionDecoderMatchesFullForward) {
  nn::DecoderConfig cfg = tiny_decoder();
  cfg.rel_pos_buckets = 16;
  cfg.max_rel_pos = 32;
  Generator gen(15);
  models::Decoder dec(cfg, gen, {nn::StackRole::encdec_decoder, 2, nullptr});
  randomise(dec, 16);
  dec.eval();
  NoGradGuard ng;
  const int64_t B = 2, T = 9;
  Tensor tokens = random_tokens(B, T, cfg.vocab_size, 17);
  Tensor enc = randn({B, 5, 32}, 18);
  Tensor enc_pad = Tensor::from_vector<uint8_t>({B, 5}, {0, 0, 0, 0, 0, 0, 0, 0, 1, 1});
  models::StackInputs full;
  full.tokens = tokens;
  full.encoder_out = enc;
  full.encoder_padding = enc_pad;
  Tensor ref = dec.forward(full).logits;
  models::IncrementalState state(dec, B, T);
  for (int64_t pos = 0; pos < T;) {
    const int64_t n = pos == 0 ? 3 : 1;
    models::StackInputs in = full;
    in.tokens = tokens.slice(1, pos, pos + n).contiguous();
    in.state = &state;
    EXPECT_TRUE(all_close(dec.forward(in).logits, ref.slice(1, pos, pos + n), 1e-4, 2e-5))
        << "position " << pos;
    pos += n;
  }
}

// The cross-attention keys/values are projected at the first step and reused (fairseq's
// static_kv): later steps do not read encoder_out again, so replacing it changes nothing; after
// reset() the next encoder output is projected anew.
TEST(Incremental, CrossAttentionKeysAndValuesAreCachedOnce) {
  nn::DecoderConfig cfg = tiny_decoder();
  Generator gen(19);
  models::Decoder dec(cfg, gen, {nn::StackRole::encdec_decoder, 2, nullptr});
  randomise(dec, 20);
  dec.eval();
  NoGradGuard ng;
  const int64_t B = 2, T = 6;
  Tensor tokens = random_tokens(B, T, cfg.vocab_size, 21);
  Tensor enc = randn({B, 5, 32}, 22), other = randn({B, 5, 32}, 23);
  models::StackInputs full;
  full.tokens = tokens;
  full.encoder_out = enc;
  Tensor ref = dec.forward(full).logits;
  models::IncrementalState state(dec, B, T);
  for (int64_t pos = 0; pos < T; ++pos) {
    models::StackInputs in = full;
    in.tokens = tokens.slice(1, pos, pos + 1).contiguous();
    if (pos > 0) in.encoder_out = other;  // ignored: the cached projections of enc are used
    in.state = &state;
    EXPECT_TRUE(all_close(dec.forward(in).logits, ref.slice(1, pos, pos + 1), 1e-4, 2e-5))
        << "position " << pos;
  }
  state.reset();
  models::StackInputs again = full;
  again.encoder_out = other;
  Tensor ref_other = dec.forward(again).logits;
  again.tokens = tokens.slice(1, 0, 1).contiguous();
  again.state = &state;
  EXPECT_TRUE(all_close(dec.forward(again).logits, ref_other.slice(1, 0, 1), 1e-4, 2e-5));
  // A source of another length than the cached one is an error, not a silent mix.
  again.tokens = tokens.slice(1, 1, 2).contiguous();
  for (int64_t len : {4, 6}) {
    again.encoder_out = randn({B, len, 32}, 24);
    EXPECT_THROW(dec.forward(again), ShapeError) << len;
  }
}

TEST(Incremental, CapacityAndReset) {
  nn::DecoderConfig cfg = tiny_decoder();
  Generator gen(1);
  models::Decoder dec(cfg, gen);
  dec.eval();
  NoGradGuard ng;
  models::IncrementalState state(dec, 1, 4);
  models::StackInputs in;
  in.tokens = random_tokens(1, 3, cfg.vocab_size, 5);
  in.state = &state;
  Tensor first = dec.forward(in).logits;
  EXPECT_THROW(dec.forward(in), ValueError);  // 3 + 3 > 4
  state.reset();
  EXPECT_TRUE(all_close(dec.forward(in).logits, first, 0, 0));  // same after a reset
  state.truncate(1);
  EXPECT_EQ(state.length(), 1);
}

// ------------------------------------------------------------------ initialisation (spec 1.4)

// Every parameter name containing fc1, fc2, out_proj or v_proj (weights and biases).
std::set<std::string> expected_scaled(const nn::Module& m, bool skip_encoder_attn) {
  std::set<std::string> out;
  for (auto& [n, t] : m.named_parameters()) {
    bool hit = false;
    for (const char* s : {"fc1", "fc2", "out_proj", "v_proj"})
      hit |= n.find(s) != std::string::npos;
    if (hit && !(skip_encoder_attn && n.find("encoder_attn") != std::string::npos)) out.insert(n);
  }
  return out;
}

// a (scaled build) vs b (same seed, unscaled): scaled names are b * factor, the rest equal.
void expect_scaled(const nn::Module& a, const nn::Module& b, const std::set<std::string>& scaled,
                   double factor) {
  auto pb = b.state_dict();
  int n_scaled = 0;
  for (auto& [name, t] : a.named_parameters()) {
    auto it = pb.find(name);
    if (it == pb.end()) continue;  // SubLN's inner LayerNorms (no random draws)
    if (scaled.count(name)) {
      EXPECT_TRUE(all_close(t, it->second * factor, 1e-6, 0)) << name;
      ++n_scaled;
    } else {
      EXPECT_TRUE(all_close(t, it->second, 0, 0)) << name;
    }
  }
  EXPECT_EQ(n_scaled, static_cast<int>(scaled.size()));
}

TEST(Init, DeepNormDecoderDividesExactlyTheListedParameters) {
  nn::DecoderConfig cfg = tiny_decoder();
  cfg.deepnorm = true;
  cfg.multiway = true;  // the unused B copies are scaled too
  nn::postprocess(cfg);
  nn::DecoderConfig plain = cfg;
  plain.deepnorm = false;  // Post-LN, same parameters and draws, no scaling
  Generator g1(5), g2(5);
  models::Decoder a(cfg, g1), b(plain, g2);
  std::set<std::string> names(a.scaled_parameter_names().begin(),
                              a.scaled_parameter_names().end());
  EXPECT_EQ(names, expected_scaled(a, false));
  EXPECT_EQ(names.size(), 2u * (8 + 4));  // per layer: v/out (A and B) x w/b = 8; fc1/fc2 = 4
  EXPECT_TRUE(b.scaled_parameter_names().empty());
  expect_scaled(a, b, names, 1.0 / std::pow(8.0 * 2, 0.25));
}

TEST(Init, SubLNMultiwayEncoderMultipliesExactlyTheListedParameters) {
  nn::EncoderConfig cfg = tiny_encoder();
  cfg.multiway = true;
  nn::postprocess(cfg);  // subln by default
  nn::EncoderConfig plain = cfg;
  plain.subln = false;  // Pre-LN without inner LNs: same draws for every shared name
  Generator g1(6), g2(6);
  models::Encoder a(cfg, g1), b(plain, g2);
  std::set<std::string> names(a.scaled_parameter_names().begin(),
                              a.scaled_parameter_names().end());
  EXPECT_EQ(names, expected_scaled(a, false));
  EXPECT_EQ(names.size(), 2u * 16);  // A and B copies of v/out/fc1/fc2, weights and biases
  EXPECT_TRUE(names.count("layers.1.ffn.B.fc2.bias"));
  EXPECT_TRUE(names.count("layers.0.self_attn.v_proj.A.weight"));
  expect_scaled(a, b, names, std::sqrt(std::log(2.0 * 2)));
}

TEST(Init, SubLNEncDecDecoderSkipsEncoderAttention) {
  nn::DecoderConfig cfg = tiny_decoder();
  nn::postprocess(cfg);
  Generator g(7);
  models::Decoder dec(cfg, g, {nn::StackRole::encdec_decoder, 3, nullptr});
  std::set<std::string> names(dec.scaled_parameter_names().begin(),
                              dec.scaled_parameter_names().end());
  EXPECT_EQ(names, expected_scaled(dec, true));
  EXPECT_EQ(names.size(), 2u * 8);
  for (auto& n : names) EXPECT_EQ(n.find("encoder_attn"), std::string::npos) << n;
  EXPECT_TRUE(dec.state_dict().count("layers.0.encoder_attn.v_proj.weight"));
}

TEST(Init, EmbeddingAndOutputProjectionStatistics) {
  nn::DecoderConfig cfg = tiny_decoder();
  cfg.vocab_size = 400;
  cfg.embed_dim = 64;
  cfg.attention_heads = 4;
  Generator g(8);
  models::Decoder dec(cfg, g);
  auto stats = [](const Tensor& t) {
    auto v = t.to_vector<double>();
    double s = 0, s2 = 0;
    for (double x : v) s += x, s2 += x * x;
    const double mean = s / v.size();
    return std::make_pair(mean, std::sqrt(s2 / v.size() - mean * mean));
  };
  const double want = 1.0 / 8.0;  // d^-0.5
  EXPECT_NEAR(stats(dec.embed_tokens->weight).second, want, 0.01);
  EXPECT_NEAR(stats(dec.output_projection->weight).second, want, 0.01);
  for (double x : dec.embed_tokens->weight.slice(0, 1, 2).to_vector<double>()) EXPECT_EQ(x, 0.0);

  cfg.bert_init = true;
  Generator g2(8);
  models::Decoder bert(cfg, g2);
  // bert_init N(0, 0.02), then SubLN's gamma = sqrt(ln 2M) on fc1.
  EXPECT_NEAR(stats(bert.layers[0]->ffn.only().fc1->weight).second,
              0.02 * std::sqrt(std::log(4.0)), 0.002);
  EXPECT_NEAR(stats(bert.layers[0]->self_attn->q_proj.only().weight).second, 0.02, 0.003);
  for (double x : bert.layers[0]->self_attn->q_proj.only().bias.to_vector<double>())
    EXPECT_EQ(x, 0.0);
}

// ------------------------------------------------------------------ multiway routing

TEST(Multiway, RoutesEqualTheSeparateExperts) {
  nn::EncoderConfig cfg = tiny_encoder();
  cfg.multiway = true;
  nn::postprocess(cfg);
  Generator g(9);
  nn::EncoderLayer mw(cfg, 0, g);
  randomise(mw, 10);
  nn::EncoderConfig single = cfg;
  single.multiway = false;
  Generator g2(9);
  nn::EncoderLayer la(single, 0, g2), lb(single, 0, g2);
  // Load the A (resp. B) expert weights into plain layers: drop ".A" / ".B" from the names.
  auto expert_state = [&](const std::string& tag) {
    TensorMap out;
    for (auto& [k, v] : mw.state_dict()) {
      std::string key = k;
      const size_t pos = key.find("." + tag + ".");
      const bool other_expert =
          key.find(".A.") != std::string::npos || key.find(".B.") != std::string::npos;
      if (pos != std::string::npos) key.erase(pos, 2);
      else if (other_expert) continue;
      out[key] = v;
    }
    return out;
  };
  la.load_state_dict(expert_state("A"));
  lb.load_state_dict(expert_state("B"));
  Tensor x = randn({2, 6, 32}, 1);
  NoGradGuard ng;
  nn::LayerInputs all_a, all_b, past_end;
  all_a.route = {-1, false};
  all_b.route = {0, false};
  past_end.route = {6, false};  // p >= T: all A
  Tensor ya = la.forward(x, {}), yb = lb.forward(x, {});
  EXPECT_TRUE(all_close(mw.forward(x, all_a), ya, 1e-6, 1e-6));
  EXPECT_TRUE(all_close(mw.forward(x, all_b), yb, 1e-6, 1e-6));
  EXPECT_TRUE(all_close(mw.forward(x, past_end), ya, 1e-6, 1e-6));
  EXPECT_FALSE(all_close(ya, yb, 1e-3, 1e-3));

  // A split: the FFN (and its LN) of tokens [0, p) is A's, of [p, T) B's.
  nn::Route split{4, false};
  auto ffn = [](nn::FeedForwardNetwork& f, const Tensor& t) { return f.forward(t); };
  Tensor y = mw.ffn.apply(x, split, ffn);
  EXPECT_TRUE(all_close(y.slice(1, 0, 4), la.ffn.only().forward(x.slice(1, 0, 4)), 1e-6, 1e-6));
  EXPECT_TRUE(all_close(y.slice(1, 4, 6), lb.ffn.only().forward(x.slice(1, 4, 6)), 1e-6, 1e-6));
}

TEST(Multiway, VLExpertTakesAllTokensInTopLayersOnly) {
  nn::EncoderConfig cfg = tiny_encoder();
  cfg.layers = 3;
  cfg.multiway = true;
  cfg.multiway_shared_attention = true;
  cfg.multiway_vl_layers = 1;
  nn::postprocess(cfg);
  Generator g(12);
  models::Encoder enc(cfg, g);
  auto sd = enc.state_dict();
  EXPECT_TRUE(sd.count("layers.2.ffn.C.fc1.weight"));
  EXPECT_TRUE(sd.count("layers.2.final_layer_norm.C.weight"));
  EXPECT_FALSE(sd.count("layers.1.ffn.C.fc1.weight"));
  EXPECT_TRUE(sd.count("layers.0.self_attn.q_proj.weight"));  // shared attention
  EXPECT_TRUE(sd.count("layers.0.self_attn_layer_norm.weight"));
  EXPECT_TRUE(sd.count("layers.0.ffn.A.fc1.weight"));
  EXPECT_TRUE(sd.count("layer_norm.B.weight"));

  nn::TransformerLayer& top = *enc.layers[2];
  randomise(top, 13);
  Tensor x = randn({1, 5, 32}, 2);
  NoGradGuard ng;
  auto ffn = [](nn::FeedForwardNetwork& f, const Tensor& t) { return f.forward(t); };
  EXPECT_TRUE(all_close(top.ffn.apply(x, {2, true}, ffn), top.ffn.expert(2).forward(x), 0, 0));
  // A lower layer splits by position even for VL input.
  nn::TransformerLayer& low = *enc.layers[0];
  Tensor y = low.ffn.apply(x, {2, true}, ffn);
  EXPECT_TRUE(all_close(y.slice(1, 0, 2), low.ffn.expert(0).forward(x.slice(1, 0, 2)), 0, 0));
  EXPECT_TRUE(all_close(y.slice(1, 2, 5), low.ffn.expert(1).forward(x.slice(1, 2, 5)), 0, 0));
}

TEST(Multiway, DecoderOnlyGetsUnusedAttentionCopies) {
  nn::DecoderConfig cfg = tiny_decoder();
  cfg.multiway = true;
  Generator g(14);
  models::Decoder dec(cfg, g);
  auto sd = dec.state_dict();
  EXPECT_TRUE(sd.count("layers.0.self_attn.q_proj.B.weight"));
  EXPECT_TRUE(sd.count("layers.0.self_attn.inner_attn_ln.B.weight"));
  EXPECT_TRUE(sd.count("layers.0.ffn.fc1.weight"));
  EXPECT_TRUE(sd.count("layers.0.final_layer_norm.weight"));
  EXPECT_TRUE(sd.count("layer_norm.weight"));
  // B is unused: its gradient stays empty.
  models::StackInputs in;
  in.tokens = random_tokens(1, 4, cfg.vocab_size, 3);
  ops::sum(dec.forward(in).logits).backward();
  EXPECT_FALSE(dec.layers[0]->self_attn->q_proj.expert(1).weight.grad().defined());
  EXPECT_TRUE(dec.layers[0]->self_attn->q_proj.expert(0).weight.grad().defined());
}

// ------------------------------------------------------------------ gradient checks (f64)

struct NormForm {
  const char* name;
  bool normalize_before, subln, deepnorm;
};
const NormForm kForms[] = {{"preln", true, false, false},
                           {"postln", false, false, false},
                           {"deepnorm", false, false, true},
                           {"subln", true, true, false}};

nn::TransformerLayerOptions tiny_layer(const NormForm& f) {
  nn::TransformerLayerOptions o;
  o.embed_dim = 8;
  o.num_heads = 2;
  o.ffn_dim = 12;
  o.normalize_before = f.normalize_before;
  o.subln = f.subln;
  o.alpha = f.deepnorm ? std::pow(2.0 * 2, 0.25) : 1.0;
  return o;
}

std::vector<Tensor> params_of(nn::Module& m) {
  std::vector<Tensor> out;
  for (auto& [n, t] : m.named_parameters()) out.push_back(t);
  return out;
}

TEST(GradCheck, EncoderLayerEveryForm) {
  for (const NormForm& f : kForms) {
    nn::TransformerLayerOptions o = tiny_layer(f);
    o.xpos = true;
    Generator g(20);
    nn::TransformerLayer layer(o, g);
    randomise(layer, 21);
    layer.to(DType::f64);
    Tensor x = randn({2, 3, 8}, 22, DType::f64).set_requires_grad(true);
    Tensor bias = randn({1, 2, 3, 3}, 23, DType::f64).set_requires_grad(true);
    std::vector<uint8_t> pad = {0, 0, 0, 0, 0, 1};
    Tensor key_padding = Tensor::from_vector<uint8_t>({2, 3}, pad);
    std::vector<Tensor> inputs = {x, bias};
    for (auto& p : params_of(layer)) inputs.push_back(p);
    auto fn = [&](const std::vector<Tensor>& in) {
      ops::AttentionMask mask;
      mask.key_padding = key_padding;
      mask.bias = in[1];
      nn::LayerInputs li;
      li.self_mask = &mask;
      return layer.forward(in[0], li);
    };
    EXPECT_TRUE(gradcheck(fn, inputs, 1e-6, 1e-5, 1e-7)) << f.name;
  }
}

TEST(GradCheck, DecoderLayerWithCrossAttentionEveryForm) {
  for (const NormForm& f : kForms) {
    nn::TransformerLayerOptions o = tiny_layer(f);
    o.cross_attention = true;
    o.encoder_embed_dim = 6;
    Generator g(30);
    nn::TransformerLayer layer(o, g);
    randomise(layer, 31);
    layer.to(DType::f64);
    Tensor x = randn({2, 3, 8}, 32, DType::f64).set_requires_grad(true);
    Tensor enc = randn({2, 4, 6}, 33, DType::f64).set_requires_grad(true);
    std::vector<Tensor> inputs = {x, enc};
    for (auto& p : params_of(layer)) inputs.push_back(p);
    auto fn = [&](const std::vector<Tensor>& in) {
      ops::AttentionMask causal, cross;
      causal.kind = ops::AttnMaskKind::causal;
      nn::LayerInputs li;
      li.self_mask = &causal;
      li.encoder_out = in[1];
      li.cross_mask = &cross;
      return layer.forward(in[0], li);
    };
    EXPECT_TRUE(gradcheck(fn, inputs, 1e-6, 1e-5, 1e-7)) << f.name;
  }
}

// ------------------------------------------------------------------ docking (spec 3.3)

// Docking = feeding token embeddings whose masked rows are the features: same output, the
// features get exactly those rows' gradient, and the token table gets none from them.
TEST(Docking, EqualsEmbeddingOverwriteAndRoutesGradients) {
  nn::DecoderConfig cfg = tiny_decoder();
  cfg.no_scale_embedding = false;  // docked rows are scaled too
  Generator g(40);
  models::Decoder dec(cfg, g);
  const int64_t B = 2, T = 5;
  Tensor tokens = random_tokens(B, T, cfg.vocab_size, 41);
  std::vector<uint8_t> m = {0, 1, 1, 0, 0, 0, 0, 0, 1, 0};
  Tensor mask = Tensor::from_vector<uint8_t>({B, T}, m);
  Tensor feats = randn({3, 32}, 42).set_requires_grad(true);
  Tensor w = randn({B, T, cfg.vocab_size}, 43);

  models::StackInputs in;
  in.tokens = tokens;
  in.dock_mask = mask;
  in.dock_features = feats;
  Tensor y = dec.forward(in).logits;
  ops::sum(y * w).backward();
  Tensor g_feats = feats.grad();
  Tensor g_table = dec.embed_tokens->weight.grad().clone();
  dec.embed_tokens->weight.zero_grad();

  // The same embeddings built by hand.
  Tensor emb;
  {
    NoGradGuard ng;
    emb = dec.embed_tokens->forward(tokens).clone();
    copy_into(emb.slice(0, 0, 1).slice(1, 1, 3), feats.detach().slice(0, 0, 2).unsqueeze(0));
    copy_into(emb.slice(0, 1, 2).slice(1, 3, 4), feats.detach().slice(0, 2, 3).unsqueeze(0));
  }
  emb.set_requires_grad(true);
  models::StackInputs by_hand;
  by_hand.token_embeddings = emb;
  Tensor y2 = dec.forward(by_hand).logits;
  EXPECT_TRUE(all_close(y, y2, 0, 0));
  ops::sum(y2 * w).backward();
  Tensor ge = emb.grad();
  EXPECT_TRUE(all_close(g_feats.slice(0, 0, 2), ge.slice(0, 0, 1).slice(1, 1, 3).squeeze(0), 0, 0));
  EXPECT_TRUE(all_close(g_feats.slice(0, 2, 3), ge.slice(0, 1, 2).slice(1, 3, 4).squeeze(0), 0, 0));

  // The table's gradient comes only from the undocked positions.
  const int64_t V = cfg.vocab_size, d = 32;
  std::vector<double> expected(static_cast<size_t>(V * d), 0.0);
  const auto tok = tokens.to_vector<int64_t>();
  const auto gev = ge.to_vector<double>();
  for (int64_t i = 0; i < B * T; ++i)
    if (!m[i])
      for (int64_t c = 0; c < d; ++c) expected[tok[i] * d + c] += gev[i * d + c];
  EXPECT_TRUE(all_close(g_table, Tensor::from_vector<double>({V, d}, expected).to(DType::f32),
                        1e-5, 1e-6));
}

TEST(Docking, ArgumentErrors) {
  nn::DecoderConfig cfg = tiny_decoder();
  Generator g(44);
  models::Decoder dec(cfg, g);
  models::StackInputs in;
  in.tokens = random_tokens(1, 4, cfg.vocab_size, 45);
  in.dock_mask = Tensor::from_vector<uint8_t>({1, 4}, {0, 1, 1, 0});
  EXPECT_THROW(dec.forward(in), ValueError);  // mask without features
  in.dock_features = randn({3, 32}, 46);        // 3 rows for 2 docked positions
  EXPECT_ANY_THROW(dec.forward(in));
  in.dock_features = randn({2, 31}, 46);
  EXPECT_THROW(dec.forward(in), ShapeError);
  in.dock_mask = Tensor::from_vector<uint8_t>({1, 3}, {0, 1, 1});
  in.dock_features = randn({2, 32}, 46);
  EXPECT_THROW(dec.forward(in), ShapeError);
}

// ------------------------------------------------------------------ drop-path, errors

TEST(DropPath, PerSampleScaledAndIdentityInEval) {
  Tensor x = Tensor::ones({64, 3, 4});
  Generator g(50);
  EXPECT_TRUE(all_close(nn::drop_path(x, 0.25, g, false), x, 0, 0));
  Tensor y = nn::drop_path(x, 0.25, g, true);
  auto v = y.to_vector<double>();
  int kept = 0;
  for (int64_t b = 0; b < 64; ++b) {
    const double first = v[b * 12];
    EXPECT_TRUE(first == 0.0 || std::abs(first - 1.0 / 0.75) < 1e-6) << first;
    for (int i = 1; i < 12; ++i) EXPECT_EQ(v[b * 12 + i], first);  // whole sample kept or not
    kept += first != 0.0;
  }
  EXPECT_GT(kept, 32);
  EXPECT_LT(kept, 64);
  Generator g2(50);
  nn::drop_path(x, 0.25, g2, false);  // eval draws nothing
  EXPECT_TRUE(all_close(nn::drop_path(x, 0.25, g2, true), y, 0, 0));  // reproducible (D7)
  EXPECT_THROW(nn::drop_path(x, 1.0, g, true), ValueError);
}

// Attention dropout in training (KOSMOS-1 trains with 0.1): the op's own semantics are tested
// against softmax + ops::dropout in test_attention.cpp; here, that the decoder uses it in training
// only, reproducibly from the seed (D7), with fresh masks every step, and gradients flow.
TEST(AttentionDropout, DecoderTrainsWithItReproducibly) {
  nn::DecoderConfig cfg = tiny_decoder();
  cfg.attention_dropout = 0.3;
  nn::postprocess(cfg);
  auto logits = [](models::Decoder& d) {
    models::StackInputs in;
    in.tokens = Tensor::from_vector<int64_t>({2, 6}, {1, 4, 9, 16, 25, 36, 2, 3, 5, 7, 11, 13});
    return d.forward(in).logits;
  };
  Generator g1(70), g2(70);
  models::Decoder a(cfg, g1), b(cfg, g2);
  a.eval();
  const Tensor eval_out = logits(a);
  EXPECT_TRUE(all_close(logits(a), eval_out, 0, 0));  // eval: no dropout, nothing drawn
  a.train();
  b.train();
  const Tensor a1 = logits(a), b1 = logits(b);
  EXPECT_TRUE(all_close(a1, b1, 0, 0));  // same seed, same masks
  EXPECT_FALSE(all_close(a1, eval_out, 1e-4, 1e-4));  // dropout changed the output
  Tensor a2 = logits(a);
  EXPECT_FALSE(all_close(a2, a1, 1e-4, 1e-4));  // the next step draws new masks
  ops::sum(a2).backward();
  for (const auto& [name, p] : a.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    for (double v : p.grad().to_vector<double>()) ASSERT_TRUE(std::isfinite(v)) << name;
  }
}

TEST(Errors, BadArguments) {
  nn::DecoderConfig cfg = tiny_decoder();
  Generator g(60);
  models::Decoder dec(cfg, g);
  models::StackInputs in;
  EXPECT_THROW(dec.forward(in), ValueError);  // no tokens
  in.tokens = random_tokens(1, 4, cfg.vocab_size, 1);
  in.encoder_out = randn({1, 2, 32}, 2);
  EXPECT_THROW(dec.forward(in), ValueError);  // decoder-only has no cross-attention
  in.encoder_out = Tensor();
  in.tokens = random_tokens(1, 129, cfg.vocab_size, 1);
  EXPECT_THROW(dec.forward(in), ValueError);  // past max_target_positions
  in.tokens = random_tokens(4, 1, cfg.vocab_size, 1).reshape({4});
  EXPECT_THROW(dec.forward(in), ShapeError);

  models::Decoder cross(cfg, g, {nn::StackRole::encdec_decoder, 2, nullptr});
  models::StackInputs cin;
  cin.tokens = random_tokens(1, 4, cfg.vocab_size, 1);
  EXPECT_THROW(cross.forward(cin), ValueError);  // encoder_out missing
  EXPECT_THROW(models::Decoder(cfg, g, {nn::StackRole::encoder_only, 0, nullptr}), ValueError);

  nn::EncoderConfig ecfg = tiny_encoder();
  models::Encoder enc(ecfg, g);
  models::StackInputs ein;
  ein.tokens = random_tokens(2, 4, ecfg.vocab_size, 1);
  ein.padding = Tensor::zeros({2, 5}, DType::u8);
  EXPECT_THROW(enc.forward(ein), ShapeError);
  EXPECT_THROW(nn::EncoderLayer(ecfg, 2, g), ValueError);  // layer index out of range

  nn::TransformerLayerOptions o;
  o.embed_dim = 8;
  o.num_heads = 2;
  o.ffn_dim = 8;
  nn::TransformerLayer layer(o, g);
  EXPECT_THROW(layer.forward(randn({2, 3, 7}, 1), {}), ShapeError);
  o.drop_path = 1.0;
  EXPECT_THROW(nn::TransformerLayer(o, g), ValueError);
}

}  // namespace
