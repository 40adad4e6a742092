// The host peak measurement and the auto matmul precision: their values are sane and consistent
// with their own rules. Speeds themselves are never asserted here; bench/run reports them.
#include <gtest/gtest.h>

#include <cmath>

#include "metalm/core/cpu_peak.h"
#include "metalm/core/threads.h"
#include "metalm/ops/precision_auto.h"

namespace metalm {
namespace {

using ops::MatmulPrecision;

TEST(CpuPeak, PositiveFiniteAndBf16OnlyWhenCompiledIn) {
  const CpuPeaks p = measure_cpu_peaks(1, 0.01, 2);
  EXPECT_TRUE(std::isfinite(p.f32_gflops));
  EXPECT_GT(p.f32_gflops, 0.0);
  EXPECT_EQ(p.threads, 1);
#if defined(__AVX512BF16__)
  EXPECT_TRUE(std::isfinite(p.bf16_gflops));
  EXPECT_GT(p.bf16_gflops, 0.0);
#else
  EXPECT_EQ(p.bf16_gflops, 0.0);
#endif
}

TEST(CpuPeak, DefaultThreadsAreThePools) {
  EXPECT_EQ(measure_cpu_peaks(0, 0.005, 1).threads, get_num_threads());
}

TEST(CpuPeak, RejectsNonPositiveTrialLength) {
  EXPECT_THROW(measure_cpu_peaks(1, 0.0), ValueError);
  EXPECT_THROW(measure_cpu_peaks(1, 0.01, 0), ValueError);
}

TEST(PrecisionAuto, RuleIsBf16ExactlyWhenFaster) {
  EXPECT_EQ(ops::decide_matmul_precision(100, 200).precision, MatmulPrecision::bf16);
  EXPECT_EQ(ops::decide_matmul_precision(200, 100).precision, MatmulPrecision::f32);
  EXPECT_EQ(ops::decide_matmul_precision(100, 100).precision, MatmulPrecision::f32);
  EXPECT_EQ(ops::decide_matmul_precision(100, 0).precision, MatmulPrecision::f32);
  EXPECT_EQ(ops::decide_matmul_precision(100, 200).bf16_gflops, 200.0);
}

TEST(PrecisionAuto, MeasuredChoiceFollowsTheRuleAndIsCached) {
  const ops::PrecisionChoice a = ops::choose_matmul_precision(0);
  EXPECT_TRUE(std::isfinite(a.f32_gflops));
  EXPECT_GT(a.f32_gflops, 0.0);
  EXPECT_TRUE(std::isfinite(a.bf16_gflops));
  EXPECT_EQ(a.precision == MatmulPrecision::bf16, a.bf16_gflops > a.f32_gflops) << a.reason;
  if (!__builtin_cpu_supports("avx512bf16")) {
    EXPECT_EQ(a.precision, MatmulPrecision::f32);
  }
  EXPECT_FALSE(a.reason.empty());
  const ops::PrecisionChoice b = ops::choose_matmul_precision(get_num_threads());
  EXPECT_EQ(b.precision, a.precision);
  EXPECT_EQ(b.f32_gflops, a.f32_gflops);
  EXPECT_EQ(b.bf16_gflops, a.bf16_gflops);
  EXPECT_EQ(b.reason, a.reason);
}

TEST(PrecisionAuto, LeavesThreadsAndPrecisionAsTheyWere) {
  const int threads = get_num_threads();
  const MatmulPrecision precision = ops::matmul_precision();
  ops::choose_matmul_precision(1);
  EXPECT_EQ(get_num_threads(), threads);
  EXPECT_EQ(ops::matmul_precision(), precision);
}

}  // namespace
}  // namespace metalm
