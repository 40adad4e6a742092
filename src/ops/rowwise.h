// Internal: vectorized row reductions shared by the row-wise kernels (softmax, norms, loss).
// Reductions keep several vectors of partial results (no serial dependency chain through one
// accumulator) and add them up in a tree at the end. The order depends only on n, so results are
// the same on every thread and for every thread count (D7). Elements 0..n-1 are visited once
// each, so f may also store or accumulate at i.
#pragma once
#include <cstdint>
#include <limits>

namespace metalm::ops::rowwise {

template <typename T>
constexpr int kLanes = 64 / static_cast<int>(sizeof(T));  // elements per 512-bit vector

template <typename T, int W>
inline T tree_sum(T* acc) {
#pragma GCC unroll 8
  for (int w = W / 2; w > 0; w /= 2) {
#pragma omp simd
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

// sum_{i < n} f(i)
template <typename T, typename F>
inline T lane_sum(int64_t n, F f) {
  constexpr int V = kLanes<T>, W = 4 * V;
  alignas(64) T acc[W] = {};
  int64_t i = 0;
  for (; i + W <= n; i += W) {
#pragma omp simd
    for (int l = 0; l < W; ++l) acc[l] += f(i + l);
  }
  for (; i + V <= n; i += V) {
#pragma omp simd
    for (int l = 0; l < V; ++l) acc[l] += f(i + l);
  }
  T s = tree_sum<T, W>(acc);
  for (; i < n; ++i) s += f(i);
  return s;
}

// max_{i < n} x[i] (NaNs skipped; they propagate through exp(x - max)), and with SUM also
// sum_{i < n} x[i], in one pass.
template <typename T, bool SUM>
inline T row_max(const T* x, int64_t n, T* sum) {
  constexpr int V = kLanes<T>, W = 2 * V;
  alignas(64) T m[W], s[W] = {};
  for (int l = 0; l < W; ++l) m[l] = -std::numeric_limits<T>::infinity();
  int64_t i = 0;
  for (; i + W <= n; i += W) {
#pragma omp simd
    for (int l = 0; l < W; ++l) {
      m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
      if constexpr (SUM) s[l] += x[i + l];
    }
  }
  for (; i + V <= n; i += V) {
#pragma omp simd
    for (int l = 0; l < V; ++l) {
      m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
      if constexpr (SUM) s[l] += x[i + l];
    }
  }
#pragma GCC unroll 8
  for (int w = W / 2; w > 0; w /= 2) {
#pragma omp simd
    for (int l = 0; l < w; ++l) m[l] = m[l + w] > m[l] ? m[l + w] : m[l];
  }
  T mx = m[0];
  T sx = SUM ? tree_sum<T, W>(s) : T(0);
  for (; i < n; ++i) {
    mx = x[i] > mx ? x[i] : mx;
    if constexpr (SUM) sx += x[i];
  }
  if constexpr (SUM) *sum = sx;
  return mx;
}

// Two sums at once: f(i, a, b) adds its terms to a and b.
template <typename T, typename F>
inline void lane_sum2(int64_t n, F f, T& sum_a, T& sum_b) {
  constexpr int V = kLanes<T>, W = 2 * V;
  alignas(64) T a[W] = {}, b[W] = {};
  int64_t i = 0;
  for (; i + W <= n; i += W) {
#pragma omp simd
    for (int l = 0; l < W; ++l) f(i + l, a[l], b[l]);
  }
  for (; i + V <= n; i += V) {
#pragma omp simd
    for (int l = 0; l < V; ++l) f(i + l, a[l], b[l]);
  }
  sum_a = tree_sum<T, W>(a);
  sum_b = tree_sum<T, W>(b);
  for (; i < n; ++i) f(i, sum_a, sum_b);
}

}  // namespace metalm::ops::rowwise
