// `metalm finetune`: a pretrained model directory trained further on task files
// (train/finetune.h): single-task with the LM frozen (MetaLM's --train encoder), multitask,
// instruction tuning with templates and whole task clusters held out. The output directory is a
// model directory with the run's log and checkpoints, like pretrain's.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "apps/common.h"
#include "metalm/core/random.h"
#include "metalm/data/instructions.h"
#include "metalm/data/tasks.h"
#include "metalm/data/tokenizer.h"
#include "metalm/infer/prompt.h"
#include "metalm/models/metalm.h"
#include "metalm/models/model_dir.h"
#include "metalm/train/finetune.h"
#include "metalm/train/trainer.h"

namespace metalm::apps {
namespace {

namespace fs = std::filesystem;

struct FinetuneCliOptions {
  CommonOptions common;
  std::string model, out, train = "auto", templates;
  std::vector<std::string> tasks, valid, hold_out;
  TrainingCliOptions t = [] {  // fine-tuning's defaults: shorter, gentler
    TrainingCliOptions d;
    d.steps = 500;
    d.warmup = 50;
    d.lr = 2e-4;
    d.decay = "linear";
    d.min_lr_ratio = 0.0;
    d.eval_every = 100;
    d.checkpoint_every = 200;
    return d;
  }();
  int64_t tokens_per_sample = 256, batch = 8, max_per_task = 0;
  double valid_fraction = 0.1;
  bool no_pack = false, plain_input = false;
};

std::vector<data::TaskExample> read_all(const std::vector<std::string>& files) {
  std::vector<data::TaskExample> all;
  for (const std::string& f : files) {
    std::vector<data::TaskExample> ex = data::read_task_file(f);
    all.insert(all.end(), std::make_move_iterator(ex.begin()), std::make_move_iterator(ex.end()));
  }
  return all;
}

int run_finetune(const FinetuneCliOptions& o) {
  const data::Tokenizer tok = data::Tokenizer::load(o.model);
  const std::map<std::string, data::TaskTemplates> templates =
      o.templates.empty() ? std::map<std::string, data::TaskTemplates>{} : data::read_templates(o.templates);
  const std::string latest = train::latest_checkpoint(o.out);
  const bool resuming = o.t.resume && !latest.empty();
  MLM_CHECK(o.t.resume || latest.empty(), ValueError, "[finetune] --out ", o.out, " holds a run already (",
            latest, "): add --resume to continue it, or give another --out");

  // Training and validation examples; held-out clusters leave both.
  std::vector<data::TaskExample> all = read_all(o.tasks), valid = read_all(o.valid);
  const std::set<std::string> held(o.hold_out.begin(), o.hold_out.end());
  std::set<std::string> clusters_seen, held_tasks;
  auto kept = [&](const data::TaskExample& e) {
    const std::string c = data::templates_of(templates, e.task).cluster;
    clusters_seen.insert(c);
    if (held.count(c)) held_tasks.insert(e.task);
    return held.count(c) == 0;
  };
  std::vector<data::TaskExample> train_ex;
  for (data::TaskExample& e : all)
    if (kept(e)) train_ex.push_back(std::move(e));
  for (const std::string& c : held)
    MLM_CHECK(clusters_seen.count(c), ValueError, "[finetune] --hold-out ", c,
              ": no task of the task files is in that cluster");
  std::vector<data::TaskExample> valid_ex;
  if (o.valid.empty()) {  // a seeded share of each task's examples
    std::vector<data::TaskExample> rest;
    for (data::TaskExample& e : train_ex) {
      uint64_t task_hash = 1469598103934665603ull;  // FNV-1a: the same split on every machine
      for (const unsigned char c : e.task) task_hash = (task_hash ^ c) * 1099511628211ull;
      const double u = Generator::uniform_at(o.common.seed,
                                             Generator::hash(task_hash, static_cast<uint64_t>(e.line)));
      (u < o.valid_fraction ? valid_ex : rest).push_back(std::move(e));
    }
    train_ex = std::move(rest);
  } else {
    for (data::TaskExample& e : valid)
      if (kept(e)) valid_ex.push_back(std::move(e));
  }
  MLM_CHECK(!train_ex.empty(), ValueError, "[finetune] no training examples are left (after ",
            held.empty() ? "the validation split" : "--hold-out and the validation split", ")");

  std::unique_ptr<models::Model> model = models::load_model(o.model, o.common.seed);
  model->compute = compute_mode(o.common);
  // The encoder trains only where inputs pass through it.
  const bool docks = !infer::default_encoder(*model).empty() && !o.plain_input;
  MLM_CHECK(o.train != "encoder" || docks, ValueError, "[finetune] --train encoder trains the "
            "docked encoder, which ", o.plain_input ? "--plain-input bypasses" : "this model lacks",
            ": use --train all or lm");
  const std::string mode = o.train == "auto" ? (docks ? "encoder" : "all") : o.train;
  train::set_trainable(*model, mode);

  train::FinetuneDataOptions d;
  d.tokens_per_sample = o.tokens_per_sample;
  d.batch = o.batch;
  d.seed = o.common.seed;
  d.max_per_task = o.max_per_task;
  d.pack = !o.no_pack;
  d.render.encoder = infer::default_encoder(*model);
  d.render.dock_input = !o.plain_input;
  int64_t input_cap = o.tokens_per_sample / 2;
  if (auto* m = dynamic_cast<models::MetaLM*>(model.get()); m && !d.render.encoder.empty())
    input_cap = std::min(input_cap, m->encoder(d.render.encoder).stack_config().max_positions - 1);
  d.render.max_input_tokens = input_cap;
  MLM_CHECK(o.tokens_per_sample <= infer::task_decoder(*model).stack_config().max_positions + 1,
            ValueError, "[finetune] --tokens-per-sample ", o.tokens_per_sample, " exceeds the model's ",
            infer::task_decoder(*model).stack_config().max_positions, " positions (+1)");
  train::FinetuneBatches batches(tok, train_ex, templates, d);
  std::unique_ptr<train::FixedBatches> valid_batches;
  if (!valid_ex.empty())
    valid_batches = std::make_unique<train::FixedBatches>(
        train::FinetuneBatches(tok, valid_ex, templates, d).one_pass(o.t.eval_batches));
  train::FinetuneObjective objective(d.render.encoder, static_cast<int32_t>(tok.bos_id()),
                                     static_cast<int32_t>(tok.spec().pad_id));

  const train::TrainerOptions to = trainer_options(o.t, o.out);
  train::Trainer trainer(*model, objective, batches, valid_batches.get(), to);
  if (resuming) {
    trainer.resume(o.out);
    std::printf("resumed from %s at step %lld\n", latest.c_str(), static_cast<long long>(trainer.step_count()));
  }
  std::map<std::string, int64_t> per_task;
  for (const data::TaskExample& e : train_ex) ++per_task[e.task];
  std::printf("%s: fine-tuning a %s (--train %s: %.2fM of %.2fM parameters train) on %zu examples of "
              "%zu tasks (%lld an epoch), %zu validation examples\n",
              o.out.c_str(), model->model_config().model_type.c_str(), mode.c_str(),
              static_cast<double>(model->parameter_count(true)) / 1e6,
              static_cast<double>(model->parameter_count()) / 1e6, train_ex.size(), per_task.size(),
              static_cast<long long>(batches.epoch_size()), valid_ex.size());
  for (const auto& [task, n] : per_task) std::printf("  task %s: %lld examples\n", task.c_str(), static_cast<long long>(n));
  for (const std::string& t : held_tasks) std::printf("  held out: task %s\n", t.c_str());
  std::fflush(stdout);
  const int rc = trainer.run();
  tok.save(o.out);
  io::Json record = {{"base_model", o.model}, {"train", mode}, {"tasks", per_task},
                     {"held_out_clusters", o.hold_out}, {"held_out_tasks", held_tasks},
                     {"templates", o.templates}};
  std::ofstream(fs::path(o.out) / "finetune.json") << record.dump(2) << "\n";
  return rc;
}

}  // namespace

Command add_finetune_command(CLI::App& app) {
  auto o = std::make_shared<FinetuneCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "finetune",
      "Fine-tune a model directory on task files (JSONL: input, output, task?): the loss on the\n"
      "outputs only, examples packed without seeing each other, templates drawn per example.\n"
      "--train encoder (MetaLM's default) keeps the language model frozen; lm and all train it.\n"
      "Instruction tuning: --templates T.json (clusters, templates, turned-around forms) and\n"
      "--hold-out CLUSTER to keep whole clusters for zero-shot evaluation.\n"
      "Example: metalm finetune --model runs/metalm --task data/tasks/spam/train.jsonl \\\n"
      "           --out runs/metalm-spam --steps 300");
  add_common(cmd, o->common);
  add_precision(cmd, o->common);
  cmd->add_option("--model", o->model, "pretrained model directory")->required();
  cmd->add_option("--task", o->tasks, "task JSONL files (several: multitask)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "output directory: checkpoints, log.jsonl, the fine-tuned model")->required();
  cmd->add_option("--train", o->train, "auto (encoder for a MetaLM, all for a GPT) | encoder | lm | all")
      ->capture_default_str()->check(CLI::IsMember({"auto", "encoder", "lm", "all"}));
  cmd->add_option("--templates", o->templates, "instruction templates (JSON: {\"task\": {\"cluster\": ..., \"templates\": [\"...{input}...\"], \"turned\": [\"...{output}...\"]}})")->check(CLI::ExistingFile);
  cmd->add_option("--hold-out", o->hold_out, "leave out every task of this template cluster (repeatable)");
  cmd->add_option("--max-per-task", o->max_per_task, "examples of one task per epoch at most (0: all)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--valid", o->valid, "validation task files (default: --valid-fraction of the training files)")->check(CLI::ExistingFile);
  cmd->add_option("--valid-fraction", o->valid_fraction, "share of each task held out for validation")->capture_default_str()->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--tokens-per-sample", o->tokens_per_sample, "ids per packed row")->capture_default_str()->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--batch", o->batch, "rows per batch")->capture_default_str()->check(CLI::PositiveNumber);
  add_training_options(cmd, o->t);
  cmd->add_flag("--no-pack", o->no_pack, "one example per row");
  cmd->add_flag("--plain-input", o->plain_input, "give inputs to the decoder as tokens, not through the encoder");
  return {cmd, &o->common, [o] { return run_finetune(*o); }};
}

}  // namespace metalm::apps
