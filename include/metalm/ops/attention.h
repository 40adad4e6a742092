// The one attention op (DESIGN D5): softmax(q k^T * scale + mask + bias) v, computed with tiled
// online softmax (no T x T matrix kept); backward recomputes the tiles.
#pragma once
#include "metalm/core/tensor.h"

namespace metalm::ops {

// Which keys a query sees. A query's absolute position is q_offset + i (i = row in q); key j is
// at position j. Decoding with a KV cache holding Tk keys (new ones included): q_offset = Tk - Tq.
enum class AttnMaskKind {
  full,            // every key
  causal,          // keys j <= q_offset + i
  prefix,          // keys j < prefix_len, plus causal (UniLM seq2seq / BEiT-3 captioning)
  segment_causal,  // same segment id and j <= q_offset + i (packed documents)
  segment_full,    // same segment id (block-diagonal bidirectional)
};

// Checked at the call (ValueError): q_offset >= 0, and q_offset + Tq <= Tk for every kind but
// full; prefix_len in [0, Tk] for prefix and 0 for every other kind; segment_ids present exactly
// for the segment kinds. A field set for a kind that ignores it is a caller's mistake, not a no-op.
struct AttentionMask {
  AttnMaskKind kind = AttnMaskKind::full;
  int64_t q_offset = 0;    // absolute position of query row 0
  int64_t prefix_len = 0;  // for AttnMaskKind::prefix
  Tensor key_padding;      // optional u8 [B, Tk], 1 = padded key (never attended)
  Tensor segment_ids;      // i32 [B, Tk] for segment kinds; query i uses segment_ids[q_offset + i]
  Tensor bias;             // optional additive f32/f64 [B or 1, H or 1, Tq, Tk]; differentiable.
                           // Added after masking, so -inf entries hide keys too.
};

// Dropout on the attention probabilities (training; TorchScale drops after the softmax, so rows
// are normalised by their undropped sum). Element (b, h, i, j) of the [B, H, Tq, Tk] probability
// matrix is kept iff Generator::uniform_at(seed, counter + ((b H + h) Tq + i) Tk + j) >= p, and
// kept ones are scaled by 1/(1-p) rounded to the dtype: exactly the mask ops::dropout draws for
// that matrix from a generator at (seed, counter). The caller reserves B H Tq Tk counters.
struct AttentionDropout {
  double p = 0.0;  // in [0, 1); 0 = off
  uint64_t seed = 0;
  uint64_t counter = 0;
};

// q: [B, H, Tq, D], k, v: [B, H, Tk, D] -> [B, H, Tq, D]. scale <= 0 means 1/sqrt(D).
// A query row with no visible key returns zeros (and zero gradients) instead of NaN.
// f32 or f64. Inputs may be strided views: [B, T, H, D] buffers permuted to [B, H, T, D] need no
// contiguous copy, and k, v may be expanded over H (stride 0) for shared key/value heads. The
// output and the input gradients are laid out in their input's memory order (a [B, T, H, D]-
// ordered q gives a [B, T, H, D]-ordered output: permuting back to [B, T, H * D] needs no copy).
// Memory is linear in T: the forward keeps the output and one logsumexp per query row; backward
// recomputes the probabilities tile by tile.
// With dropout, backward regenerates the mask from the counters: nothing of size Tq x Tk is kept.
// Under ops::MatmulPrecision::bf16, an f32 forward that needs no gradient (inference) with more
// than 64 queries runs q k^T and p v on bf16 operands (q scaled, k, v and the probabilities
// rounded to bf16; f32 accumulation and softmax), on AVX512-BF16 builds. Otherwise f32 products.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask = {},
                 double scale = 0.0, const AttentionDropout& dropout = {});

// Plain reference: materializes the full [Tq, Tk] score matrix in f64. Same semantics; the test
// oracle, and what attention() runs under ops::ReferenceGuard.
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionMask& mask = {}, double scale = 0.0,
                           const AttentionDropout& dropout = {});

}  // namespace metalm::ops
