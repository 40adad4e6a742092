// The metalm command line: one binary, one subcommand per job (DESIGN.md section 7).
// Errors from the library arrive as metalm::Error and leave as one line on stderr, exit code 1.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "apps/model_cmds.h"
#include "apps/toy_lm.h"
#include "metalm/core/error.h"
#include "metalm/core/threads.h"
#include "metalm/ops/matmul.h"

namespace {

void add_common(CLI::App* cmd, int& threads, uint64_t& seed) {
  cmd->add_option("--threads", threads, "worker threads (0 = all cores; env METALM_NUM_THREADS)")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--seed", seed, "random seed")->capture_default_str();
}

// --matmul-precision for the commands that compute (ops::set_matmul_precision).
void add_precision(CLI::App* cmd, std::string& precision) {
  cmd->add_option("--matmul-precision", precision,
                  "GEMM precision of linear layers and attention: f32 (full precision) or bf16 "
                  "(bf16 operands, f32 accumulation: about 2x faster GEMMs on AVX512-BF16 CPUs; "
                  "outputs move by about 0.1-1%)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"metalm: MetaLM, KOSMOS-1 and BEiT-3 in C++ (no Python at run time)", "metalm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "metalm 0.1.0");
  int threads = -1;
  std::string precision = "f32";

  metalm::apps::ToyLmOptions toy;
  CLI::App* toy_cmd = app.add_subcommand(
      "toy-lm",
      "Train a small byte-level Transformer LM on a text file, print the loss, sample text.\n"
      "Example: metalm toy-lm --data data/kjv.txt --steps 600 --threads 2");
  add_common(toy_cmd, threads, toy.seed);
  add_precision(toy_cmd, precision);
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

  metalm::apps::InitOptions init;
  CLI::App* init_cmd = app.add_subcommand(
      "init",
      "Write a freshly initialised model directory (config.json + model.safetensors) with the\n"
      "reference initialisation.\n"
      "Example: metalm init --config configs/gpt-preln.json --out runs/gpt --seed 1");
  add_common(init_cmd, threads, init.seed);
  init_cmd->add_option("--config", init.config, "architecture config (JSON)")->required();
  init_cmd->add_option("--out", init.out, "model directory to write")->required();

  metalm::apps::ForwardOptions fwd;
  uint64_t unused_seed = 0;
  CLI::App* fwd_cmd = app.add_subcommand(
      "forward",
      "Run a model on token ids and write its logits (decoders) or final hidden states\n"
      "(encoders) to a safetensors file.\n"
      "Example: metalm forward --model runs/gpt --tokens tokens.json --out logits.safetensors\n"
      "tokens.json holds a list of equal-length lists of ids, e.g. [[0, 17, 4], [0, 9, 2]].");
  add_common(fwd_cmd, threads, unused_seed);
  add_precision(fwd_cmd, precision);
  fwd_cmd->add_option("--model", fwd.model, "model directory")->required();
  fwd_cmd->add_option("--tokens", fwd.tokens, "JSON list of lists of token ids")->required();
  fwd_cmd->add_option("--out", fwd.out, "output safetensors file")->required();
  fwd_cmd->add_option("--split", fwd.split,
                      "multiway split position for encoders (-1: all vision expert A, 0: all "
                      "language expert B, p: first p tokens A)")
      ->capture_default_str();

  std::string info_dir;
  CLI::App* info_cmd = app.add_subcommand(
      "info",
      "Print a model directory's architecture and parameter count.\n"
      "Example: metalm info runs/gpt");
  add_common(info_cmd, threads, unused_seed);
  info_cmd->add_option("dir", info_dir, "model directory")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::Success& e) {  // --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {  // one line, as every other error (D8)
    std::fprintf(stderr, "metalm: error: %s (see --help)\n", e.what());
    return e.get_exit_code() == 0 ? 2 : e.get_exit_code();
  }
  try {
    metalm::init_threads_from_env();
    if (threads >= 0) metalm::set_num_threads(threads);
    metalm::ops::set_matmul_precision(metalm::ops::parse_matmul_precision(precision));
    if (toy_cmd->parsed()) return metalm::apps::run_toy_lm(toy);
    if (init_cmd->parsed()) return metalm::apps::run_init(init);
    if (fwd_cmd->parsed()) return metalm::apps::run_forward(fwd);
    if (info_cmd->parsed()) return metalm::apps::run_info(info_dir);
  } catch (const metalm::Error& e) {
    std::fprintf(stderr, "metalm: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metalm: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
