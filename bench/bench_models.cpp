// Model-level benchmarks for bench/run: a GPT-style decoder training step (forward, cross
// entropy, backward, AdamW) and a BERT-style encoder forward, at the shapes of baselines.md, and
// the two pretraining steps of the other objectives at the same sizes: an MLM text encoder
// (train::MlmObjective) and a MetaLM (train::SemiCausalObjective: the GPT case's decoder with a
// docked 6L d384 text encoder, trained as `metalm pretrain` trains it). Their architectures are
// bench/configs/*.json, which torch_models.py reads too.
// --precision bf16 runs the cases with bf16 GEMMs (ops::MatmulPrecision; names get the suffix
// _bf16); --precision auto with what ops::choose_matmul_precision picks on this host (suffix
// _auto, the choice and its reason in the JSON). Prints one JSON line per case: median seconds
// per step, tokens per step (the tokens of the model input: the decoder's, or the MLM encoder's),
// model FLOPs (matmul only, training = 3x forward, as baselines.md counts them), and peak memory
// (see time_and_report). The decode cases: greedy generation through the KV cache at batch 1 and
// 8, with f32 weights and with weights stored as bf16, and the memory read bandwidth that bounds
// them.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "metalm/autograd/autograd.h"
#include "metalm/core/allocator.h"
#include "metalm/core/threads.h"
#include "metalm/infer/generate.h"
#include "metalm/models/factory.h"
#include "metalm/models/metalm.h"
#include "metalm/models/stack.h"
#include "metalm/nn/layers.h"
#include "metalm/nn/transformer.h"
#include "metalm/ops/loss.h"
#include "metalm/ops/matmul.h"
#include "metalm/ops/precision_auto.h"
#include "metalm/train/objectives.h"
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

// Resident set size now, from /proc/self/statm (pages), and the process's high-water mark.
size_t current_rss_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages_total = 0, pages_resident = 0;
  f >> pages_total >> pages_resident;
  return pages_resident * 4096;
}
size_t max_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<size_t>(u.ru_maxrss) * 1024;
}

// Times `step` (after one warm-up call) and prints the JSON line. Memory, measured the same way
// as bench/torch_models.py: peak RSS during warm-up and timed steps minus the RSS after the model
// and inputs were built (activations, gradients, optimizer state, workspace), and the allocator's
// own peak of live tensor bytes over the timed steps.
// `extra` is appended to the JSON object as it is (empty, or `, "key": value...`), then what
// `late` returns after the timed steps (what a step has seen, e.g. how many targets it scored).
template <typename Step>
void time_and_report(const std::string& name, const Step& step, int steps, double flops_per_step,
                     const std::string& extra,
                     const std::function<std::string()>& late = nullptr) {
  const size_t rss_before = current_rss_bytes();
  step();  // warm up
  memory_reset_peak();
  const size_t base = memory_stats().current_bytes;
  std::vector<double> times;
  for (int i = 0; i < steps; ++i) {
    auto a = std::chrono::steady_clock::now();
    step();
    times.push_back(seconds_since(a));
  }
  const size_t tensor_peak = memory_stats().peak_bytes - base;
  const size_t rss_peak = max_rss_bytes();
  const size_t rss_growth = rss_peak > rss_before ? rss_peak - rss_before : 0;
  std::sort(times.begin(), times.end());
  std::printf("{\"name\": \"%s\", \"seconds\": %.6e, \"tokens\": %lld, \"flops\": %.6e, "
              "\"peak_bytes\": %zu, \"tensor_peak_bytes\": %zu, \"precision\": \"%s\", "
              "\"threads\": %d%s}\n",
              name.c_str(), times[times.size() / 2], static_cast<long long>(kBatch * kSeq),
              flops_per_step, rss_growth, tensor_peak,
              ops::matmul_precision_name(ops::matmul_precision()), get_num_threads(),
              (extra + (late ? late() : std::string())).c_str());
  std::fflush(stdout);
}

// The GPT of the train and decode cases: a plain Pre-LN decoder, as the PyTorch baseline.
nn::DecoderConfig gpt_config() {
  nn::DecoderConfig cfg;
  cfg.embed_dim = kDim;
  cfg.attention_heads = kHeads;
  cfg.ffn_embed_dim = kFfn;
  cfg.layers = kLayers;
  cfg.vocab_size = kVocab;
  cfg.subln = false;
  cfg.share_input_output_embed = true;
  cfg.max_positions = kSeq;
  nn::postprocess(cfg);
  return cfg;
}

void bench_gpt_train(const std::string& name, int steps, const std::string& extra) {
  const nn::DecoderConfig cfg = gpt_config();
  Generator gen(1);
  models::Decoder model(cfg, gen);
  train::AdamW opt({{model.trainable_parameters(), {}, 0.01, 1.0}}, {3e-4, 0.9, 0.98, 1e-8});
  Tensor tokens = random_tokens(2), targets = random_tokens(3).reshape({kBatch * kSeq});
  auto step = [&] {
    models::StackInputs in;
    in.tokens = tokens;
    Tensor logits = model.forward(in).logits.reshape({kBatch * kSeq, kVocab});
    ops::cross_entropy(logits, targets).backward();
    opt.step();
    opt.zero_grad();
  };
  time_and_report(name, step, steps, 3.0 * forward_flops_per_token(true) * kBatch * kSeq, extra);
}

// ------------------------------------------------------------------ decoding

// Read bandwidth of main memory: the best of 3 passes summing a 512 MiB buffer on every thread
// (far beyond any cache), in GB/s. Batch-1 decoding reads every weight once per token, so
// bandwidth / weight bytes bounds its tokens/s.
double read_bandwidth_gbs() {
  const size_t n = (512u << 20) / sizeof(float);
  std::vector<float> buf(n, 1.0f);
  double best = 0;
  for (int trial = 0; trial < 3; ++trial) {
    const auto a = std::chrono::steady_clock::now();
    // Independent f32 lanes (kLanes of them: a few SIMD registers per thread, so that several
    // add chains are in flight). One scalar accumulator would be a chain of dependent adds,
    // bound by add latency at a fraction of memory speed (and inexact beyond 2^24 ones).
    constexpr size_t kLanes = 64;  // n is a multiple
    double sum = 0;
#pragma omp parallel reduction(+ : sum)
    {
      float acc[kLanes] = {};
#pragma omp for schedule(static)
      for (size_t block = 0; block < n / kLanes; ++block)
        for (size_t j = 0; j < kLanes; ++j) acc[j] += buf[block * kLanes + j];
      for (float lane : acc) sum += lane;
    }
    const double s = seconds_since(a);
    // Every element read once: n ones (each lane's count stays far below 2^24, so exact).
    if (sum != static_cast<double>(n))
      std::fprintf(stderr, "bandwidth check sum %f, expected %zu\n", sum, n);
    best = std::max(best, static_cast<double>(n * sizeof(float)) / s / 1e9);
  }
  return best;
}

// Greedy decoding through the KV cache (infer::generate; infer::generate_batch for batch > 1):
// the GPT case's model, `batch` 128-token prompts, 128 new tokens each; with `bf16_weights`,
// its matrices stored as bf16 (nn::store_weights, as --weights-dtype bf16 does). "seconds": a
// whole call (the prompts read once, then 127 one-token steps); "prefill_seconds": a call that
// generates one token (the prompts' forward); "weight_bytes": the model's state as stored (bf16
// matrices 2 bytes a value), which every step reads once. bench/combine.py turns them into the decode rate
// and its fraction of the bandwidth bound (batch x bandwidth / weight bytes a step).
void bench_gpt_decode(const std::string& name, int steps, const std::string& extra,
                      int64_t batch, bool bf16_weights) {
  constexpr int64_t kPrompt = 128, kNew = 128;
  Generator gen(1);
  models::Decoder model(gpt_config(), gen);
  model.eval();
  if (bf16_weights) nn::store_weights(model, DType::bf16);
  Generator g(9);
  std::vector<std::vector<int64_t>> prompts(static_cast<size_t>(batch),
                                            std::vector<int64_t>(kPrompt));
  for (auto& prompt : prompts)
    for (auto& x : prompt) x = g.randint(3, kVocab);
  infer::GenerateOptions o;  // greedy, no stop ids: always kNew tokens
  auto decode = [&](int64_t n) {  // tokens out, over all rows
    o.max_new_tokens = n;
    if (batch == 1) return static_cast<int64_t>(infer::generate(model, prompts[0], o).size());
    int64_t total = 0;
    for (const auto& row : infer::generate_batch(model, prompts, o))
      total += static_cast<int64_t>(row.size());
    return total;
  };
  decode(2);
  std::vector<double> prefill;
  for (int i = 0; i < steps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    decode(1);
    prefill.push_back(seconds_since(a));
  }
  std::sort(prefill.begin(), prefill.end());
  std::vector<double> times;
  for (int i = 0; i < steps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    if (decode(kNew) != batch * kNew) std::fprintf(stderr, "short decode\n");
    times.push_back(seconds_since(a));
  }
  std::sort(times.begin(), times.end());
  const double per_token = kLayers * 2.0 * (4.0 * kDim * kDim + 2.0 * kDim * kFfn) + 2.0 * kDim * kVocab;
  std::printf("{\"name\": \"%s\", \"seconds\": %.6e, \"prefill_seconds\": %.6e, \"tokens\": %lld, "
              "\"batch\": %lld, \"weights_dtype\": \"%s\", \"flops\": %.6e, "
              "\"weight_bytes\": %.0f, \"bandwidth_gbs\": %.2f, \"precision\": \"%s\", "
              "\"threads\": %d%s}\n",
              name.c_str(), times[times.size() / 2], prefill[prefill.size() / 2],
              static_cast<long long>(batch * kNew), static_cast<long long>(batch),
              bf16_weights ? "bf16" : "f32", per_token * static_cast<double>(batch * (kPrompt + kNew)),
              static_cast<double>(model.state_bytes()), read_bandwidth_gbs(),
              ops::matmul_precision_name(ops::matmul_precision()), get_num_threads(), extra.c_str());
  std::fflush(stdout);
}

void bench_bert_forward(const std::string& name, int steps, const std::string& extra) {
  nn::EncoderConfig cfg;
  cfg.embed_dim = kDim;
  cfg.attention_heads = kHeads;
  cfg.ffn_embed_dim = kFfn;
  cfg.layers = kLayers;
  cfg.vocab_size = kVocab;
  cfg.subln = false;
  cfg.max_positions = kSeq;
  nn::postprocess(cfg);
  Generator gen(4);
  models::Encoder model(cfg, gen);
  model.eval();
  Tensor tokens = random_tokens(5);
  auto step = [&] {
    NoGradGuard ng;
    models::StackInputs in;
    in.tokens = tokens;
    in.features_only = true;
    return model.forward(in).features;
  };
  time_and_report(name, step, steps, forward_flops_per_token(false) * kBatch * kSeq, extra);
}

// ------------------------------------------------------------------ pretraining objectives

// The same special ids as the tokenizer's (and tests/reference/ref_pretrain.py's).
constexpr int64_t kBos = 0, kFirstOrdinary = 9;
constexpr int64_t kSpanLength = 32;       // spans of about 16 .. 32 tokens
constexpr double kSpanProportion = 0.25;  // covering ~25% of the tokens (a bit more: see below)
constexpr int64_t kEncoderTrainLayers = 1;  // metalm pretrain's --encoder-train-layers default

models::ModelConfig bench_config(const std::string& file) {
  return models::load_model_config_file(std::string(METALM_BENCH_CONFIG_DIR) + "/" + file);
}

// Packed sequences as the corpus gives them: ids i64 [B, n], <s> and then ordinary tokens
// (no padding, no </line>), and the seed of the objective's draws. torch_models.py draws the
// same ids (its port of Generator::randint), and so the objective's same masks and spans.
train::SequenceBatch pretrain_batch(int64_t n, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> ids(static_cast<size_t>(kBatch * n));
  for (int64_t b = 0; b < kBatch; ++b)
    for (int64_t t = 0; t < n; ++t)
      ids[b * n + t] = t == 0 ? kBos : g.randint(kFirstOrdinary, kVocab);
  return {Tensor::from_vector<int64_t>({kBatch, n}, ids), seed + 1000};
}

std::string parameters_json(models::Model& model) {
  return ", \"parameters\": " + std::to_string(model.parameter_count()) +
         ", \"trainable_parameters\": " + std::to_string(model.parameter_count(true));
}

// One step as the trainer takes it (train::Trainer::step, without the lr schedule, clipping
// and logging, as the GPT case): the objective's loss (its draws included), backward, AdamW.
train::LossOutput objective_step(train::Objective& objective, models::Model& model,
                                 const train::SequenceBatch& batch, train::AdamW& opt) {
  train::LossOutput l = objective.loss(model, batch);
  l.loss.backward();
  opt.step();
  opt.zero_grad();
  return l;
}

// The MLM encoder: the batch is [B, T] ids (the encoder reads them all, so T tokens a row as in
// the GPT case); 15% of the ordinary tokens chosen, 80% of those <mask>, 10% random, 10% kept;
// logits and cross entropy on every position (ignore_index elsewhere), as MlmObjective does.
// FLOPs: the GPT case's (same layers, T and tied vocabulary projection; attention counted in
// full: 4 T d per token and layer).
void bench_mlm_train(const std::string& name, int steps, const std::string& extra) {
  auto model = models::build_model(bench_config("mlm_6L_d384.json"), {6, true});
  data::MlmOptions mo;  // 15% / 80 / 10 / 10, <mask> = 4, pad = 1, ordinary ids from 9
  mo.vocab_size = kVocab;
  train::MlmObjective objective(mo);
  objective.check_model(*model);
  train::AdamW opt({{model->trainable_parameters(), {}, 0.01, 1.0}}, {3e-4, 0.9, 0.98, 1e-8});
  const train::SequenceBatch batch = pretrain_batch(kSeq, 7);
  double masked = 0;
  auto step = [&] { masked = objective_step(objective, *model, batch, opt).scored; };
  auto draws = [&] {
    return ", \"draws\": {\"masked\": " + std::to_string(static_cast<int64_t>(masked)) + "}";
  };
  time_and_report(name, step, steps, 3.0 * forward_flops_per_token(true) * kBatch * kSeq,
                  extra + parameters_json(*model), draws);
}

// Matmul FLOPs of the docked encoder's part of a MetaLM step: each layer's forward over the
// S x L span rows ([<s>] + span, padded to the longest: pads are computed, as the causal half of
// the attention is counted; attention 4 L d a position), the backward (2x forward) of the
// trained top layers only (nothing below them needs a gradient), and the complex connector's two
// d x d Linears on the `docked` rows, forward and backward.
double docked_encoder_flops(int64_t S, int64_t L, int64_t docked) {
  const double per_layer = 2.0 * (4.0 * kDim * kDim + 2.0 * kDim * kFfn) + 4.0 * L * kDim;
  return static_cast<double>(S * L) * per_layer * (kLayers + 2.0 * kEncoderTrainLayers) +
         3.0 * 2.0 * (2.0 * kDim * kDim) * static_cast<double>(docked);
}

// MetaLM's semi-causal step: the batch is [B, T + 1] ids (the decoder reads T a row); per row,
// spans of length 32 drawn until they cover more than 25% of the tokens (this batch: 26 spans of
// 646 tokens, 31.5%, as each row's last span crosses the bar), re-encoded by the docked encoder
// (frozen but its top layer, embeddings and final LayerNorm frozen too, as `metalm pretrain`
// trains it) and docked through the complex connector; the exact span loss (DESIGN D4).
// FLOPs: the GPT case's decoder + docked_encoder_flops of this batch's spans.
void bench_metalm_train(const std::string& name, int steps, const std::string& extra) {
  auto model = models::build_model(bench_config("metalm_6L_d384.json"), {8, true});
  dynamic_cast<models::MetaLM&>(*model).freeze_encoder("text", kEncoderTrainLayers);
  train::SemiCausalOptions so;  // encoder "text", exact loss, <s> = 0, pad = 1, </line> = 8
  so.spans.length = kSpanLength;
  so.spans.proportion = kSpanProportion;
  train::SemiCausalObjective objective(so);
  objective.check_model(*model);
  train::AdamW opt({{model->trainable_parameters(), {}, 0.01, 1.0}}, {3e-4, 0.9, 0.98, 1e-8});
  const train::SequenceBatch batch = pretrain_batch(kSeq + 1, 8);
  // The draws once here for the FLOPs and the record; every step redraws them (the same ones:
  // same batch, same seed), as training does, so they are in the timed step too.
  const auto t0 = std::chrono::steady_clock::now();
  const train::SemiCausalObjective::Prepared p = objective.prepare(batch);
  const double draw_seconds = seconds_since(t0);
  const models::SpanInputs& sp = p.inputs.spans.at(0);
  const int64_t S = sp.tokens.size(0), L = sp.tokens.size(1);
  double scored = 0;
  for (float v : p.score.to_vector<float>()) scored += v;
  char draws[256];
  std::snprintf(draws, sizeof draws,
                ", \"draws\": {\"spans\": %lld, \"span_rows_length\": %lld, "
                "\"span_tokens\": %lld, \"scored\": %lld}, \"draw_seconds\": %.3e",
                static_cast<long long>(S), static_cast<long long>(L),
                static_cast<long long>(p.span_tokens), static_cast<long long>(scored),
                draw_seconds);
  auto step = [&] { objective_step(objective, *model, batch, opt); };
  const double flops = 3.0 * forward_flops_per_token(true) * kBatch * kSeq +
                       docked_encoder_flops(S, L, p.span_tokens);
  time_and_report(name, step, steps, flops, extra + parameters_json(*model) + draws);
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 10;
  std::string filter, precision = "f32";
  try {
    for (int i = 1; i < argc; ++i) {
      if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) steps = std::atoi(argv[++i]);
      else if (!std::strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
      else if (!std::strcmp(argv[i], "--precision") && i + 1 < argc) precision = argv[++i];
      else throw ValueError(std::string("unknown argument '") + argv[i] + "'");
    }
    if (precision != "auto") ops::parse_matmul_precision(precision);
  } catch (const Error& e) {
    std::fprintf(stderr,
                 "%s\nusage: %s [--steps N] [--filter SUBSTRING] [--precision f32|bf16|auto]\n",
                 e.what(), argv[0]);
    return 2;
  }
  init_threads_from_env();
  // One precision per process, so each case's RSS growth is its own (bench/run runs both).
  // Case names carry the suffix bench/combine.py and torch_models.py agree on.
  const std::string suffix = precision == "f32" ? "" : "_" + precision;
  std::string extra;
  ops::MatmulPrecision chosen = ops::MatmulPrecision::f32;
  if (precision == "auto") {
    const ops::PrecisionChoice c = ops::choose_matmul_precision(get_num_threads());
    chosen = c.precision;
    const nlohmann::ordered_json why = {
        {"f32_gflops", c.f32_gflops}, {"bf16_gflops", c.bf16_gflops}, {"reason", c.reason}};
    extra = ", \"precision_auto\": " + why.dump();
  } else {
    chosen = ops::parse_matmul_precision(precision);
  }
  const ops::MatmulPrecisionGuard guard(chosen);  // one precision per process
  const std::pair<const char*, void (*)(const std::string&, int, const std::string&)> cases[] = {
      {"gpt_train_step_6L_d384_B8xT256", bench_gpt_train},
      {"mlm_train_step_6L_d384_B8xT256", bench_mlm_train},
      {"metalm_train_step_6L_d384_B8xT256", bench_metalm_train},
      {"bert_encoder_forward_6L_d384_B8xT256", bench_bert_forward},
      {"gpt_decode_b1_6L_d384_V8192_p128_n128",
       [](const std::string& n, int s, const std::string& e) { bench_gpt_decode(n, s, e, 1, false); }},
      {"gpt_decode_b1_bf16weights_6L_d384_V8192_p128_n128",
       [](const std::string& n, int s, const std::string& e) { bench_gpt_decode(n, s, e, 1, true); }},
      {"gpt_decode_b8_6L_d384_V8192_p128_n128",
       [](const std::string& n, int s, const std::string& e) { bench_gpt_decode(n, s, e, 8, false); }},
      {"gpt_decode_b8_bf16weights_6L_d384_V8192_p128_n128",
       [](const std::string& n, int s, const std::string& e) { bench_gpt_decode(n, s, e, 8, true); }}};
  for (const auto& [base, run] : cases) {
    const std::string name = base + suffix;
    if (filter.empty() || name.find(filter) != std::string::npos) run(name, steps, extra);
  }
  return 0;
}
