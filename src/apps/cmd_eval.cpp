// `metalm eval`: scores a model directory on a task file (eval/task_eval.h), zero- or k-shot,
// one table per task (or one JSON object per task with --json), optionally the predictions.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "apps/common.h"
#include "metalm/core/error.h"
#include "metalm/data/progress.h"
#include "metalm/data/tasks.h"
#include "metalm/data/tokenizer.h"
#include "metalm/eval/task_eval.h"
#include "metalm/io/json.h"
#include "metalm/models/model_dir.h"

namespace metalm::apps {
namespace {

struct EvalCliOptions {
  CommonOptions common;
  std::string model, task, demos, tmpl = "{input}", predictions;
  std::vector<std::string> metrics;
  int64_t shots = 0, beam = 4, max_new_tokens = 32, max_examples = 0, bootstrap = 1000;
  double length_penalty = 0.6;
  bool json = false, plain_input = false, sum_scores = false;
};

// Examples grouped by task, in the order tasks first appear.
std::vector<std::pair<std::string, std::vector<data::TaskExample>>> by_task(
    const std::vector<data::TaskExample>& all) {
  std::vector<std::pair<std::string, std::vector<data::TaskExample>>> groups;
  for (const data::TaskExample& e : all) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == e.task; });
    if (it == groups.end()) {
      groups.push_back({e.task, {}});
      it = groups.end() - 1;
    }
    it->second.push_back(e);
  }
  return groups;
}

void print_table(const eval::TaskEvalResult& r, int64_t shots) {
  std::printf("task %s: %lld examples, %lld-shot, %.1f s", r.task.c_str(),
              static_cast<long long>(r.examples), static_cast<long long>(shots), r.seconds);
  if (r.shortened > 0)
    std::printf(" (%lld prompts shortened to fit)", static_cast<long long>(r.shortened));
  std::printf("\n  %-10s %8s   %s\n", "metric", "value", "95% interval (bootstrap)");
  for (const eval::MetricResult& m : r.metrics) {
    if (m.has_interval)
      std::printf("  %-10s %8.2f   [%.2f, %.2f]\n", m.name.c_str(), m.value, m.low, m.high);
    else
      std::printf("  %-10s %8.2f\n", m.name.c_str(), m.value);
  }
}

io::Json result_json(const eval::TaskEvalResult& r, const EvalCliOptions& o) {
  io::Json metrics = io::Json::object();
  for (const eval::MetricResult& m : r.metrics) {
    io::Json v = {{"value", m.value}};
    if (m.has_interval) v["interval95"] = {m.low, m.high};
    metrics[m.name] = v;
  }
  return {{"task", r.task},       {"model", o.model},          {"examples", r.examples},
          {"shots", o.shots},     {"shortened", r.shortened},  {"seconds", r.seconds},
          {"metrics", metrics}};
}

int run_eval(const EvalCliOptions& o) {
  const data::Tokenizer tok = data::Tokenizer::load(o.model);
  std::unique_ptr<models::Model> model = models::load_model(o.model, o.common.seed);
  prepare_for_inference(*model, o.common);
  std::vector<data::TaskExample> examples = data::read_task_file(o.task);
  const std::vector<data::TaskExample> pool =
      o.demos.empty() ? examples : data::read_task_file(o.demos);
  MLM_CHECK(o.shots == 0 || !o.demos.empty(), ValueError,
            "[eval] --shots ", o.shots, " needs --demos FILE (demonstrations from the training "
            "split, not the examples scored)");
  eval::TaskEvalOptions e;
  e.tmpl.text = o.tmpl;
  e.tmpl.dock_input = !o.plain_input;
  e.shots = o.shots;
  e.seed = o.common.seed;
  e.beam = o.beam;
  e.length_penalty = o.length_penalty;
  e.max_new_tokens = o.max_new_tokens;
  e.metrics = o.metrics;
  e.bootstrap = o.bootstrap;
  e.length_normalized = !o.sum_scores;
  std::ofstream preds;
  if (!o.predictions.empty()) {
    preds.open(o.predictions, std::ios::trunc);
    MLM_CHECK(preds.good(), IoError, "[eval] cannot write ", o.predictions);
  }
  for (auto& [task, items] : by_task(examples)) {
    if (o.max_examples > 0 && static_cast<int64_t>(items.size()) > o.max_examples)
      items.resize(static_cast<size_t>(o.max_examples));
    // The pool's examples of this task; a pool of one task serves whatever the task is named.
    std::vector<data::TaskExample> task_pool;
    const bool one_task = std::all_of(pool.begin(), pool.end(), [&](const data::TaskExample& d) {
      return d.task == pool[0].task;
    });
    for (const data::TaskExample& d : pool)
      if (d.task == task || one_task) task_pool.push_back(d);
    eval::TaskEvalResult r;
    {
      data::ProgressBar bar(task, items.size(), stderr, "examples");
      r = eval::evaluate_task(*model, tok, items, task_pool, e,
                              [&](int64_t done, int64_t) { bar.update(static_cast<uint64_t>(done)); });
    }
    if (o.json) std::printf("%s\n", result_json(r, o).dump().c_str());
    else print_table(r, o.shots);
    if (preds.is_open())
      for (size_t i = 0; i < items.size(); ++i)
        preds << io::Json({{"task", task}, {"line", items[i].line}, {"input", items[i].input},
                           {"prediction", r.predictions[i]}, {"answers", items[i].answers}})
                     .dump()
              << "\n";
  }
  return 0;
}

}  // namespace

Command add_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Score a model directory on a task file (JSONL: input, output, choices?, answers?, task?).\n"
      "Multiple-choice examples: the choice with the highest log-likelihood (accuracy);\n"
      "others: a generated answer (beam 4, length penalty 0.6) against every acceptable answer.\n"
      "With a MetaLM the input passes through its encoder (--plain-input: as tokens).\n"
      "Example: metalm eval --model runs/metalm --task data/tasks/sst/test.jsonl \\\n"
      "           --demos data/tasks/sst/train.jsonl --shots 4 --template 'Review: {input} Sentiment:'");
  add_common(cmd, o->common);
  add_precision(cmd, o->common);
  add_weights_dtype(cmd, o->common);
  cmd->add_option("--model", o->model, "model directory (config, weights, tokenizer)")->required();
  cmd->add_option("--task", o->task, "task JSONL file to score")->required()->check(CLI::ExistingFile);
  cmd->add_option("--demos", o->demos, "task JSONL file the demonstrations of --shots come from")->check(CLI::ExistingFile);
  cmd->add_option("--shots", o->shots, "demonstrations per prompt (in-context learning)")->capture_default_str()->check(CLI::Range(0, 64));
  cmd->add_option("--template", o->tmpl, "prompt form, holding {input} once; the answer follows it")->capture_default_str();
  cmd->add_flag("--plain-input", o->plain_input, "give the input to the decoder as tokens, not through the encoder");
  cmd->add_option("--metrics", o->metrics, "any of accuracy em f1 bleu4 rouge_l cider_d vqa (default: accuracy for multiple choice; em f1 bleu4 rouge_l otherwise)")->check(CLI::IsMember(eval::metric_names()));
  cmd->add_flag("--sum-scores", o->sum_scores, "rank choices by summed log-probability (default: per token)");
  cmd->add_option("--beam", o->beam, "beams for generated answers (0: greedy)")->capture_default_str()->check(CLI::Range(0, 64));
  cmd->add_option("--length-penalty", o->length_penalty, "beam score = log-prob / length^this")->capture_default_str()->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "longest generated answer")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--max-examples", o->max_examples, "score at most this many examples per task (0: all)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--bootstrap", o->bootstrap, "resamples for the 95% intervals (0: none)")->capture_default_str()->check(CLI::Range(0, 100000));
  cmd->add_option("--predictions", o->predictions, "write every prediction to this JSONL file");
  cmd->add_flag("--json", o->json, "one JSON object per task instead of the table");
  return {cmd, &o->common, [o] { return run_eval(*o); }};
}

}  // namespace metalm::apps
