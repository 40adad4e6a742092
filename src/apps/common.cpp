#include "apps/common.h"

#include <cstdio>

#include "metalm/core/threads.h"
#include "metalm/ops/precision_auto.h"

namespace metalm::apps {

void add_common(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--threads", o.threads, "worker threads (0 = all cores; env METALM_NUM_THREADS)")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--seed", o.seed, "random seed")->capture_default_str();
}

void add_precision(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--matmul-precision", o.precision,
                  "GEMM precision of linear layers and attention: f32 (full precision), bf16 "
                  "(bf16 operands, f32 accumulation: about 2x faster GEMMs on CPUs with fast "
                  "AVX512-BF16 such as Zen 4/5, slower on some Intel Xeons; outputs move by "
                  "about 0.1-1%), or auto (bf16 only if a short measurement at start-up finds "
                  "it faster on this host; says what it chose)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16", "auto"}));
}

ops::ComputeMode compute_mode(const CommonOptions& o) {
  if (o.precision != "auto") return {ops::parse_matmul_precision(o.precision), false};
  const ops::PrecisionChoice c = ops::choose_matmul_precision(get_num_threads());
  std::printf("matmul precision auto: %s\n", c.reason.c_str());
  return {c.precision, false};
}

}  // namespace metalm::apps
