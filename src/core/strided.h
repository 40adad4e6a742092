// Internal: iterate N strided operands of one shape row by row (the last, merged dimension).
// Adjacent dims that are contiguous for every operand are merged first, so a contiguous tensor is
// one long row. Rows are split over the OpenMP pool when the total is large.
#pragma once
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "metalm/core/tensor.h"

namespace metalm::detail {

template <size_t N>
struct RowPlan {
  Shape shape;                       // merged shape (at least 1 dim)
  std::array<Shape, N> strides;      // merged strides per operand
};

template <size_t N>
RowPlan<N> plan_rows(const Shape& shape, const std::array<const Shape*, N>& strides) {
  RowPlan<N> p;
  const int64_t nd = static_cast<int64_t>(shape.size());
  for (int64_t d = 0; d < nd; ++d) {
    if (shape[d] == 1) continue;  // size-1 dims do not move any pointer
    bool merge = !p.shape.empty();
    for (size_t k = 0; merge && k < N; ++k)
      merge = p.strides[k].back() == (*strides[k])[d] * shape[d];
    if (merge) {
      p.shape.back() *= shape[d];
      for (size_t k = 0; k < N; ++k) p.strides[k].back() = (*strides[k])[d];
    } else {
      p.shape.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) p.strides[k].push_back((*strides[k])[d]);
    }
  }
  if (p.shape.empty()) {
    p.shape.push_back(1);
    for (size_t k = 0; k < N; ++k) p.strides[k].push_back(0);
  }
  return p;
}

// fn(offsets, n, inner_strides): process n elements of one row; offsets are element offsets
// relative to each operand's first element. Parallel when numel >= grain.
template <size_t N, typename F>
void for_each_row(const Shape& shape, const std::array<const Shape*, N>& strides, F&& fn,
                  int64_t grain = 1 << 15) {
  RowPlan<N> p = plan_rows<N>(shape, strides);
  const int64_t nd = static_cast<int64_t>(p.shape.size());
  const int64_t inner = p.shape[nd - 1];
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < nd; ++d) rows *= p.shape[d];
  if (rows * inner == 0) return;
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = p.strides[k][nd - 1];
  auto row_offsets = [&](int64_t r) {
    std::array<int64_t, N> off{};
    for (int64_t d = nd - 2; d >= 0; --d) {
      int64_t i = r % p.shape[d];
      r /= p.shape[d];
      for (size_t k = 0; k < N; ++k) off[k] += i * p.strides[k][d];
    }
    return off;
  };
  if (rows * inner >= grain && rows > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) fn(row_offsets(r), inner, inner_strides);
  } else if (rows == 1 && inner >= grain && !omp_in_parallel()) {
    // One long row: split it into chunks.
    const int64_t chunk = 1 << 14;
    const int64_t nchunks = (inner + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunks; ++c) {
      std::array<int64_t, N> off;
      for (size_t k = 0; k < N; ++k) off[k] = c * chunk * inner_strides[k];
      int64_t n = std::min(chunk, inner - c * chunk);
      fn(off, n, inner_strides);
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) fn(row_offsets(r), inner, inner_strides);
  }
}

}  // namespace metalm::detail
