// Peak kernels: independent accumulator chains, enough of them that the FMA (or dot-product)
// latency is hidden behind the issue rate (latency 4-6 cycles x 2 pipes on current x86 cores
// needs at least 8-12 in flight), and few enough to stay in registers: 16 of the 32 zmm; 12 of
// the 16 ymm without AVX-512 (16 chains there spill: half the rate on an AMD EPYC host).
#include "metalm/core/cpu_peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "metalm/core/error.h"
#include "metalm/core/threads.h"

namespace metalm {
namespace {

#if defined(__AVX512F__)
using F32Vec = __m512;
constexpr int kF32Lanes = 16, kF32Chains = 16;
constexpr const char* kF32Isa = "avx512f";
inline F32Vec f32_set(float v) { return _mm512_set1_ps(v); }
inline F32Vec f32_fma(F32Vec a, F32Vec b, F32Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float f32_sum(F32Vec v) {  // not _mm512_reduce_add_ps: g++ 12 warns inside it
  alignas(64) float x[16];
  _mm512_store_ps(x, v);
  float s = 0;
  for (float e : x) s += e;
  return s;
}
#elif defined(__FMA__)
using F32Vec = __m256;
constexpr int kF32Lanes = 8, kF32Chains = 12;
constexpr const char* kF32Isa = "fma";
inline F32Vec f32_set(float v) { return _mm256_set1_ps(v); }
inline F32Vec f32_fma(F32Vec a, F32Vec b, F32Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float f32_sum(F32Vec v) {
  alignas(32) float x[8];
  _mm256_store_ps(x, v);
  float s = 0;
  for (float e : x) s += e;
  return s;
}
#else
// Plain C++: the compiler may still vectorize across the chains (SSE on x86-64); either way
// each chain counts as one lane of multiply-adds, so the count stays right.
using F32Vec = float;
constexpr int kF32Lanes = 1, kF32Chains = 16;
constexpr const char* kF32Isa = "generic";
inline F32Vec f32_set(float v) { return v; }
inline F32Vec f32_fma(F32Vec a, F32Vec b, F32Vec c) { return a * b + c; }
inline float f32_sum(F32Vec v) { return v; }
#endif

// acc += x * x (vfmadd231ps): each chain gains 1e-6 per lane and iteration, far from overflow
// in any trial length. Returns the sum of the chains so the work cannot be dropped.
float f32_kernel(int64_t iterations) {
  const F32Vec x = f32_set(1e-3f);
  F32Vec acc[kF32Chains];
  for (auto& a : acc) a = f32_set(0.5f);
  for (int64_t i = 0; i < iterations; ++i)
    for (auto& a : acc) a = f32_fma(x, x, a);
  float s = 0;
  for (auto& a : acc) s += f32_sum(a);
  return s;
}
constexpr double kF32FlopsPerIteration = 2.0 * kF32Chains * kF32Lanes;

#if defined(__AVX512BF16__)
constexpr int kBf16Chains = 16;

// acc += x0 * x0 + x1 * x1 per lane (vdpbf16ps), as above.
float bf16_kernel(int64_t iterations) {
  const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  __m512 acc[kBf16Chains];
  for (auto& a : acc) a = _mm512_set1_ps(0.5f);
  for (int64_t i = 0; i < iterations; ++i)
    for (auto& a : acc) a = _mm512_dpbf16_ps(a, x, x);
  float s = 0;
  for (auto& a : acc) s += f32_sum(a);
  return s;
}
constexpr double kBf16FlopsPerIteration = 2.0 * 32 * kBf16Chains;  // 32 products per zmm
#endif

struct Run {
  double seconds;
  int threads;
};

// Wall time of `kernel(iterations)` on every thread of one parallel region.
template <typename Kernel>
Run timed_region(const Kernel& kernel, int threads, int64_t iterations) {
  volatile float sink = 0;
  int ran = 0;
  const auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
  {
    const float s = kernel(iterations);
#pragma omp critical
    {
      sink = sink + s;
      ran = omp_get_num_threads();
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {seconds, ran};
}

// GFLOP/s of the best trial; the first short run sizes the trials to seconds_per_trial.
template <typename Kernel>
double best_gflops(const Kernel& kernel, double flops_per_iteration, int threads,
                   double seconds_per_trial, int trials, int* ran) {
  int64_t iterations = 1 << 14;
  Run probe = timed_region(kernel, threads, iterations);
  while (probe.seconds < 1e-3) {
    iterations *= 4;
    probe = timed_region(kernel, threads, iterations);
  }
  iterations =
      std::max<int64_t>(1, static_cast<int64_t>(iterations * seconds_per_trial / probe.seconds));
  double best = 0;
  for (int t = 0; t < trials; ++t) {
    const Run r = timed_region(kernel, threads, iterations);
    best = std::max(best, flops_per_iteration * iterations * r.threads / r.seconds / 1e9);
    *ran = r.threads;
  }
  return best;
}

}  // namespace

CpuPeaks measure_cpu_peaks(int threads, double seconds_per_trial, int trials) {
  MLM_CHECK(seconds_per_trial > 0 && trials > 0, ValueError,
            "[cpu_peak] need seconds_per_trial > 0 and trials > 0, got ", seconds_per_trial,
            " and ", trials);
  if (threads <= 0) threads = get_num_threads();
  CpuPeaks p;
  p.f32_isa = kF32Isa;
  p.f32_gflops = best_gflops(f32_kernel, kF32FlopsPerIteration, threads, seconds_per_trial,
                             trials, &p.threads);
#if defined(__AVX512BF16__)
  p.bf16_gflops = best_gflops(bf16_kernel, kBf16FlopsPerIteration, threads, seconds_per_trial,
                              trials, &p.threads);
#endif
  return p;
}

}  // namespace metalm
