// The one OpenMP thread pool (DESIGN D6). oneDNN uses the same OpenMP runtime.
#pragma once

namespace metalm {

// Sets the number of threads for our kernels and oneDNN. n <= 0 means "all cores".
void set_num_threads(int n);
int get_num_threads();
// Reads METALM_NUM_THREADS if set (called by the CLI before anything runs).
void init_threads_from_env();

}  // namespace metalm
