// Beam search with fairseq's semantics (reference-spec 6.1): per step, log-softmax, bans (the
// banned ids always, EOS before min_new_tokens, every n-gram repeat within a hypothesis), EOS
// forced at max_new_tokens; the top 2 x beam candidates of beam x vocab; those ending in EOS and
// ranked within the first `beam` are finished with score S / L^length_penalty (S the summed
// log-probabilities, L the generated tokens including EOS); the first `beam` others continue.
// The search ends when `beam` hypotheses are finished. The KV cache is reordered in place
// (IncrementalState::select_rows), never recomputed.
#pragma once
#include <cstdint>
#include <vector>

#include "metalm/infer/prompt.h"
#include "metalm/models/stack.h"

namespace metalm::infer {

struct BeamOptions {
  int64_t beam = 4;
  double length_penalty = 1.0;  // fairseq --lenpen: the paper's generation tasks use 0.6
  int64_t max_new_tokens = 64;  // tokens before EOS; EOS is forced after this many
  int64_t min_new_tokens = 1;   // EOS is banned before this many (fairseq min_len)
  int64_t no_repeat_ngram = 0;  // > 0: no n-gram of this size twice in a hypothesis's output
                                // (the prompt's tokens are not counted, as in KOSMOS-1's setup)
  int64_t eos_id = 2;
  std::vector<int64_t> banned_ids;  // never chosen (e.g. <pad>, <unk>)
};

struct Hypothesis {
  std::vector<int64_t> tokens;  // the generated ids, EOS last
  double score = 0;             // sum of log-probabilities / tokens.size()^length_penalty
  double sum_logprob = 0;
};

// The `beam` finished hypotheses of a continuation of `prompt` (ids, or ids with docked
// vectors; non-empty), best first.
std::vector<Hypothesis> beam_search(models::Decoder& decoder, const DecoderPrompt& prompt,
                                    const BeamOptions& options);

// Several prompts at once (ids or docked; lengths may differ: left-padded, as generate_batch):
// one cache whose rows are the live hypotheses of every prompt still searching; each prompt's
// hypotheses equal beam_search on it alone (tested). The longest prompt plus max_new_tokens + 1
// must fit the decoder's positions.
std::vector<std::vector<Hypothesis>> beam_search_batch(models::Decoder& decoder,
                                                       const std::vector<DecoderPrompt>& prompts,
                                                       const BeamOptions& options);

// fairseq's NGramRepeatBlock on one hypothesis (exposed for tests): sets lp[t] = -inf for every
// token t after which the last n tokens of tokens + [t] would be an n-gram already in tokens.
void ban_repeated_ngrams(const std::vector<int64_t>& tokens, int64_t n, std::vector<double>& lp);

}  // namespace metalm::infer
