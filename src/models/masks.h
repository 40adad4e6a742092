// Internal to the stacks: config validation, the checks of a call's layout (positions, segments,
// padding), the position helpers, and the one self-attention mask every layer of a call reads.
#pragma once
#include "metalm/models/stack.h"
#include "metalm/ops/attention.h"

namespace metalm::models {

// i64 [T]: first, first + 1, ..., first + T - 1.
Tensor contiguous_positions(int64_t T, int64_t first);
// positions + offset as i64 (same shape); a negative position is a ValueError.
Tensor positions_plus(const Tensor& positions, int64_t offset);
// positions / segment_ids / padding are [B, T] of an integer dtype (u8 for padding) when given;
// prefix_len in [0, T] and not with segment_ids. Throws naming the field.
void check_layout(const StackInputs& in, int64_t B, int64_t T);
// The config after nn::validate: stacks validate before their base is built.
template <typename C>
const C& validated(const C& cfg) {
  nn::validate(cfg);
  return cfg;
}

// Segment ids as the attention op reads them (i32), or undefined.
Tensor as_segments(const Tensor& segment_ids);

// The self-attention mask of a call: segment kinds when segment ids are given, the prefix kind
// with a prefix, else causal or full. key_padding and segment_ids cover all Tk keys (cached +
// new); queries sit at q_offset ...
ops::AttentionMask self_attention_mask(bool causal, int64_t prefix_len, int64_t q_offset,
                                       const Tensor& key_padding, const Tensor& segment_ids);
// The same from a call without incremental state.
inline ops::AttentionMask self_attention_mask(const StackInputs& in, bool causal,
                                              int64_t q_offset) {
  return self_attention_mask(causal, in.prefix_len, q_offset, in.padding,
                             as_segments(in.segment_ids));
}

}  // namespace metalm::models
