// The initialisation of every stack kind (reference-spec 1.4) through the public stack classes:
// which parameters the DeepNorm / SubLN scaling touches and by exactly what factor, the
// distributions of the fresh weights (default init and bert_init), and the DeepNorm residual α.
// The formulas are written out below instead of being taken from nn::deepnorm_init_scale() and
// friends, so that a wrong formula in the library fails rather than agreeing with itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "metalm/models/stack.h"
#include "metalm/nn/transformer.h"

using namespace metalm;
using nn::StackRole;

namespace {

// N and M differ, so a formula that swaps the two depths fails.
constexpr int64_t kEncoderLayers = 3;  // N
constexpr int64_t kDecoderLayers = 2;  // M
constexpr int64_t kDim = 64, kHeads = 4, kFfn = 128, kVocab = 100, kPad = 1;

enum class Norm { pre_ln, post_ln, deepnorm, subln };

const char* norm_name(Norm n) {
  switch (n) {
    case Norm::pre_ln:
      return "preln";
    case Norm::post_ln:
      return "postln";
    case Norm::deepnorm:
      return "deepnorm";
    case Norm::subln:
      return "subln";
  }
  return "?";
}

const char* role_name(StackRole r) {
  switch (r) {
    case StackRole::encoder_only:
      return "encoder_only";
    case StackRole::decoder_only:
      return "decoder_only";
    case StackRole::encdec_encoder:
      return "encdec_encoder";
    case StackRole::encdec_decoder:
      return "encdec_decoder";
  }
  return "?";
}

bool is_encoder(StackRole r) {
  return r == StackRole::encoder_only || r == StackRole::encdec_encoder;
}

// ------------------------------------------------------------------ reference-spec 1.4

// DeepNorm: the scaled parameters are divided by init_scale.
double spec_deepnorm_init_scale(StackRole role) {
  const double N = kEncoderLayers, M = kDecoderLayers;
  switch (role) {
    case StackRole::encoder_only:
      return std::pow(8.0 * N, 0.25);
    case StackRole::decoder_only:
      return std::pow(8.0 * M, 0.25);
    // TorchScale's code (the paper's β would be 0.87·(N⁴M)^(-1/16)).
    case StackRole::encdec_encoder:
      return std::pow(N * N * N * N * M, 1.0 / 16.0) / 1.15;
    case StackRole::encdec_decoder:
      return std::pow(12.0 * M, 0.25);
  }
  return 0.0;
}

// DeepNorm: residual * α + f(x).
double spec_deepnorm_alpha(StackRole role) {
  const double N = kEncoderLayers, M = kDecoderLayers;
  switch (role) {
    case StackRole::encoder_only:
      return std::pow(2.0 * N, 0.25);
    case StackRole::decoder_only:
      return std::pow(2.0 * M, 0.25);
    case StackRole::encdec_encoder:
      return 0.81 * std::pow(N * N * N * N * M, 1.0 / 16.0);
    case StackRole::encdec_decoder:
      return std::pow(3.0 * M, 0.25);
  }
  return 0.0;
}

// SubLN / MAGNETO: the scaled parameters are multiplied by γ.
double spec_subln_gamma(StackRole role) {
  const double N = kEncoderLayers, M = kDecoderLayers;
  switch (role) {
    case StackRole::encoder_only:
      return std::sqrt(std::log(2.0 * N));
    case StackRole::decoder_only:
      return std::sqrt(std::log(2.0 * M));
    case StackRole::encdec_encoder:
      return std::sqrt(std::log(3.0 * M) * std::log(2.0 * N) / 3.0);
    case StackRole::encdec_decoder:
      return std::sqrt(std::log(3.0 * M));
  }
  return 0.0;
}

// What a scaled parameter carries after init (1 for Pre-LN and Post-LN: no scaling).
double spec_factor(StackRole role, Norm norm) {
  if (norm == Norm::deepnorm) return 1.0 / spec_deepnorm_init_scale(role);
  if (norm == Norm::subln) return spec_subln_gamma(role);
  return 1.0;
}

// ------------------------------------------------------------------ parameter names

// "layers.2.ffn.B.fc1.weight" -> group "layers.*.ffn.*.fc1.weight", owner "fc1", leaf "weight".
// A group pools the same parameter of every layer and expert: one distribution, more samples.
struct ParamName {
  std::string group, owner, leaf;
  bool in_encoder_attn = false;
};

ParamName parse_name(const std::string& name) {
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t dot = name.find('.', start);
    parts.push_back(name.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  ParamName p;
  p.leaf = parts.back();
  for (auto& s : parts) {
    const bool index = std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    const bool expert = s == "A" || s == "B" || s == "C";
    if (s == "encoder_attn") p.in_encoder_attn = true;
    if (index || expert) {
      s = "*";
    } else if (&s != &parts.back()) {
      p.owner = s;
    }
    p.group += (p.group.empty() ? "" : ".") + s;
  }
  return p;
}

// TorchScale scales every parameter whose name contains fc1, fc2, out_proj or v_proj, except
// the enc-dec decoder's encoder_attn under SubLN (its DeepNorm scaling has no such exception).
bool spec_is_scaled(const ParamName& p, StackRole role, Norm norm) {
  const bool listed =
      p.owner == "fc1" || p.owner == "fc2" || p.owner == "out_proj" || p.owner == "v_proj";
  const bool skipped =
      role == StackRole::encdec_decoder && norm == Norm::subln && p.in_encoder_attn;
  return listed && !skipped;
}

// ------------------------------------------------------------------ stacks

struct StackCase {
  StackRole role;
  Norm norm;
  bool bert_init;
};

std::string case_name(const StackCase& c) {
  return std::string(role_name(c.role)) + "_" + norm_name(c.norm) + (c.bert_init ? "_bert" : "");
}

void PrintTo(const StackCase& c, std::ostream* os) {
  *os << case_name(c);
}

struct Stack {
  std::unique_ptr<nn::Module> module;
  std::vector<std::string> scaled_names;  // as the stack reports them
  std::vector<double> alphas;             // each layer's residual multiplier
};

// Sets the deepnorm / subln / normalize_before triple and post-processes (reference-spec 1.2).
template <typename Config>
void set_norm(Config& cfg, bool& normalize_before, Norm norm) {
  cfg.deepnorm = norm == Norm::deepnorm;
  cfg.subln = norm == Norm::subln;
  normalize_before = norm != Norm::post_ln;  // deepnorm: postprocess() makes it Post-LN
  nn::postprocess(cfg);
  // The test must build what it means to build (reference-spec 1.2 is tested in test_config).
  EXPECT_EQ(normalize_before, norm == Norm::pre_ln || norm == Norm::subln);
  EXPECT_EQ(cfg.deepnorm, norm == Norm::deepnorm);
  EXPECT_EQ(cfg.subln, norm == Norm::subln);
}

// Width 64 and three layers (not the tiny_config of common/tiny_stacks.h) make the pooled groups
// large enough for tight statistics. Both stacks have a relative position bias, learned
// positions and an output projection, so every kind of parameter is drawn.
template <typename Config>
Config stack_config(int64_t layers, bool bert_init) {
  Config cfg;
  cfg.embed_dim = kDim;
  cfg.attention_heads = kHeads;
  cfg.ffn_embed_dim = kFfn;
  cfg.layers = layers;
  cfg.vocab_size = kVocab;
  cfg.padding_idx = kPad;
  cfg.max_positions = 32;
  cfg.rel_pos_buckets = 16;
  cfg.max_rel_pos = 32;
  cfg.bert_init = bert_init;
  return cfg;
}

// The encoder-only stack is multiway (BEiT-3): every expert copy is scaled too.
Stack build_stack(const StackCase& c, uint64_t seed) {
  Generator gen(seed);
  Stack s;
  if (is_encoder(c.role)) {
    auto cfg = stack_config<nn::EncoderConfig>(kEncoderLayers, c.bert_init);
    cfg.multiway = c.role == StackRole::encoder_only;
    set_norm(cfg, cfg.normalize_before, c.norm);
    const int64_t other = c.role == StackRole::encdec_encoder ? kDecoderLayers : 0;
    auto enc = std::make_unique<models::Encoder>(cfg, gen, models::StackOptions{c.role, other, nullptr});
    s.scaled_names = enc->scaled_parameter_names();
    for (auto& l : enc->layers) s.alphas.push_back(l->options.alpha);
    s.module = std::move(enc);
  } else {
    auto cfg = stack_config<nn::DecoderConfig>(kDecoderLayers, c.bert_init);
    set_norm(cfg, cfg.normalize_before, c.norm);
    const int64_t other = c.role == StackRole::encdec_decoder ? kEncoderLayers : 0;
    auto dec = std::make_unique<models::Decoder>(cfg, gen, models::StackOptions{c.role, other, nullptr});
    s.scaled_names = dec->scaled_parameter_names();
    for (auto& l : dec->layers) s.alphas.push_back(l->options.alpha);
    s.module = std::move(dec);
  }
  return s;
}

std::vector<StackCase> all_cases(const std::vector<Norm>& norms) {
  std::vector<StackCase> out;
  for (StackRole r : {StackRole::encoder_only, StackRole::decoder_only, StackRole::encdec_encoder,
                      StackRole::encdec_decoder})
    for (Norm n : norms)
      for (bool bert : {false, true}) out.push_back({r, n, bert});
  return out;
}

// ------------------------------------------------------------------ exact scaling factors

class InitScaling : public ::testing::TestWithParam<StackCase> {};

// The scaled stack against its unscaled twin from the same seed (DeepNorm vs Post-LN, SubLN vs
// Pre-LN: the same draws in the same order, the norms draw nothing). Each listed parameter is
// the twin's times the formula's factor, to f32 rounding of the product; every other parameter
// is bit-identical. So a scaling that is missing, uses another formula (α instead of
// init_scale, a decoder-only γ in an enc-dec decoder) or touches other parameters fails.
TEST_P(InitScaling, ListedParametersCarryExactlyTheFormulasFactor) {
  const StackCase c = GetParam();
  const Norm twin_norm = c.norm == Norm::deepnorm ? Norm::post_ln : Norm::pre_ln;
  const Stack a = build_stack(c, 7), b = build_stack({c.role, twin_norm, c.bert_init}, 7);
  const double factor = spec_factor(c.role, c.norm);
  ASSERT_GT(std::fabs(factor - 1.0), 0.01) << "the case must be able to tell scaled from not";
  const TensorMap twin = b.module->state_dict();

  std::set<std::string> want_scaled;
  for (const auto& [name, t] : a.module->named_parameters()) {
    const ParamName p = parse_name(name);
    auto it = twin.find(name);
    if (it == twin.end()) {
      // SubLN's inner LayerNorms exist only in the scaled stack; InitDistribution checks them.
      EXPECT_TRUE(c.norm == Norm::subln &&
                  (p.owner == "inner_attn_ln" || p.owner == "ffn_layernorm"))
          << name << " has no twin";
      continue;
    }
    const bool scaled = spec_is_scaled(p, c.role, c.norm);
    if (scaled) want_scaled.insert(name);
    const std::vector<double> got = t.to_vector<double>(), base = it->second.to_vector<double>();
    ASSERT_EQ(got.size(), base.size()) << name;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      // The product is rounded to f32 once, and the factor perhaps too: a few 2^-24 relative.
      const double want = scaled ? base[i] * factor : base[i];
      const double tol = scaled ? 1e-6 * std::fabs(want) : 0.0;
      if (!(std::fabs(got[i] - want) <= tol) && bad++ == 0) first = i;
    }
    if (bad > 0)
      ADD_FAILURE() << name << ": " << bad << " of " << got.size() << " elements differ; [" << first
                    << "] = " << got[first] << ", want "
                    << (scaled ? base[first] * factor : base[first])
                    << (scaled ? " (the twin's times " : " (the twin's, unscaled; factor ")
                    << factor << ")";
  }
  // The per-layer counts: v_proj, out_proj, fc1, fc2, each weight + bias, per expert; the
  // enc-dec decoder's cross-attention adds v_proj and out_proj unless SubLN skips them.
  const size_t layers = is_encoder(c.role) ? kEncoderLayers : kDecoderLayers;
  const size_t experts = c.role == StackRole::encoder_only ? 2 : 1;
  const size_t cross = c.role == StackRole::encdec_decoder && c.norm == Norm::deepnorm ? 4 : 0;
  EXPECT_EQ(want_scaled.size(), layers * (8 * experts + cross));
  const std::set<std::string> reported(a.scaled_names.begin(), a.scaled_names.end());
  EXPECT_EQ(reported, want_scaled);
  EXPECT_TRUE(b.scaled_names.empty());
}

INSTANTIATE_TEST_SUITE_P(Stacks, InitScaling,
                         ::testing::ValuesIn(all_cases({Norm::deepnorm, Norm::subln})),
                         [](const auto& i) { return case_name(i.param); });

// The residual multiplier of every layer: α under DeepNorm, else 1.
TEST(InitScaling, DeepNormResidualAlphaOfEveryRole) {
  for (const StackCase& c : all_cases({Norm::pre_ln, Norm::post_ln, Norm::deepnorm, Norm::subln})) {
    if (c.bert_init) continue;
    const Stack s = build_stack(c, 1);
    const double want = c.norm == Norm::deepnorm ? spec_deepnorm_alpha(c.role) : 1.0;
    ASSERT_FALSE(s.alphas.empty());
    for (double a : s.alphas) EXPECT_NEAR(a, want, 1e-12 * want) << case_name(c);
  }
}

// ------------------------------------------------------------------ init distributions

struct Dist {
  enum Kind { constant, uniform, normal } kind;
  double value;  // the constant, the uniform bound (U(-b, b)) or the normal std (mean 0)
};

// Where every parameter is drawn from before scaling (reference-spec 1.3, 1.4): torch.nn.Linear
// (U(±1/sqrt(in)) weight and bias), TorchScale's MultiheadAttention (xavier-uniform q/k/v with
// gain 1/sqrt(2), out_proj xavier-uniform with a zero bias), TextEmbedding and the output
// projection N(0, d^-0.5), nn.Embedding N(0, 1) for learned positions and the relative bias,
// LayerNorm 1 / 0; with bert_init every Linear and Embedding N(0, 0.02) with zero biases.
bool base_dist(const ParamName& p, bool bert, Dist* out) {
  const double d = kDim, ffn = kFfn;
  const bool weight = p.leaf == "weight";
  const std::set<std::string> norms = {"self_attn_layer_norm", "encoder_attn_layer_norm",
                                       "final_layer_norm",     "inner_attn_ln",
                                       "ffn_layernorm",        "layer_norm",
                                       "layernorm_embedding"};
  const std::set<std::string> attention = {"q_proj", "k_proj", "v_proj", "out_proj"};
  const std::set<std::string> tables = {"embed_tokens", "embed_positions",
                                        "relative_attention_bias"};
  if (norms.count(p.owner)) {
    *out = {Dist::constant, weight ? 1.0 : 0.0};
  } else if (bert && (attention.count(p.owner) || p.owner == "fc1" || p.owner == "fc2" ||
                      p.owner == "output_projection" || tables.count(p.owner))) {
    *out = weight ? Dist{Dist::normal, 0.02} : Dist{Dist::constant, 0.0};
  } else if (p.owner == "out_proj") {
    *out = weight ? Dist{Dist::uniform, std::sqrt(6.0 / (d + d))} : Dist{Dist::constant, 0.0};
  } else if (attention.count(p.owner)) {
    *out = weight ? Dist{Dist::uniform, std::sqrt(6.0 / (d + d)) / std::sqrt(2.0)}
                  : Dist{Dist::uniform, 1.0 / std::sqrt(d)};
  } else if (p.owner == "fc1") {
    *out = {Dist::uniform, 1.0 / std::sqrt(d)};
  } else if (p.owner == "fc2") {
    *out = {Dist::uniform, 1.0 / std::sqrt(ffn)};
  } else if (p.owner == "embed_tokens" || p.owner == "output_projection") {
    *out = {Dist::normal, 1.0 / std::sqrt(d)};
  } else if (p.owner == "embed_positions" || p.owner == "relative_attention_bias") {
    *out = {Dist::normal, 1.0};
  } else {
    return false;
  }
  return true;
}

// Tolerances are five standard errors of each estimate, so a correct init fails for about one
// seed in a million (the seeds here are fixed, so the outcome is deterministic): the mean of n
// draws has standard error σ/√n; the sample std has relative standard error √(1/(2n)) for a
// normal and √(0.2/n) for a uniform (from the fourth moments, 3σ⁴ and 1.8σ⁴). For U(-b, b) the
// largest |x| must also reach b(1 - 14/n): all n draws miss that band with probability
// (1 - 14/n)^n < e^-14. That pins the bound, hence any scale factor, to about 14/n.
void expect_drawn_from(const std::vector<double>& v, const Dist& d, const std::string& what) {
  const double n = static_cast<double>(v.size());
  ASSERT_GT(v.size(), 0u) << what;
  if (d.kind == Dist::constant) {
    for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], d.value) << what << "[" << i << "]";
    return;
  }
  double sum = 0, sum2 = 0, max_abs = 0;
  for (double x : v) sum += x, sum2 += x * x, max_abs = std::max(max_abs, std::fabs(x));
  const double mean = sum / n, std = std::sqrt(sum2 / n - mean * mean);
  const double sigma = d.kind == Dist::uniform ? d.value / std::sqrt(3.0) : d.value;
  const double rel_se = d.kind == Dist::uniform ? std::sqrt(0.2 / n) : std::sqrt(0.5 / n);
  EXPECT_NEAR(mean, 0.0, 5.0 * sigma / std::sqrt(n)) << what << " (" << v.size() << " draws)";
  EXPECT_NEAR(std, sigma, 5.0 * rel_se * sigma) << what << " (" << v.size() << " draws)";
  if (d.kind == Dist::uniform) {
    EXPECT_LE(max_abs, d.value * (1.0 + 1e-6)) << what << ": outside U(-b, b), b = " << d.value;
    EXPECT_GE(max_abs, d.value * (1.0 - 14.0 / n)) << what << ": bound b = " << d.value;
  }
}

class InitDistribution : public ::testing::TestWithParam<StackCase> {};

// Every parameter of a fresh stack, pooled over layers and experts, against the distribution it
// must come from, times the formula's factor where scaled (so the absolute scale is checked,
// not only the ratio to a twin). An unknown parameter name fails: a new parameter needs its
// distribution written down here.
TEST_P(InitDistribution, EveryParameterMatchesItsInitTimesTheFactor) {
  const StackCase c = GetParam();
  const Stack s = build_stack(c, 11);
  const double factor = spec_factor(c.role, c.norm);
  std::map<std::string, std::vector<double>> pooled;
  std::map<std::string, Dist> dists;
  for (const auto& [name, t] : s.module->named_parameters()) {
    const ParamName p = parse_name(name);
    Dist d{};
    if (!base_dist(p, c.bert_init, &d)) {
      ADD_FAILURE() << "no init rule for " << name;
      continue;
    }
    if (spec_is_scaled(p, c.role, c.norm)) d.value *= factor;
    std::vector<double> v = t.to_vector<double>();
    if (p.owner == "embed_tokens") {  // the pad row is zero; the others are drawn
      const auto row = v.begin() + kPad * kDim;
      for (auto it = row; it != row + kDim; ++it) EXPECT_EQ(*it, 0.0) << name << " pad row";
      v.erase(row, row + kDim);
    }
    auto [it, fresh] = dists.emplace(p.group, d);
    ASSERT_TRUE(fresh || (it->second.kind == d.kind && it->second.value == d.value)) << name;
    pooled[p.group].insert(pooled[p.group].end(), v.begin(), v.end());
  }
  // The groups every stack must have, so that a renamed parameter cannot escape the check.
  EXPECT_TRUE(pooled.count("embed_tokens.weight"));
  EXPECT_TRUE(pooled.count("output_projection.weight"));
  EXPECT_TRUE(pooled.count(is_encoder(c.role)
                               ? "relative_position.relative_attention_bias.weight"
                               : "self_attn_relative_position.relative_attention_bias.weight"));
  const std::string expert = c.role == StackRole::encoder_only ? ".*" : "";
  EXPECT_TRUE(pooled.count("layers.*.self_attn.v_proj" + expert + ".weight"));
  EXPECT_TRUE(pooled.count("layers.*.ffn" + expert + ".fc1.weight"));
  EXPECT_EQ(pooled.count("layers.*.encoder_attn.v_proj.weight"),
            c.role == StackRole::encdec_decoder ? 1u : 0u);
  for (const auto& [group, v] : pooled) expect_drawn_from(v, dists.at(group), group);
}

INSTANTIATE_TEST_SUITE_P(Stacks, InitDistribution,
                         ::testing::ValuesIn(all_cases({Norm::pre_ln, Norm::post_ln, Norm::deepnorm,
                                                        Norm::subln})),
                         [](const auto& i) { return case_name(i.param); });

}  // namespace
