// The host peak measurement: its values are sane and consistent with what was compiled in.
// Speeds themselves are never asserted here; bench/run reports them.
#include <gtest/gtest.h>

#include <cmath>

#include "metalm/core/cpu_peak.h"
#include "metalm/core/threads.h"

namespace metalm {
namespace {

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

}  // namespace
}  // namespace metalm
