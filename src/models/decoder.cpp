// TorchScale's Decoder (reference-spec 1.3, 3.3, 5) on the stack core, and the incremental state:
// per-layer KV caches and the per-position layout from which each call's mask is built.
#include <algorithm>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "metalm/models/stack.h"
#include "metalm/ops/index.h"
#include "models/masks.h"

namespace metalm::models {

// ------------------------------------------------------------------ IncrementalState

IncrementalState::IncrementalState(const Decoder& decoder, int64_t batch, int64_t capacity)
    : batch_(batch),
      heads_(decoder.config.attention_heads),
      head_dim_(decoder.config.head_dim()),
      capacity_(capacity) {
  MLM_CHECK(batch > 0 && capacity > 0, ValueError,
            "[IncrementalState] batch and capacity must be positive, got ", batch, " and ",
            capacity);
  caches_.reserve(static_cast<size_t>(decoder.config.layers));
  for (int64_t i = 0; i < decoder.config.layers; ++i)
    caches_.emplace_back(batch, heads_, capacity, head_dim_);
  cross_.resize(caches_.size());
  positions_ = Tensor::zeros({batch, capacity}, DType::i64);
  segments_ = Tensor::zeros({batch, capacity}, DType::i32);
  padding_ = Tensor::zeros({batch, capacity}, DType::u8);
}

nn::KVCache& IncrementalState::cross_layer(size_t i, int64_t source_length) {
  std::unique_ptr<nn::KVCache>& c = cross_.at(i);
  // A filled cache is returned as it is: a source of another length then fails in the attention
  // (the sequence's keys belong to the first source) instead of being mixed in silently.
  if (!c || (c->length() == 0 && c->capacity() < source_length))
    c = std::make_unique<nn::KVCache>(batch_, heads_, std::max<int64_t>(source_length, 1),
                                      head_dim_);
  return *c;
}

void IncrementalState::reset() {
  for (auto& c : caches_) c.reset();
  for (auto& c : cross_)
    if (c) c->reset();
  length_ = 0;
  has_segments_ = has_padding_ = false;
}

void IncrementalState::truncate(int64_t length) {
  MLM_CHECK(length >= 0 && length <= length_, ValueError, "[IncrementalState] cannot truncate ",
            length_, " positions to ", length);
  for (auto& c : caches_) c.truncate(length);
  length_ = length;
}

void IncrementalState::select_rows(const std::vector<int64_t>& rows) {
  MLM_CHECK(!rows.empty(), ValueError, "[IncrementalState] select_rows: no rows");
  for (const int64_t r : rows)
    MLM_CHECK(r >= 0 && r < batch_, ValueError, "[IncrementalState] select_rows: row ", r,
              " out of range [0, ", batch_, ")");
  for (auto& c : caches_) c.select_rows(rows);
  for (auto& c : cross_)
    if (c) c->select_rows(rows);
  const Tensor index = Tensor::from_vector<int64_t>({static_cast<int64_t>(rows.size())}, rows);
  positions_ = ops::gather_rows(positions_, index);
  segments_ = ops::gather_rows(segments_, index);
  padding_ = ops::gather_rows(padding_, index);
  batch_ = static_cast<int64_t>(rows.size());
}

Tensor IncrementalState::append_layout(int64_t T, const Tensor& positions,
                                       const Tensor& segment_ids, const Tensor& padding) {
  MLM_CHECK(length_ + T <= capacity_, ValueError, "[IncrementalState] capacity ", capacity_,
            " exceeded: ", length_, " cached + ", T, " new");
  const int64_t B = batch_, L = length_, C = capacity_;
  int64_t* pos = positions_.data<int64_t>();
  int32_t* seg = segments_.data<int32_t>();
  uint8_t* pad = padding_.data<uint8_t>();
  const std::vector<int64_t> p_in =
      positions.defined() ? positions.to_vector<int64_t>() : std::vector<int64_t>();
  const std::vector<int64_t> s_in =
      segment_ids.defined() ? segment_ids.to_vector<int64_t>() : std::vector<int64_t>();
  const std::vector<int64_t> d_in =
      padding.defined() ? padding.to_vector<int64_t>() : std::vector<int64_t>();
  std::vector<int64_t> out(static_cast<size_t>(B * T));
  for (int64_t b = 0; b < B; ++b) {
    // Defaults continue the row: one past its largest position, its last segment.
    int64_t next = 0;
    for (int64_t j = 0; j < L; ++j) next = std::max(next, pos[b * C + j] + 1);
    const int32_t last_segment = L > 0 ? seg[b * C + L - 1] : 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t, slot = b * C + L + t;
      const int64_t p = p_in.empty() ? next + t : p_in[i];
      MLM_CHECK(p >= 0, ValueError, "[stack] positions must be >= 0, got ", p);
      pos[slot] = out[i] = p;
      seg[slot] = s_in.empty() ? last_segment : static_cast<int32_t>(s_in[i]);
      pad[slot] = d_in.empty() ? 0 : static_cast<uint8_t>(d_in[i] != 0);
    }
  }
  has_segments_ = has_segments_ || segment_ids.defined();
  has_padding_ = has_padding_ || padding.defined();
  length_ += T;
  return Tensor::from_vector<int64_t>({B, T}, out);
}

Tensor IncrementalState::key_padding() const {
  return has_padding_ ? padding_.slice(1, 0, length_) : Tensor();
}
Tensor IncrementalState::segment_ids() const {
  return has_segments_ ? segments_.slice(1, 0, length_) : Tensor();
}

// ------------------------------------------------------------------ Decoder

Decoder::Decoder(const nn::DecoderConfig& cfg, Generator& gen, const StackOptions& st)
    : Stack(validated(cfg), st,
            Parts{1, cfg.has_final_layer_norm(),
                  [&cfg, st](int64_t i) {
                    return nn::decoder_layer_options(cfg, i, st.role, st.other_layers);
                  },
                  "self_attn_relative_position", st.role == nn::StackRole::encdec_decoder,
                  // The enc-dec decoder leaves encoder_attn alone under SubLN (as TorchScale).
                  st.role == nn::StackRole::encdec_decoder},
            gen),
      config(cfg) {
  bind_config(config);
  MLM_CHECK(st.role == nn::StackRole::decoder_only || st.role == nn::StackRole::encdec_decoder,
            ValueError, "[Decoder] role must be decoder_only or encdec_decoder");
}

StackOutput Decoder::run(const StackInputs& in) {
  const bool cross = stack.role == nn::StackRole::encdec_decoder;
  MLM_CHECK(in.encoder_out.defined() == cross, ValueError,
            "[Decoder] encoder_out must be given exactly for an encoder-decoder decoder");
  MLM_CHECK(in.spans.empty(), ValueError,
            "[Decoder] spans dock into a composite model (MetaLM), not into a bare decoder");
  IncrementalState* state = in.state;
  const int64_t start = state ? state->length() : 0;
  const Tensor& ids = in.token_embeddings.defined() ? in.token_embeddings : in.tokens;
  MLM_CHECK(ids.defined(), ValueError, "[Decoder] give tokens or token_embeddings");
  MLM_CHECK(ids.dim() == (in.token_embeddings.defined() ? 3 : 2), ShapeError,
            "[Decoder] give tokens [B, T] or token_embeddings [B, T, d]");
  const int64_t B = ids.size(0), T = ids.size(1);
  check_layout(in, B, T);
  MLM_CHECK(!state || state->batch() == B, ShapeError, "[Decoder] incremental state holds ",
            state ? state->batch() : 0, " rows, the input ", B);

  // The layout of this call: recorded in the state (whose key side then covers the cache), or
  // taken from the inputs as they are.
  ops::AttentionMask mask;
  Tensor positions = in.positions;
  if (state) {
    positions = state->append_layout(T, in.positions, in.segment_ids, in.padding);
    // A prefill without explicit positions takes embed's default rule, so that it equals the
    // full forward (fairseq's pad-aware sinusoidal positions included); the recorded 0 .. T-1
    // continue as fairseq's incremental rule does.
    if (!in.positions.defined() && start == 0) positions = Tensor();
    mask = self_attention_mask(true, in.prefix_len, start, state->key_padding(),
                               as_segments(state->segment_ids()));
  } else {
    mask = self_attention_mask(in, /*causal=*/true, 0);
  }
  Tensor x = embed(in, positions, start);  // [B, T, d]
  const int64_t Tk = start + T;

  // One relative bias for all layers. With a cache the query rows are positions
  // start .. start+T-1 against keys 0 .. start+T-1 (the last rows of the full bias; spec 1.3
  // quirk: TorchScale slices the wrong axis there).
  if (relative_position) mask.bias = relative_position->forward(T, Tk, start);
  ops::AttentionMask cross_mask;
  nn::LayerInputs li;
  li.self_mask = &mask;
  if (cross) {
    cross_mask.key_padding = in.encoder_padding;
    if (cross_attn_relative_position)
      cross_mask.bias = cross_attn_relative_position->forward(T, in.encoder_out.size(1), start);
    li.encoder_out = in.encoder_out;
    li.cross_mask = &cross_mask;
  }
  return run_layers(x, li, in, [&](size_t i, nn::LayerInputs& l) {
    l.cache = state ? &state->layer(i) : nullptr;
    l.cross_cache = state && cross ? &state->cross_layer(i, in.encoder_out.size(1)) : nullptr;
  });
}

}  // namespace metalm::models
