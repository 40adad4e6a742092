// What every metalm subcommand shares: --threads, --seed, --matmul-precision, and the shape of a
// command (it adds itself to the parser and returns the function that runs it).
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <string>

#include "metalm/models/model.h"
#include "metalm/ops/matmul.h"
#include "metalm/train/trainer.h"

namespace metalm::apps {

struct CommonOptions {
  int threads = -1;  // -1: METALM_NUM_THREADS or all cores
  uint64_t seed = 1;
  std::string precision = "f32";
  std::string weights_dtype = "f32";  // inference commands: f32 | bf16
};

// --threads and --seed.
void add_common(CLI::App* cmd, CommonOptions& o);
// --matmul-precision (commands that compute).
void add_precision(CLI::App* cmd, CommonOptions& o);
// The compute mode the options ask for.
ops::ComputeMode compute_mode(const CommonOptions& o);
// --weights-dtype (commands that only run a model: generate, eval, chat).
void add_weights_dtype(CLI::App* cmd, CommonOptions& o);
// A loaded model made ready to run: its compute mode from the options, its weights stored as
// --weights-dtype asks, eval mode.
void prepare_for_inference(models::Model& model, const CommonOptions& o);

// The trainer's options, shared by pretrain and finetune (each sets its own defaults first).
struct TrainingCliOptions {
  int64_t steps = 1000, warmup = 100, accumulation = 1, eval_every = 200, eval_batches = 8;
  int64_t checkpoint_every = 500, keep_last = 2, log_every = 10;
  double minutes = 0, lr = 6e-4, min_lr_ratio = 0.1, weight_decay = 0.01, clip = 1.0;
  double beta1 = 0.9, beta2 = 0.98;
  std::string decay = "cosine";
  bool resume = false;
};
// --steps, --minutes, --lr, --warmup, --decay, ... --resume.
void add_training_options(CLI::App* cmd, TrainingCliOptions& o);
// What the trainer takes, writing into out_dir.
train::TrainerOptions trainer_options(const TrainingCliOptions& o, const std::string& out_dir);

// A subcommand: add(app) registers it and its options; the returned function runs it (after
// parsing, with the thread count already set) and returns the exit code.
using Runner = std::function<int()>;
struct Command {
  CLI::App* app;
  CommonOptions* common;
  Runner run;
};

Command add_init_command(CLI::App& app);
Command add_forward_command(CLI::App& app);
Command add_info_command(CLI::App& app);
Command add_toy_lm_command(CLI::App& app);
Command add_plot_command(CLI::App& app);
Command add_tokenizer_command(CLI::App& app);
Command add_pretrain_command(CLI::App& app);
Command add_generate_command(CLI::App& app);
Command add_eval_command(CLI::App& app);
Command add_chat_command(CLI::App& app);
Command add_finetune_command(CLI::App& app);

}  // namespace metalm::apps
