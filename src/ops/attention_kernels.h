// Internal: the register-blocked tile product behind the attention kernels (attention.cpp).
// Hand-written because the tiles are at most 64 x 64 and live in L1/L2: a oneDNN call per tile
// would cost more than the tile, and oneDNN must not run inside our OpenMP regions (DESIGN D6).
// The accumulators are GCC/Clang vector-extension values, not a plain 2-D array: with the array,
// whether GCC 12 keeps it in registers depends on the inlining context (in one it fell back to a
// load + FMA + store per element, 8x slower); vector values in fully unrolled loops reliably
// become R x NV registers, one broadcast + NV FMAs per (row, k).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

namespace metalm::ops::attn {

#if defined(__AVX512F__)
inline constexpr int kVecBytes = 64;
#else
inline constexpr int kVecBytes = 32;
#endif

// Elements per SIMD register. Buffers whose rows feed the kernel as B or C are padded to it.
template <typename T>
inline constexpr int64_t kVec = kVecBytes / static_cast<int64_t>(sizeof(T));

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// One SIMD register of T.
template <typename T>
struct VecOf {
  typedef T type __attribute__((vector_size(kVecBytes)));
};

// c: [R, NV * kVec] (row stride ldc) = or += a: [R, K] . b: [K, NV * kVec] (row stride ldb).
// a(r, k) = a[r * a_rs + k * a_cs]: one scalar is broadcast at a time, so a may be transposed.
// The R x NV accumulators stay in registers across the whole k loop.
template <typename T, int R, int NV>
inline void micro_kernel(int64_t K, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                         int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  using V = typename VecOf<T>::type;
  constexpr int64_t W = kVec<T>;
  V acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      if (accumulate)
        std::memcpy(&acc[r][v], c + r * ldc + v * W, sizeof(V));  // unaligned vector load
      else
        acc[r][v] = V{};
    }
  for (int64_t k = 0; k < K; ++k) {
    V bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + k * ldb + v * W, sizeof(V));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const T av = a[r * a_rs + k * a_cs];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] += av * bv[v];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) std::memcpy(c + r * ldc + v * W, &acc[r][v], sizeof(V));
}

// All M rows of one column panel of NV vectors: blocks of 4 rows, then single rows.
template <typename T, int NV>
inline void panel_rows(int64_t M, int64_t K, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                       int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  int64_t r = 0;
  for (; r + 4 <= M; r += 4)
    micro_kernel<T, 4, NV>(K, a + r * a_rs, a_rs, a_cs, b, ldb, c + r * ldc, ldc, accumulate);
  for (; r < M; ++r)
    micro_kernel<T, 1, NV>(K, a + r * a_rs, a_rs, a_cs, b, ldb, c + r * ldc, ldc, accumulate);
}

// c: [M, N] = or += a: [M, K] . b: [K, N], N a multiple of kVec<T> (pad the buffers).
// Column panels of up to 4 vectors: 4 rows x 4 vectors = 16 accumulators, 4 loads of b and
// 4 broadcasts of a per 16 FMAs.
template <typename T>
void tile_gemm(int64_t M, int64_t N, int64_t K, const T* a, int64_t a_rs, int64_t a_cs,
               const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  constexpr int64_t V = kVec<T>;
  for (int64_t n0 = 0; n0 < N; n0 += 4 * V) {
    const T* bp = b + n0;
    T* cp = c + n0;
    switch (std::min<int64_t>(4, (N - n0) / V)) {
      case 4: panel_rows<T, 4>(M, K, a, a_rs, a_cs, bp, ldb, cp, ldc, accumulate); break;
      case 3: panel_rows<T, 3>(M, K, a, a_rs, a_cs, bp, ldb, cp, ldc, accumulate); break;
      case 2: panel_rows<T, 2>(M, K, a, a_rs, a_cs, bp, ldb, cp, ldc, accumulate); break;
      default: panel_rows<T, 1>(M, K, a, a_rs, a_cs, bp, ldb, cp, ldc, accumulate); break;
    }
  }
}

}  // namespace metalm::ops::attn
