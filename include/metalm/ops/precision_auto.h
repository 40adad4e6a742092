// `--matmul-precision auto`: bf16 GEMMs only on a host where they measure faster than sgemm.
// AVX512-BF16 alone does not say so: on one Intel Xeon host vdpbf16ps runs at half the f32 FMA
// rate (../shared/baselines.md section 6), on Zen at twice.
#pragma once
#include <string>

#include "metalm/ops/matmul.h"

namespace metalm::ops {

struct PrecisionChoice {
  MatmulPrecision precision = MatmulPrecision::f32;
  double f32_gflops = 0;   // sgemm
  double bf16_gflops = 0;  // gemm_bf16 plus the rounding of its operands; 0: not measured
  std::string reason;      // one line, for logs and benchmark JSON
};

// Times one linear() forward of a transformer FFN shape, x [1024, 384] x w [1536, 384]^T, as
// sgemm and as gemm_bf16 with both operands rounded to bf16 first (what linear() does under
// MatmulPrecision::bf16), best of 3 interleaved runs each on `threads` threads (<= 0: the pool's
// count); a few tens of ms. Measured once per thread count, later calls return the same choice.
// f32 when the CPU has no AVX512-BF16 or gemm_bf16 throws. Sets nothing: the caller applies it.
PrecisionChoice choose_matmul_precision(int threads);

// The rule alone: bf16 exactly when bf16_gflops > f32_gflops.
PrecisionChoice decide_matmul_precision(double f32_gflops, double bf16_gflops);

}  // namespace metalm::ops
