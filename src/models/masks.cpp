// The layout checks and the one mask builder of the stacks.
#include "models/masks.h"

#include <vector>

namespace metalm::models {

Tensor contiguous_positions(int64_t T, int64_t first) {
  std::vector<int64_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[t] = first + t;
  return Tensor::from_vector<int64_t>({T}, pos);
}

Tensor positions_plus(const Tensor& positions, int64_t offset) {
  std::vector<int64_t> p = positions.to_vector<int64_t>();
  for (int64_t& v : p) {
    MLM_CHECK(v >= 0, ValueError, "[stack] positions must be >= 0, got ", v);
    v += offset;
  }
  return Tensor::from_vector<int64_t>(positions.shape(), p);
}

void check_layout(const StackInputs& in, int64_t B, int64_t T) {
  auto check = [&](const Tensor& t, const char* name, bool u8_only) {
    if (!t.defined()) return;
    MLM_CHECK(t.dim() == 2 && t.size(0) == B && t.size(1) == T, ShapeError, "[stack] ", name,
              " must be [", B, ", ", T, "], got ", t.str());
    const DType dt = t.dtype();
    MLM_CHECK(u8_only ? dt == DType::u8 : (dt == DType::i32 || dt == DType::i64), DTypeError,
              "[stack] ", name, " must be ", u8_only ? "u8" : "i32 or i64", ", got ", t.str());
  };
  check(in.positions, "positions", false);
  check(in.segment_ids, "segment_ids", false);
  check(in.padding, "padding", true);
  MLM_CHECK(in.prefix_len >= 0, ValueError, "[stack] prefix_len must be >= 0, got ", in.prefix_len);
  MLM_CHECK(in.prefix_len == 0 || !in.segment_ids.defined(), ValueError,
            "[stack] prefix_len and segment_ids cannot be combined (give each packed example "
            "its own row for a prefix)");
}

Tensor positions_after_padding(const Tensor& padding) {
  MLM_CHECK(padding.defined() && padding.dim() == 2 && padding.dtype() == DType::u8, ValueError,
            "[positions_after_padding] padding must be u8 [B, T], got ",
            padding.defined() ? padding.str() : std::string("undefined"));
  const int64_t B = padding.size(0), T = padding.size(1);
  const std::vector<uint8_t> pad = padding.to_vector<uint8_t>();
  std::vector<int64_t> pos(pad.size());
  for (int64_t b = 0; b < B; ++b) {
    int64_t n = 0;
    for (int64_t t = 0; t < T; ++t) pos[b * T + t] = pad[b * T + t] ? 0 : n++;
  }
  return Tensor::from_vector<int64_t>({B, T}, pos);
}

Tensor as_segments(const Tensor& segment_ids) {
  if (!segment_ids.defined()) return Tensor();
  return segment_ids.dtype() == DType::i32 ? segment_ids : segment_ids.to(DType::i32);
}

ops::AttentionMask self_attention_mask(bool causal, int64_t prefix_len, int64_t q_offset,
                                       const Tensor& key_padding, const Tensor& segment_ids) {
  ops::AttentionMask m;
  if (segment_ids.defined())
    m.kind = causal ? ops::AttnMaskKind::segment_causal : ops::AttnMaskKind::segment_full;
  else if (prefix_len > 0)
    m.kind = ops::AttnMaskKind::prefix;
  else
    m.kind = causal ? ops::AttnMaskKind::causal : ops::AttnMaskKind::full;
  m.q_offset = q_offset;
  m.prefix_len = prefix_len;
  m.key_padding = key_padding;
  m.segment_ids = segment_ids;
  return m;
}

}  // namespace metalm::models
