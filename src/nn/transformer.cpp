// Transformer layers (reference-spec 1.3, 2.1-2.2), drop-path and the §1.4 initialisation. The
// stacks live in encoder.cpp and decoder.cpp.
#include <cmath>

#include "metalm/autograd/autograd.h"
#include "metalm/nn/transformer.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/random_ops.h"

namespace metalm::nn {

Tensor drop_path(const Tensor& x, double p, Generator& gen, bool training) {
  MLM_CHECK(p >= 0.0 && p < 1.0, ValueError, "[drop_path] p must be in [0, 1), got ", p);
  if (!training || p == 0.0) return x;
  MLM_CHECK(x.dim() >= 1, ShapeError, "[drop_path] needs a batch dim, got ", x.str());
  // One uniform draw per sample; timm keeps a sample when floor(keep + u) = 1, i.e. u >= p.
  const int64_t B = x.size(0);
  const std::vector<double> u = gen.uniform({B}, 0.0, 1.0, DType::f64).to_vector<double>();
  std::vector<double> m(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) m[b] = u[b] >= p ? 1.0 / (1.0 - p) : 0.0;
  Shape shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = B;
  return x * Tensor::from_vector<double>(shape, m).to(x.dtype());
}

// ------------------------------------------------------------------ options from configs

namespace {

// What every layer of a stack shares, whichever the stack (role checked by the caller).
TransformerLayerOptions stack_layer_options(const StackConfig& cfg, int64_t layer, double alpha) {
  TransformerLayerOptions o;
  o.embed_dim = cfg.embed_dim;
  o.num_heads = cfg.attention_heads;
  o.ffn_dim = cfg.ffn_embed_dim;
  o.activation = cfg.activation_fn;
  o.dropout = cfg.dropout;
  o.attention_dropout = cfg.attention_dropout;
  o.activation_dropout = cfg.activation_dropout;
  o.drop_path = cfg.drop_path_prob(layer);
  o.normalize_before = cfg.normalize_before;
  o.subln = cfg.subln;
  o.alpha = alpha;
  o.layernorm_eps = cfg.layernorm_eps;
  o.xpos = cfg.xpos_rel_pos;
  o.xpos_scale_base = cfg.xpos_scale_base;
  return o;
}

void check_layer(const char* op, const StackConfig& cfg, int64_t layer, bool role_ok,
                 const char* roles) {
  MLM_CHECK(layer >= 0 && layer < cfg.layers, ValueError, "[", op, "] layer ", layer,
            " out of range for ", cfg.layers, " layers");
  MLM_CHECK(role_ok, ValueError, "[", op, "] role must be ", roles);
}

}  // namespace

TransformerLayerOptions encoder_layer_options(const EncoderConfig& cfg, int64_t layer,
                                              StackRole role, int64_t decoder_layers) {
  check_layer("EncoderLayer", cfg, layer,
              role == StackRole::encoder_only || role == StackRole::encdec_encoder,
              "encoder_only or encdec_encoder");
  TransformerLayerOptions o = stack_layer_options(
      cfg, layer, cfg.deepnorm ? deepnorm_alpha(role, cfg.layers, decoder_layers) : 1.0);
  if (cfg.multiway) {
    // Released BEiT-3 ("decoupled"): every LN, projection and the FFN per expert (spec 2.1).
    // Paper / VLMo: shared attention and its LN; per-modality FFN + final LN (spec 2.2).
    o.attn_experts = cfg.multiway_shared_attention ? 1 : 2;
    o.attn_ln_experts = cfg.multiway_shared_attention ? 1 : 2;
    o.ffn_experts = cfg.multiway_vl_layers > 0 && cfg.is_vl_layer(layer) ? 3 : 2;
  }
  o.layer_scale_init = cfg.layer_scale_init;
  return o;
}

TransformerLayerOptions decoder_layer_options(const DecoderConfig& cfg, int64_t layer,
                                              StackRole role, int64_t encoder_layers) {
  check_layer("DecoderLayer", cfg, layer,
              role == StackRole::decoder_only || role == StackRole::encdec_decoder,
              "decoder_only or encdec_decoder");
  TransformerLayerOptions o = stack_layer_options(
      cfg, layer, cfg.deepnorm ? deepnorm_alpha(role, encoder_layers, cfg.layers) : 1.0);
  o.cross_attention = role == StackRole::encdec_decoder;
  // TorchScale's decoder never routes, but its attention modules are still wrapped: they get B
  // copies (unused, all tokens take A) so multiway checkpoints load strictly (spec 2.1).
  if (cfg.multiway) o.attn_experts = 2;
  return o;
}

// ------------------------------------------------------------------ TransformerLayer

TransformerLayer::TransformerLayer(const TransformerLayerOptions& o, Generator& gen)
    : options(o),
      dropout_gen_(register_generator("dropout", Generator::hash(gen.seed(), gen.reserve(1)))),
      drop_path_gen_(register_generator("drop_path", Generator::hash(gen.seed(), gen.reserve(1)))) {
  MLM_CHECK(o.embed_dim > 0 && o.num_heads > 0 && o.ffn_dim > 0, ValueError,
            "[TransformerLayer] embed_dim, num_heads and ffn_dim must be positive");
  MLM_CHECK(o.drop_path >= 0.0 && o.drop_path < 1.0, ValueError,
            "[TransformerLayer] drop_path must be in [0, 1), got ", o.drop_path);
  MLM_CHECK(o.ffn_experts >= 1 && o.ffn_experts <= 3 && o.attn_experts >= 1 &&
                o.attn_experts <= 2 && o.attn_ln_experts >= 1 && o.attn_ln_experts <= 2,
            ValueError, "[TransformerLayer] experts: attention 1-2, FFN 1-3");
  const int64_t d = o.embed_dim;
  auto make_ln = [&] { return std::make_shared<LayerNorm>(d, o.layernorm_eps); };

  // Construction order = TorchScale's (self_attn, self_attn_layer_norm, [encoder_attn,
  // encoder_attn_layer_norm], ffn, final_layer_norm), so equal seeds give equal draws.
  MultiheadAttentionOptions a;
  a.embed_dim = d;
  a.num_heads = o.num_heads;
  a.self_attention = true;
  a.subln = o.subln;
  a.experts = o.attn_experts;
  a.dropout = o.attention_dropout;
  a.layernorm_eps = o.layernorm_eps;
  a.xpos = o.xpos;
  a.xpos_scale_base = o.xpos_scale_base;
  self_attn = register_module("self_attn", std::make_shared<MultiheadAttention>(a, gen));
  self_attn_layer_norm.build(*this, "self_attn_layer_norm", o.attn_ln_experts, make_ln);

  if (o.cross_attention) {
    MultiheadAttentionOptions c = a;
    c.self_attention = false;
    c.xpos = false;  // xPos and inner_attn_ln are self-attention only (spec 1.3, 5.1)
    c.kdim = c.vdim = o.encoder_embed_dim > 0 ? o.encoder_embed_dim : d;
    encoder_attn = register_module("encoder_attn", std::make_shared<MultiheadAttention>(c, gen));
    encoder_attn_layer_norm = register_module("encoder_attn_layer_norm", make_ln());
  }

  FeedForwardOptions f;
  f.embed_dim = d;
  f.ffn_dim = o.ffn_dim;
  f.activation = o.activation;
  f.dropout = o.dropout;
  f.activation_dropout = o.activation_dropout;
  f.subln = o.subln;
  f.layernorm_eps = o.layernorm_eps;
  ffn.build(*this, "ffn", o.ffn_experts,
            [&] { return std::make_shared<FeedForwardNetwork>(f, gen); });
  final_layer_norm.build(*this, "final_layer_norm", o.ffn_experts, make_ln);

  if (o.layer_scale_init > 0.0) {
    gamma_1 = register_parameter("gamma_1", Tensor::full({d}, o.layer_scale_init));
    gamma_2 = register_parameter("gamma_2", Tensor::full({d}, o.layer_scale_init));
  }
}

Tensor TransformerLayer::residual_add(const Tensor& residual, Tensor branch, const Tensor& gamma) {
  if (gamma.defined()) branch = branch * gamma;
  branch = drop_path(branch, options.drop_path, drop_path_gen_, is_training());
  // TorchScale computes residual * alpha + x; alpha = 1 skips a multiply that changes nothing.
  return options.alpha == 1.0 ? residual + branch : residual * options.alpha + branch;
}

Tensor TransformerLayer::forward(const Tensor& x_in, const LayerInputs& in) {
  MLM_CHECK(x_in.dim() == 3 && x_in.size(2) == options.embed_dim, ShapeError,
            "[TransformerLayer] x must be [B, T, ", options.embed_dim, "], got ", x_in.str());
  MLM_CHECK(in.encoder_out.defined() == (encoder_attn != nullptr), ValueError,
            "[TransformerLayer] encoder_out must be given exactly when the layer has "
            "cross-attention (", encoder_attn ? "it has" : "it has not", ")");
  const bool pre = options.normalize_before, train = is_training();
  auto ln = [&](const Experts<LayerNorm>& e, const Tensor& x) {
    return e.apply(x, in.route, [](LayerNorm& l, const Tensor& t) { return l.forward(t); });
  };

  // Self-attention: x: [B, T, d].
  Tensor x = x_in, residual = x_in;
  if (pre) x = ln(self_attn_layer_norm, x);
  x = self_attn->forward(x, Tensor(), {in.route, in.self_mask, in.cache});
  x = ops::dropout(x, options.dropout, dropout_gen_, train);
  x = residual_add(residual, x, gamma_1);
  if (!pre) x = ln(self_attn_layer_norm, x);

  // Cross-attention over encoder_out: [B, S, d_enc]; no mask but the encoder's padding.
  if (encoder_attn) {
    residual = x;
    if (pre) x = encoder_attn_layer_norm->forward(x);
    x = encoder_attn->forward(x, in.encoder_out, {in.route, in.cross_mask, in.cross_cache});
    x = ops::dropout(x, options.dropout, dropout_gen_, train);
    x = residual_add(residual, x, Tensor());
    if (!pre) x = encoder_attn_layer_norm->forward(x);
  }

  // FFN (it applies its own output dropout).
  residual = x;
  if (pre) x = ln(final_layer_norm, x);
  x = ffn.apply(x, in.route, [](FeedForwardNetwork& f, const Tensor& t) { return f.forward(t); });
  x = residual_add(residual, x, gamma_2);
  if (!pre) x = ln(final_layer_norm, x);
  return x;
}

}  // namespace metalm::nn
