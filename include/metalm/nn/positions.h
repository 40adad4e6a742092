// Position encodings exactly as TorchScale, fairseq and BEiT-3 compute them (reference-spec 1.3,
// 2.3, 5.1-5.4): learned absolute tables, fairseq sinusoidal tables, xPos (on ops::rotary), and
// the T5 relative-position bias. Module and parameter names follow TorchScale/fairseq (D3).
#pragma once
#include <cstdint>
#include <memory>

#include "metalm/core/random.h"
#include "metalm/nn/layers.h"
#include "metalm/nn/module.h"

namespace metalm::nn {

// ------------------------------------------------------------------ learned (spec 1.3, 2.3, 5.4)

// TorchScale's PositionalEmbedding: a learned table read from row `offset` on (fairseq
// convention: with the default offset 2, rows 0 and 1 are never used by default positions).
// BEiT-3 builds one per modality: PositionalEmbedding(P + 1 + 2, d) for CLS + patches and
// PositionalEmbedding(1024, d) for text (spec 2.3). Positions are not affected by padding.
class LearnedPositionalEmbedding : public Module {
 public:
  // weight: [num_positions, dim], N(0, 1) as torch.nn.Embedding (checkpoints overwrite it).
  LearnedPositionalEmbedding(int64_t num_positions, int64_t dim, Generator& gen,
                             int64_t offset = 2);
  // Default positions offset .. offset+length-1 -> [length, dim].
  Tensor forward(int64_t length) const;
  // Explicit positions: i64/i32 [T] -> [T, dim], or [B, T] -> [B, T, dim]. A position outside
  // [0, num_positions) throws ValueError ("[positions] position 1030 >= table size 1026").
  Tensor forward(const Tensor& positions) const;

  Tensor weight;  // [num_positions, dim]
  int64_t offset;
};

// ------------------------------------------------------------------ fairseq sinusoidal (spec 5.3)

// Rows of fairseq's sinusoidal table at the given positions: i64/i32 [...] -> [..., dim].
//   half = dim/2, w_k = exp(-k ln(10000) / (half - 1)), k = 0 .. half-1
//   E[p] = [sin(p w_0) .. sin(p w_{half-1}), cos(p w_0) .. cos(p w_{half-1})]  (halves, not
//   interleaved), plus one zero column when dim is odd (as fairseq), and E[padding_idx] = 0
//   (padding_idx < 0: no zero row). Needs dim >= 4 (half - 1 > 0) and positions >= 0.
// Computed in double and rounded once to `dtype` (f32 or f64); see positions.cpp for how this
// compares with PyTorch's f32 table. Constant: no gradient.
Tensor sinusoidal_embedding(const Tensor& positions, int64_t dim, int64_t padding_idx,
                            DType dtype = DType::f32);
// The table rows 0 .. num_positions-1 -> [num_positions, dim].
Tensor sinusoidal_table(int64_t num_positions, int64_t dim, int64_t padding_idx,
                        DType dtype = DType::f32);
// fairseq make_positions: tokens i64/i32 [B, T] -> i64 [B, T]. A token equal to pad_id gets
// padding_idx; any other token gets padding_idx + (number of non-pad tokens in its row up to and
// including it). With padding_idx 1 the first real token is at position 2, also after left pads.
Tensor make_positions(const Tensor& tokens, int64_t pad_id, int64_t padding_idx);

// fairseq's SinusoidalPositionalEmbedding (the KOSMOS-2 LM, spec 4.1): no trainable weights.
// The pad token id is padding_idx, as in fairseq (the dictionary's pad is 1).
class SinusoidalPositionalEmbedding : public Module {
 public:
  SinusoidalPositionalEmbedding(int64_t dim, int64_t padding_idx = 1, DType dtype = DType::f32);
  // tokens: i64/i32 [B, T] -> [B, T, dim] at make_positions(tokens, padding_idx, padding_idx).
  Tensor forward(const Tensor& tokens) const;
  // Incremental decoding: the row of position padding_idx + current_length (current_length
  // counts the new token; padding is ignored, as in fairseq) -> [1, 1, dim].
  Tensor forward_step(int64_t current_length) const;

  int64_t dim, padding_idx;
  DType dtype;

 private:
  // fairseq registers a 1-element buffer "_float_tensor" (device tracking), so its checkpoints
  // carry "<prefix>.embed_positions._float_tensor"; kept for strict state-dict loading.
  Tensor float_tensor_;
};

// ------------------------------------------------------------------ xPos (spec 5.1)

// floor(-n / 2) as Python's `-(n) // 2`, the first centred position of n positions (n >= 0):
// n = 3 -> -2, n = 4 -> -2, n = 1 -> -1.
int64_t xpos_min_pos(int64_t n);

// The xPos tables with the scale folded in, ready for ops::rotary: [length, head_dim/2] each.
//   zeta_i = (2i + 0.4 D) / (1.4 D),  theta_i = 10000^(-i / (D/2)),  i = 0 .. D/2-1
//   N = length + offset, rows n = offset .. N-1 (the last `length` of 0 .. N-1)
//   scale[n, i] = zeta_i ^ ((xpos_min_pos(N) + n) / scale_base), inverted when downscale
//   cos[n, i] = cos(n theta_i) scale[n, i],  sin[n, i] = sin(n theta_i) scale[n, i]
// Angles use absolute n; only the scale is centred. Computed in double, rounded once to dtype.
struct XPosTables {
  Tensor cos, sin;  // [length, head_dim / 2]
};
XPosTables xpos_tables(int64_t length, int64_t head_dim, int64_t offset, bool downscale,
                       double scale_base = 512, DType dtype = DType::f32);

// xPos on x: [B, H, L, D] (any [..., L, D]; TorchScale's [(B H), L, D] is the same math per row).
// Queries: xpos(q, offset, false); keys: xpos(k, 0, true), where in incremental decoding k is the
// whole cache (S rows) and q has L = 1 with offset S - 1. q and k must cover the same total N
// for the centring to cancel in q . k; then q_m . k_n depends only on m - n (spec "net effect").
// Differentiable in x (ops::rotary). The tables cost D/2 sin, cos and exp per row: a decoder
// should build them once per forward with xpos_tables and share them across layers.
Tensor xpos(const Tensor& x, int64_t offset, bool downscale, double scale_base = 512);

// TorchScale's XPOS module (self_attn.xpos): its only state is the buffer "scale" = zeta [D/2]
// (f32), which TorchScale checkpoints carry as "...self_attn.xpos.scale". The tables are always
// recomputed from head_dim in double; the buffer is there for strict state-dict loading.
class XPos : public Module {
 public:
  explicit XPos(int64_t head_dim, double scale_base = 512);
  // x: [B, H, L, D] -> [B, H, L, D]; see xpos().
  Tensor forward(const Tensor& x, int64_t offset = 0, bool downscale = false) const;

  int64_t head_dim;
  double scale_base;
  Tensor scale;  // buffer [head_dim / 2]
};

// ------------------------------------------------------------------ T5 relative bias (spec 5.2)

// The bidirectional T5 bucket of n = q_pos - k_pos (TorchScale always uses bidirectional=True):
//   nb = num_buckets / 2 (floor); ret = n < 0 ? nb : 0; n = |n|; max_exact = nb / 2
//   n < max_exact: ret + n
//   else: ret + min(nb - 1, max_exact + trunc(ln(n / max_exact) / ln(max_distance / max_exact)
//                                              * (nb - max_exact)))
// The log branch is evaluated in f32 with PyTorch's order of operations, because the bucket is
// a discrete function of it: where the exact value is an integer (e.g. num_buckets 18, n 8 gives
// 1.0), double rounds below and truncates to a different bucket than PyTorch's f32. Needs
// num_buckets >= 4 (max_exact >= 1) and max_distance > max_exact.
int64_t relative_position_bucket(int64_t n, int64_t num_buckets, int64_t max_distance);
// Buckets of query rows step .. step+qlen-1 against keys 0 .. klen-1 -> i64 [qlen, klen].
Tensor relative_position_buckets(int64_t qlen, int64_t klen, int64_t step, int64_t num_buckets,
                                 int64_t max_distance);

// TorchScale's RelativePositionBias: an Embedding(num_buckets, num_heads) named
// "relative_attention_bias" (state-dict key "relative_attention_bias.weight"). Computed once per
// forward and shared by all layers (spec 1.5); the result feeds AttentionMask::bias.
class RelativePositionBias : public Module {
 public:
  RelativePositionBias(int64_t num_buckets, int64_t max_distance, int64_t num_heads,
                       Generator& gen);
  // bias[0, h, i, j] = weight[bucket(step + i - j), h] -> [1, H, qlen, klen] (contiguous;
  // broadcast over the batch by the attention op). Differentiable in the table; its gradient
  // (sums of up to qlen klen / num_buckets values) is accumulated in double.
  Tensor forward(int64_t qlen, int64_t klen, int64_t step = 0) const;
  // Incremental step with klen keys: the LAST QUERY ROW of forward(klen, klen), i.e.
  // forward(1, klen, klen - 1) -> [1, H, 1, klen]. (TorchScale slices the wrong axis here and
  // crashes, spec 1.3 quirk; the kosmos-2 fork takes this row.)
  Tensor forward_step(int64_t klen) const;
  // The same bias in Toeplitz form (it depends on i - j only): u[h, d] with
  // bias[0, h, i, j] = u[h, i - j + klen - 1] -> [H, qlen + klen - 1] (a view), for an attention
  // kernel that reads the diagonals instead of an H T^2 tensor. Differentiable in the table.
  Tensor diagonals(int64_t qlen, int64_t klen, int64_t step = 0) const;

  int64_t num_buckets, max_distance, num_heads;
  std::shared_ptr<Embedding> relative_attention_bias;  // weight [num_buckets, num_heads]
};

}  // namespace metalm::nn
