// Cross-entropy over logits with ignore_index, a per-token loss mask and label smoothing.
#pragma once
#include "metalm/core/tensor.h"

namespace metalm::ops {

enum class Reduction { mean, sum, none };

struct CrossEntropyOptions {
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;  // torch semantics: (1-eps) * nll + eps * mean_c(-log p_c)
  Reduction reduction = Reduction::mean;  // mean over counted tokens (mask * not ignored)
  Tensor loss_mask;  // optional f32 [N]: weight per token (0 = not scored)
};

// logits: [N, V] (f32/f64), targets: i64 [N] -> scalar (mean/sum) or [N] (none).
// Computed row by row from the logits (no [N, V] log-prob matrix kept); backward recomputes.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets,
                     const CrossEntropyOptions& options = {});

}  // namespace metalm::ops
