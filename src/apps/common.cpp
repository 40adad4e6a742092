#include "apps/common.h"

namespace metalm::apps {

void add_common(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--threads", o.threads, "worker threads (0 = all cores; env METALM_NUM_THREADS)")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--seed", o.seed, "random seed")->capture_default_str();
}

void add_precision(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--matmul-precision", o.precision,
                  "GEMM precision of linear layers and attention: f32 (full precision) or bf16 "
                  "(bf16 operands, f32 accumulation: about 2x faster GEMMs on CPUs with fast "
                  "AVX512-BF16 such as Zen 4/5, slower on some Intel Xeons; outputs move by "
                  "about 0.1-1%)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
}

ops::ComputeMode compute_mode(const CommonOptions& o) {
  return {ops::parse_matmul_precision(o.precision), false};
}

}  // namespace metalm::apps
