// Candidate scoring in one batched forward.
#include "metalm/infer/score.h"

#include <algorithm>
#include <cmath>

#include "infer/log_normalizer.h"
#include "metalm/autograd/autograd.h"
#include "metalm/ops/shape.h"

namespace metalm::infer {

std::vector<CandidateScore> score_candidates(models::Decoder& dec,
                                             const DecoderPrompt& context,
                                             const std::vector<std::vector<int64_t>>& candidates) {
  MLM_CHECK(context.size() > 0, ValueError, "[score] the context is empty");
  MLM_CHECK(!candidates.empty(), ValueError, "[score] no candidates");
  size_t longest = 0;
  for (const auto& c : candidates) {
    MLM_CHECK(!c.empty(), ValueError, "[score] a candidate is empty");
    longest = std::max(longest, c.size());
  }
  const int64_t C = static_cast<int64_t>(context.size()),
                B = static_cast<int64_t>(candidates.size());
  const int64_t T = C + static_cast<int64_t>(longest), V = dec.config.vocab_size;
  MLM_CHECK(T <= dec.config.max_positions, ValueError, "[score] context (", C,
            " tokens) and the longest candidate (", longest, ") exceed the decoder's ",
            dec.config.max_positions, " positions");
  const int64_t pad = dec.config.padding_idx >= 0 ? dec.config.padding_idx : 0;
  std::vector<int64_t> tokens(static_cast<size_t>(B * T), pad);
  for (int64_t b = 0; b < B; ++b) {
    std::copy(context.tokens.begin(), context.tokens.end(), tokens.begin() + b * T);
    const auto& c = candidates[static_cast<size_t>(b)];
    std::copy(c.begin(), c.end(), tokens.begin() + b * T + C);
  }
  NoGradGuard ng;
  const nn::EvalModeGuard eval_mode(dec);
  models::StackInputs in;
  in.tokens = Tensor::from_vector<int64_t>({B, T}, tokens);
  if (context.docked()) {  // the context's docked positions in every row, its vectors repeated
    const std::vector<uint8_t> m = context.dock_mask.to_vector<uint8_t>();
    std::vector<uint8_t> mask(static_cast<size_t>(B * T), 0);
    for (int64_t b = 0; b < B; ++b) std::copy(m.begin(), m.end(), mask.begin() + b * T);
    in.dock_mask = Tensor::from_vector<uint8_t>({B, T}, mask);
    in.dock_features = B == 1 ? context.dock_features
                              : ops::concat(std::vector<Tensor>(static_cast<size_t>(B),
                                                                context.dock_features), 0);
  }
  const Tensor logits = dec.forward(in).logits.contiguous();  // [B, T, V]
  const float* lg = logits.data<float>();
  std::vector<CandidateScore> out(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const auto& c = candidates[static_cast<size_t>(b)];
    CandidateScore& s = out[static_cast<size_t>(b)];
    for (size_t j = 0; j < c.size(); ++j) {
      // The token at C + j is predicted by the logits at C + j - 1.
      const float* row = lg + (b * T + C + static_cast<int64_t>(j) - 1) * V;
      s.sum_logprob += static_cast<double>(row[c[j]]) - log_normalizer(row, V);
    }
    s.tokens = static_cast<int64_t>(c.size());
    s.mean_logprob = s.sum_logprob / static_cast<double>(s.tokens);
  }
  return out;
}

}  // namespace metalm::infer
