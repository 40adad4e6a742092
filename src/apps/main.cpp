// The metalm command line: one binary, one subcommand per job (DESIGN.md section 7).
// Errors from the library arrive as metalm::Error and leave as one line on stderr, exit code 1.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "apps/toy_lm.h"
#include "metalm/core/error.h"
#include "metalm/core/threads.h"

namespace {

void add_common(CLI::App* cmd, int& threads, uint64_t& seed) {
  cmd->add_option("--threads", threads, "worker threads (0 = all cores; env METALM_NUM_THREADS)")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--seed", seed, "random seed")->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"metalm: MetaLM, KOSMOS-1 and BEiT-3 in C++ (no Python at run time)", "metalm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "metalm 0.1.0");
  int threads = -1;

  metalm::apps::ToyLmOptions toy;
  CLI::App* toy_cmd = app.add_subcommand(
      "toy-lm",
      "Train a small byte-level Transformer LM on a text file, print the loss, sample text.\n"
      "Example: metalm toy-lm --data data/kjv.txt --steps 600 --threads 2");
  add_common(toy_cmd, threads, toy.seed);
  toy_cmd->add_option("--data", toy.data, "training text (bytes)")->capture_default_str();
  toy_cmd->add_option("--steps", toy.steps, "optimizer steps")->capture_default_str()->check(CLI::NonNegativeNumber);
  toy_cmd->add_option("--batch", toy.batch, "sequences per step")->capture_default_str()->check(CLI::PositiveNumber);
  toy_cmd->add_option("--seq-len", toy.seq_len, "context length")->capture_default_str()->check(CLI::Range(2, 4096));
  toy_cmd->add_option("--d-model", toy.d_model, "model width")->capture_default_str()->check(CLI::PositiveNumber);
  toy_cmd->add_option("--heads", toy.heads, "attention heads")->capture_default_str()->check(CLI::PositiveNumber);
  toy_cmd->add_option("--layers", toy.layers, "Transformer layers")->capture_default_str()->check(CLI::PositiveNumber);
  toy_cmd->add_option("--lr", toy.lr, "peak learning rate (warmup, then cosine)")->capture_default_str()->check(CLI::PositiveNumber);
  toy_cmd->add_option("--warmup", toy.warmup, "warmup steps")->capture_default_str()->check(CLI::NonNegativeNumber);
  toy_cmd->add_option("--eval-every", toy.eval_every, "validation interval (steps)")->capture_default_str()->check(CLI::PositiveNumber);
  toy_cmd->add_option("--log", toy.log, "write one JSON line per step to this file");
  toy_cmd->add_option("--sample-bytes", toy.sample_bytes, "bytes to sample after training")->capture_default_str()->check(CLI::NonNegativeNumber);
  toy_cmd->add_option("--temperature", toy.temperature, "sampling temperature")->capture_default_str()->check(CLI::PositiveNumber);
  toy_cmd->add_option("--prompt", toy.prompt, "sampling prompt")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    metalm::init_threads_from_env();
    if (threads >= 0) metalm::set_num_threads(threads);
    if (toy_cmd->parsed()) return metalm::apps::run_toy_lm(toy);
  } catch (const metalm::Error& e) {
    std::fprintf(stderr, "metalm: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metalm: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
