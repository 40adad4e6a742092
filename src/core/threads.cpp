// One OpenMP pool for our kernels; oneDNN is built on the same OpenMP runtime (DNNL_RUNTIME_OMP).
#include "metalm/core/threads.h"

#include <omp.h>
#include <xmmintrin.h>

#include <cstdlib>
#include <string>

#include "metalm/core/error.h"

namespace metalm {

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
}

int get_num_threads() { return omp_get_max_threads(); }

namespace {
constexpr unsigned kFlushToZero = 1u << 15, kDenormalsAreZero = 1u << 6;

int parse_thread_count(const char* env) {
  char* end = nullptr;
  long n = std::strtol(env, &end, 10);
  MLM_CHECK(end != env && *end == '\0' && n >= 0 && n <= 4096, ValueError,
            "[threads] METALM_NUM_THREADS must be a non-negative integer, got '", env, "'");
  return static_cast<int>(n);
}

void set_mxcsr_flush(bool on) {
  const unsigned bits = kFlushToZero | kDenormalsAreZero;
  _mm_setcsr(on ? (_mm_getcsr() | bits) : (_mm_getcsr() & ~bits));
}
}  // namespace

void set_flush_denormals(bool on) {
  set_mxcsr_flush(on);
#pragma omp parallel num_threads(omp_get_max_threads())
  set_mxcsr_flush(on);
}

bool flush_denormals() { return (_mm_getcsr() & (kFlushToZero | kDenormalsAreZero)) != 0; }

void init_threads_from_env() {
  const char* denormals = std::getenv("METALM_DENORMALS");
  const std::string mode = denormals == nullptr ? "flush" : denormals;
  MLM_CHECK(mode == "flush" || mode == "keep", ValueError,
            "[threads] METALM_DENORMALS must be 'flush' or 'keep', got '", mode, "'");
  const char* env = std::getenv("METALM_NUM_THREADS");
  if (env != nullptr && *env != '\0') set_num_threads(parse_thread_count(env));
  set_flush_denormals(mode == "flush");
}

}  // namespace metalm
