// The host's arithmetic limit, measured: f32 FMA and bf16 dot-product throughput of a register-only
// kernel on N OpenMP threads. Benchmarks divide by it (peak_fraction) instead of a constant that
// only holds on the machine it was measured on.
#pragma once

namespace metalm {

struct CpuPeaks {
  double f32_gflops = 0;     // vfmadd231ps on the widest vectors compiled in (zmm with AVX-512)
  double bf16_gflops = 0;    // vdpbf16ps zmm; 0 when not compiled for AVX512-BF16
  int threads = 0;           // threads that ran the kernels
  const char* f32_isa = "";  // "avx512f", "fma" or "generic": what f32_gflops measured
};

// Best of `trials` runs of about seconds_per_trial each, per kernel. threads <= 0: the pool's
// count (get_num_threads()). Counts 2 flops per multiply-add lane (vdpbf16ps: 64 per zmm).
CpuPeaks measure_cpu_peaks(int threads, double seconds_per_trial, int trials = 5);

}  // namespace metalm
