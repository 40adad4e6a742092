// `metalm forward`: a model directory on token ids, its logits or hidden states to a file, so
// any implementation can be compared with metalm on the same weights.
#include <cstdio>
#include <memory>

#include "apps/common.h"
#include "metalm/autograd/autograd.h"
#include "metalm/core/allocator.h"
#include "metalm/io/json.h"
#include "metalm/io/safetensors.h"
#include "metalm/models/model_dir.h"
#include "metalm/models/stack.h"

namespace metalm::apps {
namespace {

constexpr uint64_t kMaxTokenFileBytes = 64ull << 20;

struct ForwardOptions {
  CommonOptions common;
  std::string model, tokens, out;
  std::string output = "logits";
  int64_t split = -1;  // multiway split position (TorchScale default: -1, all A)
};

// [[ids...], ...] with equal lengths -> i64 [B, T].
Tensor read_tokens(const std::string& path) {
  const io::Json j = io::load_json_file(path, "forward", "token file", {kMaxTokenFileBytes});
  MLM_CHECK(j.is_array() && !j.empty(), FormatError, "[forward] ", path,
            ": expected a non-empty JSON list of lists of token ids");
  const size_t T = j[0].is_array() ? j[0].size() : 0;
  MLM_CHECK(T > 0, FormatError, "[forward] ", path, ": row 0 must be a non-empty list of ids");
  std::vector<int64_t> ids;
  for (size_t b = 0; b < j.size(); ++b) {
    MLM_CHECK(j[b].is_array() && j[b].size() == T, FormatError, "[forward] ", path, ": row ", b,
              " must be a list of ", T, " ids (all rows the same length)");
    for (const auto& v : j[b]) {
      MLM_CHECK(v.is_number_integer(), FormatError, "[forward] ", path, ": row ", b,
                " holds a non-integer value ", io::describe(v));
      ids.push_back(v.get<int64_t>());
    }
  }
  return Tensor::from_vector<int64_t>({static_cast<int64_t>(j.size()), static_cast<int64_t>(T)},
                                      ids);
}

double mb(size_t bytes) { return static_cast<double>(bytes) / 1e6; }

int run_forward(const ForwardOptions& o) {
  const Tensor tokens = read_tokens(o.tokens);  // bad input fails before the model is read
  const ops::ComputeMode mode = compute_mode(o.common);  // (auto measures: before the count)
  memory_reset_peak();
  const size_t base = memory_stats().current_bytes;
  std::unique_ptr<models::Model> m = models::load_model(o.model, o.common.seed);
  m->compute = mode;
  const size_t weights = static_cast<size_t>(m->state_bytes());
  const size_t load_peak = memory_stats().peak_bytes - base;
  memory_reset_peak();

  models::StackInputs in;
  in.tokens = tokens;
  in.route = nn::Route{o.split, false};
  in.features_only = o.output == "hidden";
  NoGradGuard ng;
  const models::StackOutput r = m->forward(in);
  const size_t forward_peak = memory_stats().peak_bytes - base;
  TensorMap out;
  if (r.logits.defined())
    out["logits"] = r.logits;
  else
    out["hidden_states"] = r.features;
  io::save_safetensors(o.out, out,
                       {{"model", o.model},
                        {"matmul_precision", ops::matmul_precision_name(mode.precision)}});
  const Tensor& t = out.begin()->second;
  std::printf("wrote %s: %s %s\n", o.out.c_str(), out.begin()->first.c_str(), t.str().c_str());
  std::printf("memory: weights %.2f MB; tensor peak %.2f MB while loading (%.3fx the weights), "
              "%.2f MB in the forward (weights + %.2f MB of activations); counted by the tensor "
              "allocator\n",
              mb(weights), mb(load_peak), static_cast<double>(load_peak) / static_cast<double>(weights),
              mb(forward_peak), mb(forward_peak - weights));
  return 0;
}

}  // namespace

Command add_forward_command(CLI::App& app) {
  auto o = std::make_shared<ForwardOptions>();
  CLI::App* cmd = app.add_subcommand(
      "forward",
      "Run a model on token ids and write its logits (or final hidden states with --output\n"
      "hidden, or when it has no output layer) to a safetensors file, and print its memory use.\n"
      "Example: metalm forward --model runs/gpt --tokens tokens.json --out logits.safetensors\n"
      "tokens.json holds a list of equal-length lists of ids, e.g. [[0, 17, 4], [0, 9, 2]].");
  add_common(cmd, o->common);
  add_precision(cmd, o->common);
  cmd->add_option("--model", o->model, "model directory")->required();
  cmd->add_option("--tokens", o->tokens, "JSON list of lists of token ids")->required();
  cmd->add_option("--out", o->out, "output safetensors file")->required();
  cmd->add_option("--output", o->output, "what to write: logits, or hidden (final hidden states)")
      ->capture_default_str()
      ->check(CLI::IsMember({"logits", "hidden"}));
  cmd->add_option("--split", o->split,
                  "multiway split position for encoders (-1: all vision expert A, 0: all "
                  "language expert B, p: first p tokens A)")
      ->capture_default_str();
  return {cmd, &o->common, [o] { return run_forward(*o); }};
}

}  // namespace metalm::apps
