// One OpenMP pool for our kernels; oneDNN is built on the same OpenMP runtime (DNNL_RUNTIME_OMP).
#include "metalm/core/threads.h"

#include <omp.h>

#include <cstdlib>
#include <string>

#include "metalm/core/error.h"

namespace metalm {

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
}

int get_num_threads() { return omp_get_max_threads(); }

void init_threads_from_env() {
  const char* env = std::getenv("METALM_NUM_THREADS");
  if (env == nullptr || *env == '\0') return;
  char* end = nullptr;
  long n = std::strtol(env, &end, 10);
  MLM_CHECK(end != env && *end == '\0' && n >= 0 && n <= 4096, ValueError,
            "[threads] METALM_NUM_THREADS must be a non-negative integer, got '", env, "'");
  set_num_threads(static_cast<int>(n));
}

}  // namespace metalm
