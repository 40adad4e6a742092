// TorchScale's MultiheadAttention on top of the one attention op (D5), with multiway
// projections, SubLN's inner LayerNorm, xPos, relative-position bias and a preallocated KV cache.
// Names: "q_proj", "k_proj", "v_proj", "out_proj" (".A"/".B" with multiway), "inner_attn_ln",
// "xpos".
#pragma once
#include "metalm/nn/kv_cache.h"
#include "metalm/nn/layers.h"
#include "metalm/nn/multiway.h"
#include "metalm/nn/positions.h"
#include "metalm/ops/attention.h"

namespace metalm::nn {

struct MultiheadAttentionOptions {
  int64_t embed_dim = 0;
  int64_t num_heads = 0;
  int64_t kdim = 0, vdim = 0;  // key/value input widths (0 = embed_dim)
  bool self_attention = true;
  bool subln = false;         // inner_attn_ln (self-attention only, spec 1.3)
  int experts = 1;            // 1, or 2 for multiway A/B projections
  double dropout = 0.0;       // attention-probability dropout, in training (ops::AttentionDropout)
  double layernorm_eps = 1e-5;
  bool xpos = false;          // xPos on q and k (self-attention only, spec 5.1)
  int64_t xpos_scale_base = 512;
};

// Everything that varies per call.
struct AttentionInputs {
  Route route;  // multiway expert routing
  // Which keys each query sees, with the relative bias (null: every key, no bias). Built once
  // per call by the stack and shared by its layers; with a self-attention cache, its q_offset
  // and key-side tensors cover the cached keys plus the new ones.
  const ops::AttentionMask* mask = nullptr;
  // Self-attention: the incremental state (new keys/values are appended). Cross-attention: the
  // static keys/values of key_value: filled from it when empty, then used instead of it.
  KVCache* cache = nullptr;
};

class MultiheadAttention : public Module {
 public:
  // TorchScale init: xavier_uniform q/k/v with gain 1/sqrt(2), out_proj xavier_uniform, biases of
  // q/k/v as torch.nn.Linear, out_proj bias 0.
  MultiheadAttention(const MultiheadAttentionOptions& options, Generator& gen);

  // query: [B, Tq, d]; key_value: [B, Tk, kdim] for cross-attention, undefined for self-attention.
  // With a cache, the new keys/values are appended first and queries sit at positions
  // cache_length_before .. + Tq - 1 (xPos rotates them from there; the mask's q_offset must say
  // the same). For cross-attention the cache holds key_value's projected keys/values.
  Tensor forward(const Tensor& query, const Tensor& key_value, const AttentionInputs& in);

  MultiheadAttentionOptions options;
  Experts<Linear> q_proj, k_proj, v_proj, out_proj;
  Experts<LayerNorm> inner_attn_ln;  // undefined unless subln and self-attention
  std::shared_ptr<XPos> xpos;        // null unless options.xpos
  int64_t head_dim = 0;

 private:
  Generator& dropout_gen_;  // the module's own draws for probability dropout (D7)
};

}  // namespace metalm::nn
