// BERT-style masked-LM corruption (15% of the tokens, of which 80% become <mask>, 10% a random
// token, 10% stay), for pretraining MetaLM's bidirectional text encoder.
#pragma once
#include <cstdint>

namespace metalm::data {

struct MlmOptions {
  double mask_prob = 0.15;
  double replace_mask = 0.8;    // of the chosen: become mask_id
  double replace_random = 0.1;  // of the chosen: become a random ordinary token
  int32_t mask_id = 4;
  int32_t first_ordinary_id = 9;  // ids below are special (<s> ... </line>): never chosen
  int64_t vocab_size = 0;         // random tokens are drawn from [first_ordinary_id, vocab_size)
  int32_t pad_id = 1;
};

// For ids[0 .. n): input[i] = the corrupted id, target[i] = ids[i] where chosen, ignore_index
// (-100) elsewhere. Each token is chosen independently with mask_prob (specials and pads never);
// draws from Generator(seed), so the corruption of a sequence depends only on it and the seed.
// Returns how many tokens were chosen.
int64_t mlm_corrupt(const int32_t* ids, int64_t n, const MlmOptions& options, uint64_t seed,
                    int64_t* input, int64_t* target);

}  // namespace metalm::data
