// Model-level benchmarks for bench/run: a GPT-style decoder training step (forward, cross
// entropy, backward, AdamW) and a BERT-style encoder forward, at the shapes of baselines.md.
// Prints one JSON line per case: median seconds per step, tokens per step, model FLOPs (matmul
// only, training = 3x forward, as baselines.md counts them), and the allocator's peak bytes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "metalm/core/allocator.h"
#include "metalm/core/threads.h"
#include "metalm/nn/transformer.h"
#include "metalm/ops/loss.h"
#include "metalm/train/optim.h"

using namespace metalm;

namespace {

constexpr int64_t kLayers = 6, kDim = 384, kHeads = 6, kFfn = 1536, kVocab = 8192;
constexpr int64_t kBatch = 8, kSeq = 256;

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Matmul FLOPs of one forward token: 24 d^2 per layer (qkv, out, ffn) + attention 4 T d
// (causal counted in full, as baselines.md) + the vocabulary projection 2 d V.
double forward_flops_per_token(bool lm_head) {
  double per_layer = 2.0 * (4.0 * kDim * kDim + 2.0 * kDim * kFfn) + 4.0 * kSeq * kDim;
  return kLayers * per_layer + (lm_head ? 2.0 * kDim * kVocab : 0.0);
}

Tensor random_tokens(uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> ids(kBatch * kSeq);
  for (auto& x : ids) x = g.randint(3, kVocab);
  return Tensor::from_vector<int64_t>({kBatch, kSeq}, ids);
}

void report(const char* name, std::vector<double> times, double flops_per_step, size_t peak) {
  std::sort(times.begin(), times.end());
  const double sec = times[times.size() / 2];
  std::printf("{\"name\": \"%s\", \"seconds\": %.6e, \"tokens\": %lld, \"flops\": %.6e, "
              "\"peak_bytes\": %zu, \"threads\": %d}\n",
              name, sec, static_cast<long long>(kBatch * kSeq), flops_per_step, peak,
              get_num_threads());
  std::fflush(stdout);
}

void bench_gpt_train(int steps) {
  nn::DecoderConfig cfg;
  cfg.decoder_embed_dim = kDim;
  cfg.decoder_attention_heads = kHeads;
  cfg.decoder_ffn_embed_dim = kFfn;
  cfg.decoder_layers = kLayers;
  cfg.vocab_size = kVocab;
  cfg.subln = false;  // plain Pre-LN GPT, as the PyTorch baseline
  cfg.share_decoder_input_output_embed = true;
  cfg.max_target_positions = kSeq;
  nn::postprocess(cfg);
  Generator gen(1);
  nn::Decoder model(cfg, gen);
  train::AdamW opt({{model.trainable_parameters(), 0.01, 1.0}}, {3e-4, 0.9, 0.98, 1e-8});
  Tensor tokens = random_tokens(2), targets = random_tokens(3).reshape({kBatch * kSeq});
  auto step = [&] {
    nn::DecoderInputs in;
    in.tokens = tokens;
    Tensor logits = model.forward(in).logits.reshape({kBatch * kSeq, kVocab});
    ops::cross_entropy(logits, targets).backward();
    opt.step();
    opt.zero_grad();
  };
  step();  // warm up
  memory_reset_peak();
  const size_t base = memory_stats().current_bytes;
  std::vector<double> t;
  for (int i = 0; i < steps; ++i) {
    auto a = std::chrono::steady_clock::now();
    step();
    t.push_back(seconds_since(a));
  }
  report("gpt_train_step_6L_d384_B8xT256", t, 3.0 * forward_flops_per_token(true) * kBatch * kSeq,
         memory_stats().peak_bytes - base);
}

void bench_bert_forward(int steps) {
  nn::EncoderConfig cfg;
  cfg.encoder_embed_dim = kDim;
  cfg.encoder_attention_heads = kHeads;
  cfg.encoder_ffn_embed_dim = kFfn;
  cfg.encoder_layers = kLayers;
  cfg.vocab_size = kVocab;
  cfg.subln = false;
  cfg.max_source_positions = kSeq;
  nn::postprocess(cfg);
  Generator gen(4);
  nn::Encoder model(cfg, gen);
  model.eval();
  Tensor tokens = random_tokens(5);
  auto step = [&] {
    NoGradGuard ng;
    nn::EncoderInputs in;
    in.tokens = tokens;
    in.features_only = true;
    return model.forward(in).features;
  };
  step();
  memory_reset_peak();
  const size_t base = memory_stats().current_bytes;
  std::vector<double> t;
  for (int i = 0; i < steps; ++i) {
    auto a = std::chrono::steady_clock::now();
    step();
    t.push_back(seconds_since(a));
  }
  report("bert_encoder_forward_6L_d384_B8xT256", t, forward_flops_per_token(false) * kBatch * kSeq,
         memory_stats().peak_bytes - base);
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 10;
  std::string filter;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) steps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--steps N] [--filter SUBSTRING]\n", argv[0]);
      return 2;
    }
  }
  init_threads_from_env();
  if (filter.empty() || std::string("gpt_train_step").find(filter) != std::string::npos ||
      filter.find("gpt") != std::string::npos)
    bench_gpt_train(steps);
  if (filter.empty() || filter.find("bert") != std::string::npos) bench_bert_forward(steps);
  return 0;
}
