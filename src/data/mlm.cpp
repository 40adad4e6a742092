#include "metalm/data/mlm.h"

#include "metalm/core/error.h"
#include "metalm/core/random.h"

namespace metalm::data {

int64_t mlm_corrupt(const int32_t* ids, int64_t n, const MlmOptions& o, uint64_t seed,
                    int64_t* input, int64_t* target) {
  MLM_CHECK(o.mask_prob >= 0 && o.mask_prob <= 1 && o.replace_mask >= 0 && o.replace_random >= 0 &&
                o.replace_mask + o.replace_random <= 1,
            ValueError, "[mlm] probabilities out of range");
  MLM_CHECK(o.vocab_size > o.first_ordinary_id, ValueError, "[mlm] vocab_size ", o.vocab_size,
            " leaves no ordinary token above id ", o.first_ordinary_id);
  // Three counters per token (choose, how, which random id): the decisions of token i do not
  // depend on the others.
  int64_t chosen = 0;
  for (int64_t i = 0; i < n; ++i) {
    input[i] = ids[i];
    target[i] = -100;
    if (ids[i] < o.first_ordinary_id || ids[i] == o.pad_id) continue;
    const uint64_t c = 3 * static_cast<uint64_t>(i);
    if (Generator::uniform_at(seed, c) >= o.mask_prob) continue;
    ++chosen;
    target[i] = ids[i];
    const double how = Generator::uniform_at(seed, c + 1);
    if (how < o.replace_mask) {
      input[i] = o.mask_id;
    } else if (how < o.replace_mask + o.replace_random) {
      const uint64_t span = static_cast<uint64_t>(o.vocab_size - o.first_ordinary_id);
      input[i] = o.first_ordinary_id + static_cast<int64_t>(Generator::hash(seed, c + 2) % span);
    }
  }
  return chosen;
}

}  // namespace metalm::data
