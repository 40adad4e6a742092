// `metalm toy-lm`: the interim main job until MetaLM pretraining lands. Trains a byte-level
// models::Decoder (built by the factory from a config in configs/) on a text file with AdamW, a
// warmup + cosine schedule and a JSONL log (train/), prints the loss falling against the
// text's unigram entropy, and samples text through the KV cache.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <vector>

#include "apps/common.h"
#include "metalm/autograd/autograd.h"
#include "metalm/core/random.h"
#include "metalm/data/progress.h"
#include "metalm/infer/generate.h"
#include "metalm/models/factory.h"
#include "metalm/models/stack.h"
#include "metalm/ops/loss.h"
#include "metalm/train/logger.h"
#include "metalm/train/optim.h"
#include "metalm/train/schedule.h"

namespace metalm::apps {
namespace {

using Clock = std::chrono::steady_clock;

struct ToyLmOptions {
  CommonOptions common;
  std::string config = "configs/toy-byte-lm.json";
  std::string data = "data/kjv.txt";
  std::string log;  // JSONL loss log (optional)
  int64_t steps = 600;
  int64_t batch = 16;
  int64_t seq_len = 128;
  double lr = 2e-3;
  int64_t warmup = 50;
  double weight_decay = 0.1;
  double clip = 1.0;
  int64_t eval_every = 100;
  int64_t eval_batches = 8;
  int64_t sample_bytes = 300;
  double temperature = 0.8;
  std::string prompt = "And God said";
};

std::vector<uint8_t> read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MLM_CHECK(f.good(), IoError, "[toy-lm] cannot open data file '", path,
            "' (run scripts/fetch_data.sh, or pass --data FILE)");
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

double unigram_entropy(const std::vector<uint8_t>& bytes, size_t begin, size_t end) {
  std::vector<double> count(256, 0.0);
  for (size_t i = begin; i < end; ++i) count[bytes[i]] += 1;
  double h = 0, n = static_cast<double>(end - begin);
  for (double c : count)
    if (c > 0) h -= c / n * std::log(c / n);
  return h;
}

// Random windows of seq_len + 1 bytes from [begin, end): inputs and next-byte targets.
void make_batch(const std::vector<uint8_t>& bytes, size_t begin, size_t end, int64_t B, int64_t T,
                Generator& gen, Tensor& ids, Tensor& targets) {
  ids = Tensor::empty({B, T}, DType::i64);
  targets = Tensor::empty({B * T}, DType::i64);
  int64_t* ip = ids.data<int64_t>();
  int64_t* tp = targets.data<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const size_t start =
        begin + static_cast<size_t>(gen.randint(0, static_cast<int64_t>(end - begin) - T - 1));
    for (int64_t t = 0; t < T; ++t) {
      ip[b * T + t] = bytes[start + t];
      tp[b * T + t] = bytes[start + t + 1];
    }
  }
}

// ids: [B, T] -> logits [B T, vocab]
Tensor logits_of(models::Decoder& lm, const Tensor& ids) {
  models::StackInputs in;
  in.tokens = ids;
  Tensor logits = lm.forward(in).logits;
  return logits.reshape({-1, logits.size(2)});
}

int run_toy_lm(const ToyLmOptions& o) {
  const models::ModelConfig cfg = models::load_model_config_file(o.config);
  MLM_CHECK(cfg.model_type == "decoder" && cfg.decoder.vocab_size == 256, ValueError, "[toy-lm] ",
            o.config, ": expected a decoder with vocab_size 256 (one id per byte)");
  MLM_CHECK(o.steps >= 0 && o.batch > 0 && o.seq_len > 1, ValueError,
            "[toy-lm] --steps, --batch and --seq-len must be positive");
  MLM_CHECK(o.seq_len + 1 <= cfg.decoder.max_positions, ValueError, "[toy-lm] --seq-len ",
            o.seq_len, " exceeds the config's max_target_positions ", cfg.decoder.max_positions,
            " (sampling needs one more)");
  const std::vector<uint8_t> bytes = read_text(o.data);
  const size_t split = bytes.size() / 20 * 19;  // last 5% held out
  MLM_CHECK(bytes.size() / 20 > static_cast<size_t>(o.seq_len) + 1, ValueError, "[toy-lm] '",
            o.data, "' is too small (", bytes.size(), " bytes) for --seq-len ", o.seq_len);
  const double h1 = unigram_entropy(bytes, 0, split);
  std::printf("data: %s, %zu bytes (train %zu, validation %zu)\n", o.data.c_str(), bytes.size(),
              split, bytes.size() - split);
  std::printf("unigram entropy of the training bytes: %.3f nats/byte (%.3f bits)\n", h1,
              h1 / std::log(2.0));

  std::unique_ptr<models::Model> model = models::build_model(cfg, {o.common.seed, true});
  auto& lm = dynamic_cast<models::Decoder&>(*model);
  lm.compute = compute_mode(o.common);
  std::printf("model: %s, %lld layers, d=%lld, %lld heads, context %lld, %.2fM parameters\n",
              o.config.c_str(), static_cast<long long>(cfg.decoder.layers),
              static_cast<long long>(cfg.decoder.embed_dim),
              static_cast<long long>(cfg.decoder.attention_heads),
              static_cast<long long>(o.seq_len), static_cast<double>(lm.parameter_count()) / 1e6);
  train::AdamW opt(train::make_param_groups(lm.named_parameters(), o.weight_decay,
                                            {"embed_positions"}),
                   {o.lr, 0.9, 0.95, 1e-8});
  const train::LrSchedule schedule{o.lr, o.warmup, std::max<int64_t>(o.steps, 1),
                                   train::DecayKind::cosine, 0.0};
  const std::vector<Tensor> params = lm.parameters();
  std::unique_ptr<train::JsonlLogger> log;
  if (!o.log.empty()) log = std::make_unique<train::JsonlLogger>(o.log);

  auto evaluate = [&]() {
    NoGradGuard ng;
    lm.eval();
    Generator g(o.common.seed + 2);  // the same validation windows every time
    double total = 0;
    for (int64_t i = 0; i < o.eval_batches; ++i) {
      Tensor ids, targets;
      make_batch(bytes, split, bytes.size(), o.batch, o.seq_len, g, ids, targets);
      total += ops::cross_entropy(logits_of(lm, ids), targets).item<double>();
    }
    lm.train();
    return total / static_cast<double>(o.eval_batches);
  };

  Generator data_gen(o.common.seed + 1);
  const double first_val = evaluate();
  std::printf("step %5d  val loss %.3f\n", 0, first_val);
  const auto t0 = Clock::now();
  double running = 0, last_val = first_val;
  int64_t running_n = 0;
  for (int64_t step = 1; step <= o.steps; ++step) {
    const double lr = schedule.lr_at(step);
    opt.set_lr(lr);
    Tensor ids, targets;
    make_batch(bytes, 0, split, o.batch, o.seq_len, data_gen, ids, targets);
    Tensor loss = ops::cross_entropy(logits_of(lm, ids), targets);
    loss.backward();
    const double gnorm = train::clip_grad_norm(params, o.clip);
    opt.step();
    opt.zero_grad();
    const double l = loss.item<double>();
    running += l;
    ++running_n;
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    const double tok_s = static_cast<double>(step * o.batch * o.seq_len) / elapsed;
    if (log)
      log->write({{"step", step}, {"loss", l}, {"lr", lr}, {"grad_norm", gnorm},
                  {"tokens_per_s", tok_s}, {"wall_s", elapsed}});
    if (step % 20 == 0 || step == o.steps) {
      std::printf("step %5lld/%lld  loss %.3f  lr %.2e  %.0f tok/s  ETA %s\n",
                  static_cast<long long>(step), static_cast<long long>(o.steps),
                  running / static_cast<double>(running_n), lr, tok_s,
                  data::format_duration(elapsed / static_cast<double>(step) *
                                         static_cast<double>(o.steps - step))
                      .c_str());
      std::fflush(stdout);
      running = 0;
      running_n = 0;
    }
    if (step % o.eval_every == 0 || step == o.steps) {
      last_val = evaluate();
      std::printf("step %5lld  val loss %.3f nats/byte (%.3f bits)\n", static_cast<long long>(step),
                  last_val, last_val / std::log(2.0));
      if (log) log->write({{"step", step}, {"val_loss", last_val}});
    }
  }
  std::printf("validation loss %.3f -> %.3f nats/byte; unigram entropy %.3f nats/byte\n", first_val,
              last_val, h1);

  if (o.sample_bytes > 0) {
    const std::string prompt = o.prompt.empty() ? std::string("\n") : o.prompt;
    std::printf("\n--- sample (temperature %.2f) ---\n%s", o.temperature, prompt.c_str());
    std::vector<int64_t> ids;
    for (char c : prompt) ids.push_back(static_cast<uint8_t>(c));
    infer::GenerateOptions g;
    g.max_new_tokens = o.sample_bytes;
    g.temperature = o.temperature;
    g.seed = o.common.seed + 3;
    g.slide_keep = o.seq_len / 2;  // a full context restarts from its second half
    infer::generate(lm, ids, g, [](int64_t id) { std::putchar(static_cast<int>(id)); });
    std::printf("\n--- end of sample ---\n");
  }
  return last_val < h1 ? 0 : 2;
}

}  // namespace

Command add_toy_lm_command(CLI::App& app) {
  auto o = std::make_shared<ToyLmOptions>();
  CLI::App* cmd = app.add_subcommand(
      "toy-lm",
      "Train a small byte-level Transformer LM (a decoder config with vocab_size 256) on a text\n"
      "file, print the loss, sample text.\n"
      "Example: metalm toy-lm --data data/kjv.txt --steps 600 --threads 2");
  add_common(cmd, o->common);
  add_precision(cmd, o->common);
  cmd->add_option("--config", o->config, "decoder config (vocab_size 256)")->capture_default_str();
  cmd->add_option("--data", o->data, "training text (bytes)")->capture_default_str();
  cmd->add_option("--steps", o->steps, "optimizer steps")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch", o->batch, "sequences per step")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seq-len", o->seq_len, "context length")->capture_default_str()->check(CLI::Range(2, 4096));
  cmd->add_option("--lr", o->lr, "peak learning rate (warmup, then cosine)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", o->warmup, "warmup steps")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--eval-every", o->eval_every, "validation interval (steps)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--log", o->log, "write one JSON line per step to this file");
  cmd->add_option("--sample-bytes", o->sample_bytes, "bytes to sample after training")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", o->temperature, "sampling temperature")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--prompt", o->prompt, "sampling prompt")->capture_default_str();
  return {cmd, &o->common, [o] { return run_toy_lm(*o); }};
}

}  // namespace metalm::apps
