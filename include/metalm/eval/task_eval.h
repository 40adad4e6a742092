// Scoring a model on a task's examples (`metalm eval`): multiple-choice examples by the
// log-likelihood of each choice after the prompt (the GPT-3 protocol; accuracy), the others by
// generating an answer (beam 4, length penalty 0.6 by default, as the MetaLM paper) and comparing
// it with every acceptable answer. Zero- or k-shot: each example's prompt carries k
// demonstrations drawn from a pool (infer::few_shot_prompt: inputs docked through MetaLM's
// encoder, labels as tokens). The same code scores a GPT, whose prompts are plain tokens.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "metalm/data/tasks.h"
#include "metalm/infer/prompt.h"

namespace metalm::data {
class Tokenizer;
}
namespace metalm::models {
class Model;
}

namespace metalm::eval {

// The metric names `metalm eval --metrics` takes.
const std::vector<std::string>& metric_names();  // accuracy em f1 bleu4 rouge_l cider_d vqa

struct TaskEvalOptions {
  infer::PromptTemplate tmpl;  // "{input}", docked
  int64_t shots = 0;
  uint64_t seed = 1;  // which demonstrations each example gets
  bool length_normalized = true;  // choices ranked by mean log-prob per token (false: the sum)
  int64_t beam = 4;
  double length_penalty = 0.6;
  int64_t max_new_tokens = 32;
  // Empty: accuracy for multiple-choice examples; em, f1, bleu4, rouge_l for the others.
  std::vector<std::string> metrics;
  int64_t bootstrap = 1000;  // resamples for the 95% intervals (0: none)
};

struct MetricResult {
  std::string name;
  double value = 0;           // x100, as papers report (CIDEr-D too)
  double low = 0, high = 0;   // percentile bootstrap 95% interval, x100
  bool has_interval = false;  // no interval for CIDEr-D (its idf depends on the set)
};

struct TaskEvalResult {
  std::string task;
  int64_t examples = 0;
  std::vector<MetricResult> metrics;
  std::vector<std::string> predictions;  // per example: the chosen choice or generated text
  int64_t shortened = 0;  // prompts with fewer demonstrations or a cut input, to fit the model
  double seconds = 0;
};

// `examples` of one task; demonstrations come from `pool` (never the example itself). progress
// is called after every example with (done, total).
TaskEvalResult evaluate_task(models::Model& model, const data::Tokenizer& tok,
                             const std::vector<data::TaskExample>& examples,
                             const std::vector<data::TaskExample>& pool,
                             const TaskEvalOptions& options,
                             const std::function<void(int64_t, int64_t)>& progress = {});

// The 2.5 and 97.5 percentiles of stat() over `resamples` bootstrap resamples of n items
// (stat gets the resampled indices), seeded.
std::pair<double, double> bootstrap_interval(
    int64_t n, int64_t resamples, uint64_t seed,
    const std::function<double(const std::vector<int64_t>&)>& stat);

}  // namespace metalm::eval
