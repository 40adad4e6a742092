// The host's limits for bench/run, on the bench's thread count (METALM_NUM_THREADS): one JSON line
// with the measured f32 FMA and bf16 dot-product peaks (the peak_fraction denominators), one with
// what --matmul-precision auto chooses here and why.
// Usage: metalm_bench_host [--seconds S (per trial, 0.1)] [--trials N (5)]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "metalm/core/cpu_peak.h"
#include "metalm/core/threads.h"
#include "metalm/ops/precision_auto.h"

using namespace metalm;

int main(int argc, char** argv) {
  double seconds = 0.1;
  int trials = 5;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--trials") && i + 1 < argc)
      trials = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--seconds S] [--trials N]\n", argv[0]);
      return 2;
    }
  }
  try {
    init_threads_from_env();
    const CpuPeaks p = measure_cpu_peaks(get_num_threads(), seconds, trials);
    nlohmann::ordered_json peak = {
        {"name", "host_peak"},  {"f32_gflops", p.f32_gflops}, {"bf16_gflops", p.bf16_gflops},
        {"threads", p.threads}, {"f32_isa", p.f32_isa},       {"seconds_per_trial", seconds},
        {"trials", trials}};
    std::printf("%s\n", peak.dump().c_str());
    const ops::PrecisionChoice c = ops::choose_matmul_precision(get_num_threads());
    nlohmann::ordered_json choice = {
        {"name", "precision_auto"},   {"precision", ops::matmul_precision_name(c.precision)},
        {"f32_gflops", c.f32_gflops}, {"bf16_gflops", c.bf16_gflops},
        {"reason", c.reason},         {"threads", get_num_threads()}};
    std::printf("%s\n", choice.dump().c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
