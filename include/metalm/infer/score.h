// Scoring candidate continuations, for multiple-choice tasks (the GPT-3 protocol): the
// log-likelihood of each candidate's tokens after a shared context, summed and per token.
#pragma once
#include <cstdint>
#include <vector>

#include "metalm/infer/prompt.h"
#include "metalm/models/stack.h"

namespace metalm::infer {

struct CandidateScore {
  double sum_logprob = 0;   // sum over the candidate's tokens of log p(token | all before it)
  double mean_logprob = 0;  // sum_logprob / the candidate's token count (length-normalised)
  int64_t tokens = 0;
};

// One row per candidate, context + candidate right-padded in one batch of the decoder (rows
// cannot see their pads: causal attention); log-probabilities in f64 from the f32 logits. The
// context (ids, or ids with docked vectors: every row docks them) and every candidate must be
// non-empty and fit the decoder's positions together.
std::vector<CandidateScore> score_candidates(models::Decoder& decoder,
                                             const DecoderPrompt& context,
                                             const std::vector<std::vector<int64_t>>& candidates);

}  // namespace metalm::infer
