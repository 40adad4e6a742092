// The auto precision measurement. Its cache is the one piece of global state here: a property of
// the host that does not change while the process runs, and it sets no compute setting itself.
#include "metalm/ops/precision_auto.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <vector>

#include "metalm/core/tensor.h"
#include "metalm/core/threads.h"

namespace metalm::ops {
namespace {

constexpr int64_t kRows = 1024, kIn = 384, kOut = 1536;

template <typename F>
double seconds_of(const F& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs the measurement at a thread count and puts the pool's count back, also on a throw.
class ThreadCountGuard {
 public:
  explicit ThreadCountGuard(int threads) : saved_(get_num_threads()) { set_num_threads(threads); }
  ~ThreadCountGuard() { set_num_threads(saved_); }
  ThreadCountGuard(const ThreadCountGuard&) = delete;
  ThreadCountGuard& operator=(const ThreadCountGuard&) = delete;

 private:
  int saved_;
};

std::string fmt_gflops(double g) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", g);
  return buf;
}

PrecisionChoice measure(int threads) {
  ThreadCountGuard guard(threads);
  // Varied values in [-0.3, 0.3]: no all-zero operands a kernel could shortcut.
  std::vector<float> xv(kRows * kIn), wv(kOut * kIn);
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = 0.05f * static_cast<float>(i % 13) - 0.3f;
  for (size_t i = 0; i < wv.size(); ++i) wv[i] = 0.05f * static_cast<float>(i % 11) - 0.25f;
  const Tensor x = Tensor::from_vector<float>({kRows, kIn}, xv);
  const Tensor w = Tensor::from_vector<float>({kOut, kIn}, wv);
  std::vector<float> y(kRows * kOut);
  auto run_f32 = [&] {
    sgemm(false, true, kRows, kOut, kIn, 1.f, x.data<float>(), kIn, w.data<float>(), kIn, 0.f,
          y.data(), kOut);
  };
  auto run_bf16 = [&] {
    const Tensor xb = x.to(DType::bf16), wb = w.to(DType::bf16);
    gemm_bf16(false, true, kRows, kOut, kIn, xb.data<bf16>(), kIn, wb.data<bf16>(), kIn, 0.f,
              y.data(), kOut);
  };
  const double flops = 2.0 * kRows * kOut * kIn;
  const bool cpu_bf16 = __builtin_cpu_supports("avx512bf16");
  run_f32();  // warm-up: oneDNN creates its kernels on first use
  double f32_best = 1e30, bf16_best = 1e30;
  std::string bf16_error;
  if (cpu_bf16) {
    try {
      run_bf16();
    } catch (const Error& e) {
      bf16_error = e.what();
    }
  }
  const bool bf16_ok = cpu_bf16 && bf16_error.empty();
  for (int trial = 0; trial < 3; ++trial) {  // interleaved, so a slow moment hits both sides
    f32_best = std::min(f32_best, seconds_of(run_f32));
    if (bf16_ok) bf16_best = std::min(bf16_best, seconds_of(run_bf16));
  }
  const double f32_gflops = flops / f32_best / 1e9;
  PrecisionChoice c;
  if (!cpu_bf16) {
    c.f32_gflops = f32_gflops;
    c.reason = "f32: the CPU has no AVX512-BF16";
  } else if (!bf16_ok) {
    c.f32_gflops = f32_gflops;
    c.reason = "f32: gemm_bf16 failed: " + bf16_error;
  } else {
    c = decide_matmul_precision(f32_gflops, flops / bf16_best / 1e9);
  }
  c.reason += " (x [" + std::to_string(kRows) + ", " + std::to_string(kIn) + "] w [" +
              std::to_string(kOut) + ", " + std::to_string(kIn) + "], " +
              std::to_string(get_num_threads()) + " threads)";
  return c;
}

}  // namespace

PrecisionChoice decide_matmul_precision(double f32_gflops, double bf16_gflops) {
  PrecisionChoice c;
  c.f32_gflops = f32_gflops;
  c.bf16_gflops = bf16_gflops;
  const std::string rates = "bf16 GEMM with operand rounding " + fmt_gflops(bf16_gflops) +
                            " GFLOP/s, sgemm " + fmt_gflops(f32_gflops) + " GFLOP/s";
  if (bf16_gflops > f32_gflops) {
    c.precision = MatmulPrecision::bf16;
    c.reason = "bf16: " + rates;
  } else {
    c.reason = "f32: " + rates;
  }
  return c;
}

PrecisionChoice choose_matmul_precision(int threads) {
  if (threads <= 0) threads = get_num_threads();
  static std::mutex mutex;
  static std::map<int, PrecisionChoice> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(threads);
  if (it == cache.end()) it = cache.emplace(threads, measure(threads)).first;
  return it->second;
}

}  // namespace metalm::ops
