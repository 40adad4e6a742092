// Pieces the Encoder and Decoder stacks share (encoder.cpp, decoder.cpp): TorchScale's
// TextEmbedding and output-projection initialisation, and the docking overwrite (spec 3.3).
#pragma once
#include <cmath>
#include <memory>

#include "metalm/autograd/autograd.h"
#include "metalm/nn/config.h"
#include "metalm/nn/layers.h"
#include "metalm/nn/positions.h"
#include "metalm/ops/index.h"

namespace metalm::nn::detail {

// TextEmbedding: N(0, d^-0.5) with the pad row zeroed (spec 1.3).
inline std::shared_ptr<Embedding> make_text_embedding(int64_t vocab, int64_t d,
                                                      int64_t padding_idx, Generator& gen) {
  auto e = std::make_shared<Embedding>(vocab, d, padding_idx, gen);
  NoGradGuard ng;
  copy_into(e->weight, gen.normal({vocab, d}, 0.0, 1.0 / std::sqrt(static_cast<double>(d))));
  if (padding_idx >= 0)
    copy_into(e->weight.slice(0, padding_idx, padding_idx + 1), Tensor::zeros({1, d}));
  return e;
}

// Linear(d, vocab, bias=False) with weight N(0, d^-0.5) (spec 1.3).
inline std::shared_ptr<Linear> make_output_projection(int64_t d, int64_t vocab, Generator& gen) {
  auto l = std::make_shared<Linear>(d, vocab, false, gen);
  NoGradGuard ng;
  copy_into(l->weight, gen.normal({vocab, d}, 0.0, 1.0 / std::sqrt(static_cast<double>(d))));
  return l;
}

// The token and position embeddings of a stack, registered on it as "embed_tokens" (the given
// table, or a new TextEmbedding when vocab > 0) and "embed_positions" (learned tables index from
// 2, so they hold max_positions + 2 rows; sinusoidal ones are fixed).
struct StackEmbeddings {
  std::shared_ptr<Embedding> tokens;
  std::shared_ptr<LearnedPositionalEmbedding> learned;
  std::shared_ptr<SinusoidalPositionalEmbedding> sinusoidal;
};

inline StackEmbeddings register_stack_embeddings(Module& stack, const char* op,
                                                 const std::shared_ptr<Embedding>& given,
                                                 int64_t vocab, int64_t d, int64_t padding_idx,
                                                 PositionKind positions, int64_t max_positions,
                                                 Generator& gen) {
  StackEmbeddings e;
  if (given) {
    MLM_CHECK(given->weight.size(1) == d, ShapeError, "[", op, "] embed_tokens width ",
              given->weight.size(1), " != embed_dim ", d);
    e.tokens = stack.register_module("embed_tokens", given);
  } else if (vocab > 0) {
    e.tokens = stack.register_module("embed_tokens", make_text_embedding(vocab, d, padding_idx, gen));
  }
  if (positions == PositionKind::learned)
    e.learned = stack.register_module(
        "embed_positions", std::make_shared<LearnedPositionalEmbedding>(max_positions + 2, d, gen));
  else if (positions == PositionKind::sinusoidal)
    e.sinusoidal = stack.register_module(
        "embed_positions", std::make_shared<SinusoidalPositionalEmbedding>(d, padding_idx));
  return e;
}

// emb: [B, T, d]; mask: u8 [B, T]; features: [count(mask), d]. Overwrites the masked rows in
// row-major order (before embed_scale and positions, spec 3.3 / 9.4); gradients reach features.
inline Tensor dock(const char* op, const Tensor& emb, const Tensor& mask, const Tensor& features) {
  if (!mask.defined() && !features.defined()) return emb;
  MLM_CHECK(mask.defined() && features.defined(), ValueError, "[", op,
            "] dock_mask and dock_features must be given together");
  MLM_CHECK(mask.dim() == 2 && mask.size(0) == emb.size(0) && mask.size(1) == emb.size(1),
            ShapeError, "[", op, "] dock_mask must be [", emb.size(0), ", ", emb.size(1),
            "], got ", mask.str());
  MLM_CHECK(features.dim() == 2 && features.size(1) == emb.size(2), ShapeError, "[", op,
            "] dock_features must be [N, ", emb.size(2), "], got ", features.str());
  return ops::masked_scatter_rows(emb, mask, features.to(emb.dtype()));
}

}  // namespace metalm::nn::detail
