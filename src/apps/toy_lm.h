// `metalm toy-lm`: the interim main job until MetaLM pretraining lands. Trains a small byte-level
// GPT (Pre-LN, learned positions, tied output) on a text file with AdamW, prints the loss falling
// against the text's unigram entropy, and samples text.
#pragma once
#include <cstdint>
#include <string>

namespace metalm::apps {

struct ToyLmOptions {
  std::string data = "data/kjv.txt";
  std::string log;  // JSONL loss log (optional)
  int64_t steps = 600;
  int64_t batch = 16;
  int64_t seq_len = 128;
  int64_t d_model = 192;
  int64_t heads = 6;
  int64_t layers = 4;
  double lr = 2e-3;
  int64_t warmup = 50;
  double weight_decay = 0.1;
  double clip = 1.0;
  int64_t eval_every = 100;
  int64_t eval_batches = 8;
  int64_t sample_bytes = 300;
  double temperature = 0.8;
  std::string prompt = "And God said";
  uint64_t seed = 1;
};

// Returns the process exit code.
int run_toy_lm(const ToyLmOptions& options);

}  // namespace metalm::apps
