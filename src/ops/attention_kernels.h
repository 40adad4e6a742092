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
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

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

// The sum of an f32 register's lanes: halves added until one of 4 remains (shuffles: GCC 12
// turns a lane loop, or an `omp simd` reduction's epilogue, into a chain of dependent scalar
// adds through memory).
inline float lane_sum(VecOf<float>::type v) {
  typedef float V4 __attribute__((vector_size(16)));
#if defined(__AVX512F__)
  typedef float V8 __attribute__((vector_size(32)));
  const V8 h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
               __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
#else
  const VecOf<float>::type h = v;
#endif
  const V4 q = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
  return (q[0] + q[2]) + (q[1] + q[3]);
}

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

// ---------------------------------------------------------------- bf16 operands (AVX512-BF16)
//
// The same tile product with bf16 operands and f32 accumulators, on vdpbf16ps: each instruction
// multiplies 16 pairs of bf16 (two consecutive k) and adds both products to 16 f32 lanes.
// Layouts: a: [M, K] row-major bf16 (row stride lda, K even: a pair is one 32-bit broadcast);
// b in "pair" (VNNI) layout: element (k, n) at b[(k / 2) * ldb + 2 n + k % 2], so one 64-byte
// load holds 16 columns of two consecutive k. K must be even (pad with zero pairs).
#if defined(__AVX512BF16__)
inline constexpr bool kHaveBf16Dot = true;

template <int R, int NV>
inline void micro_kernel_bf16(int64_t K, const uint16_t* a, int64_t lda, const uint16_t* b,
                              int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  __m512 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      acc[r][v] = accumulate ? _mm512_loadu_ps(c + r * ldc + v * 16) : _mm512_setzero_ps();
  for (int64_t k2 = 0; k2 < K / 2; ++k2) {
    __m512bh bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      bv[v] = (__m512bh)_mm512_loadu_si512(b + k2 * ldb + v * 32);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * k2, 4);
      const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + r * ldc + v * 16, acc[r][v]);
}

template <int NV>
inline void panel_rows_bf16(int64_t M, int64_t K, const uint16_t* a, int64_t lda,
                            const uint16_t* b, int64_t ldb, float* c, int64_t ldc,
                            bool accumulate) {
  int64_t r = 0;
  for (; r + 4 <= M; r += 4)
    micro_kernel_bf16<4, NV>(K, a + r * lda, lda, b, ldb, c + r * ldc, ldc, accumulate);
  for (; r < M; ++r)
    micro_kernel_bf16<1, NV>(K, a + r * lda, lda, b, ldb, c + r * ldc, ldc, accumulate);
}

// c: [M, N] f32 = or += a: [M, K] bf16 . b: [K, N] bf16 pair layout; N a multiple of 16.
inline void tile_gemm_bf16(int64_t M, int64_t N, int64_t K, const uint16_t* a, int64_t lda,
                           const uint16_t* b, int64_t ldb, float* c, int64_t ldc,
                           bool accumulate) {
  for (int64_t n0 = 0; n0 < N; n0 += 64) {
    const uint16_t* bp = b + 2 * n0;
    float* cp = c + n0;
    switch (std::min<int64_t>(4, (N - n0) / 16)) {
      case 4: panel_rows_bf16<4>(M, K, a, lda, bp, ldb, cp, ldc, accumulate); break;
      case 3: panel_rows_bf16<3>(M, K, a, lda, bp, ldb, cp, ldc, accumulate); break;
      case 2: panel_rows_bf16<2>(M, K, a, lda, bp, ldb, cp, ldc, accumulate); break;
      default: panel_rows_bf16<1>(M, K, a, lda, bp, ldb, cp, ldc, accumulate); break;
    }
  }
}
#else
inline constexpr bool kHaveBf16Dot = false;
inline void tile_gemm_bf16(int64_t, int64_t, int64_t, const uint16_t*, int64_t, const uint16_t*,
                           int64_t, float*, int64_t, bool) {}  // never called: kHaveBf16Dot
#endif

}  // namespace metalm::ops::attn
