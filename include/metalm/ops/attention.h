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

struct AttentionMask {
  AttnMaskKind kind = AttnMaskKind::full;
  int64_t q_offset = 0;    // absolute position of query row 0
  int64_t prefix_len = 0;  // for AttnMaskKind::prefix
  Tensor key_padding;      // optional u8 [B, Tk], 1 = padded key (never attended)
  Tensor segment_ids;      // i32 [B, Tk] for segment kinds; query i uses segment_ids[q_offset + i]
  Tensor bias;             // optional additive f32/f64 [B or 1, H or 1, Tq, Tk]; differentiable
};

// q: [B, H, Tq, D], k, v: [B, H, Tk, D] -> [B, H, Tq, D]. scale <= 0 means 1/sqrt(D).
// A query row with no visible key returns zeros (and zero gradients) instead of NaN.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask = {},
                 double scale = 0.0);

// Plain reference: materializes the full [Tq, Tk] score matrix. Same semantics.
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionMask& mask = {}, double scale = 0.0);

}  // namespace metalm::ops
