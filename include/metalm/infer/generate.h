// Decoding from a decoder (the universal task layer) through its KV cache: the prompt once, then
// one token per step. Greedy or temperature / top-k sampling (the task-layer issue adds beam
// search, top-p and n-gram blocking on the same loop).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "metalm/infer/prompt.h"
#include "metalm/models/stack.h"

namespace metalm::infer {

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;  // 0: greedy (argmax); > 0: sample from softmax(logits / t)
  int64_t top_k = 0;         // > 0: sample among the k most likely only
  // < 1: sample among the smallest set of most likely ids whose probabilities (after top_k and
  // temperature) reach top_p, the id that crosses it kept (fairseq; reference-spec 6.3).
  double top_p = 1.0;
  int64_t min_new_tokens = 0;     // the stop ids are banned until this many tokens are out
  uint64_t seed = 1;              // sampling draws: Generator::uniform_at(seed, step)
  std::vector<int64_t> stop_ids;  // generation ends after emitting one of these (e.g. </s>)
  // Also ends generation when it returns true for the ids generated so far (stop strings: the
  // CLI decodes them and looks for the strings). Empty: unused.
  std::function<bool(const std::vector<int64_t>& generated)> stop_when;
  // Never emitted: their logits count as -inf at every step (e.g. <unk>, <pad>, <mask>). Ids
  // must lie in the vocabulary and leave at least one id allowed.
  std::vector<int64_t> banned_ids;
  // When the context (prompt + generated) reaches the decoder's max positions, keep the last
  // `keep` tokens and re-read them (0: stop instead). A prompt with docked segments does not
  // slide (its docked positions cannot be re-read as tokens): it stops.
  int64_t slide_keep = 0;
};

// Continues `prompt` (ids, or ids with docked vectors; non-empty) and returns the new ids only.
// on_token, if given, sees each new id as it is produced (streaming output).
std::vector<int64_t> generate(models::Decoder& decoder, const DecoderPrompt& prompt,
                              const GenerateOptions& options,
                              const std::function<void(int64_t)>& on_token = {});

// Generation continued from a cache: reads `feed` (the tokens not yet in `state`, with their
// docked vectors) and then generates as generate() does, stopping (never sliding) when the
// cache is full. The last new id is not fed: the caller passes it with whatever comes next.
std::vector<int64_t> continue_generation(models::Decoder& decoder, models::IncrementalState& state,
                                         const DecoderPrompt& feed, const GenerateOptions& options,
                                         const std::function<void(int64_t)>& on_token = {});

// Several prompts at once (lengths may differ: left-padded, the pads masked as keys and each
// row's positions its own), one row per prompt through the same cache; each row's output equals
// generate() on its prompt alone (tested), for greedy and for sampling (every row draws from
// the same seed as it would alone). Rows stop at their stop id; no sliding (the longest prompt
// plus max_new_tokens must fit the decoder's positions).
std::vector<std::vector<int64_t>> generate_batch(models::Decoder& decoder,
                                                 const std::vector<std::vector<int64_t>>& prompts,
                                                 const GenerateOptions& options);

// The choice of one step from a row of logits (exposed for tests); banned_ids are not applied
// here (generate() masks them first).
int64_t pick_token(const float* logits, int64_t vocab, const GenerateOptions& options,
                   uint64_t step);

}  // namespace metalm::infer
