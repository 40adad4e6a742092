// Lookups and row scatter: embedding, gather_rows, scatter_rows (the docking primitive).
#pragma once
#include "metalm/core/tensor.h"

namespace metalm::ops {

// weight: [V, C], ids: i64 [...] -> [..., C]. Rows equal to padding_idx get no gradient
// (padding_idx < 0: none). Out-of-range ids throw. A bf16 weight (stored so for inference,
// nn::store_weights) gives f32 rows, widened exactly.
Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx = -1);

// x: [N, ...], index: i64 [M] -> [M, ...] (rows x[index[i]]; rows may repeat).
Tensor gather_rows(const Tensor& x, const Tensor& index);

// Overwrites rows: out = x with out[index[i]] = src[i]. x: [N, C], index: i64 [M] (distinct),
// src: [M, C]. Gradients: x gets g with the overwritten rows zeroed, src gets g[index].
Tensor scatter_rows(const Tensor& x, const Tensor& index, const Tensor& src);

// Docking form: x: [B, T, C], mask: u8 [B, T]; the rows where mask != 0, in row-major order,
// are replaced by the rows of src: [count(mask), C].
Tensor masked_scatter_rows(const Tensor& x, const Tensor& mask, const Tensor& src);

// Row indices (i64 [count]) of the nonzero entries of a u8 mask, flattened row-major.
Tensor mask_to_index(const Tensor& mask);

}  // namespace metalm::ops
