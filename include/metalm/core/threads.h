// The one OpenMP thread pool (DESIGN D6). oneDNN uses the same OpenMP runtime.
#pragma once

namespace metalm {

// Sets the number of threads for our kernels and oneDNN. n <= 0 means "all cores".
void set_num_threads(int n);
int get_num_threads();
// Flushes f32 denormals to zero (MXCSR FTZ and DAZ) on the calling thread and on every thread
// of the pool, or restores IEEE gradual underflow. Threads created later inherit the setting
// from the thread that creates them. On Intel cores an operand below 2^-126 costs a microcode
// assist of ~100 cycles; late in training, gradients and Adam moments hold such values and a
// GEMM over them slows down several times (PyTorch's f32 step on the Xeon host here: 1.3 s at
// step 1, 4-10 s by step 5, 1.3 s throughout with torch.set_flush_denormal(True)). The values
// changed are below 1.2e-38, far under any tolerance of ours.
void set_flush_denormals(bool on);
bool flush_denormals();
// Reads METALM_NUM_THREADS if set, and METALM_DENORMALS (flush, the default, or keep) (called
// by the CLI and the benches before anything runs).
void init_threads_from_env();

}  // namespace metalm
