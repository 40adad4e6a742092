// Pieces the Encoder and Decoder stacks share (encoder.cpp, decoder.cpp): TorchScale's
// TextEmbedding and output-projection initialisation, and the docking overwrite (spec 3.3).
#pragma once
#include <cmath>
#include <memory>

#include "metalm/autograd/autograd.h"
#include "metalm/nn/layers.h"
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
