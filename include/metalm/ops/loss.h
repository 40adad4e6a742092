// Cross-entropy over logits with ignore_index, a per-token loss mask and label smoothing.
#pragma once
#include "metalm/core/tensor.h"

namespace metalm::ops {

enum class Reduction { mean, sum, none };

struct CrossEntropyOptions {
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;  // torch semantics: (1-eps) * nll + eps * mean_c(-log p_c)
  Reduction reduction = Reduction::mean;  // mean over counted tokens (mask * not ignored)
  Tensor loss_mask;  // optional f32 (or the logits dtype) [N]: weight per token (0 = not scored);
                     // no gradient flows to it
};

// logits: [N, V] (f32/f64), targets: i64 [N] -> scalar (mean/sum) or [N] (none: w_i * loss_i).
// mean divides by the summed weights of counted tokens and returns 0 (not NaN) when that is 0.
// Computed row by row from the logits (no [N, V] log-prob matrix kept); backward recomputes.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets,
                     const CrossEntropyOptions& options = {});

}  // namespace metalm::ops
