#include "apps/toy_lm.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "metalm/core/random.h"
#include "metalm/ops/ops.h"
#include "metalm/train/optim.h"

namespace metalm::apps {
namespace {

using Clock = std::chrono::steady_clock;

struct Layer {
  Tensor ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
};

struct ToyGpt {
  int64_t d = 0, heads = 0, ctx = 0;
  Tensor wte, wpe, lnf_w, lnf_b;
  std::vector<Layer> layers;
  train::NamedTensors named;

  ToyGpt(const ToyLmOptions& o, Generator& gen) : d(o.d_model), heads(o.heads), ctx(o.seq_len) {
    auto param = [&](const std::string& name, Tensor t) {
      t.set_requires_grad();
      named.emplace_back(name, t);
      return t;
    };
    const double std = 0.02, proj_std = 0.02 / std::sqrt(2.0 * static_cast<double>(o.layers));
    wte = param("wte", gen.normal({256, d}, 0, std));
    wpe = param("wpe", gen.normal({ctx, d}, 0, std));
    for (int64_t l = 0; l < o.layers; ++l) {
      std::string p = "layers." + std::to_string(l) + ".";
      Layer y;
      y.ln1_w = param(p + "ln1.weight", Tensor::ones({d}));
      y.ln1_b = param(p + "ln1.bias", Tensor::zeros({d}));
      y.qkv_w = param(p + "qkv.weight", gen.normal({3 * d, d}, 0, std));
      y.qkv_b = param(p + "qkv.bias", Tensor::zeros({3 * d}));
      y.proj_w = param(p + "proj.weight", gen.normal({d, d}, 0, proj_std));
      y.proj_b = param(p + "proj.bias", Tensor::zeros({d}));
      y.ln2_w = param(p + "ln2.weight", Tensor::ones({d}));
      y.ln2_b = param(p + "ln2.bias", Tensor::zeros({d}));
      y.fc1_w = param(p + "fc1.weight", gen.normal({4 * d, d}, 0, std));
      y.fc1_b = param(p + "fc1.bias", Tensor::zeros({4 * d}));
      y.fc2_w = param(p + "fc2.weight", gen.normal({d, 4 * d}, 0, proj_std));
      y.fc2_b = param(p + "fc2.bias", Tensor::zeros({d}));
      layers.push_back(y);
    }
    lnf_w = param("ln_f.weight", Tensor::ones({d}));
    lnf_b = param("ln_f.bias", Tensor::zeros({d}));
  }

  // ids: i64 [B, T] -> logits [B*T, 256]
  Tensor forward(const Tensor& ids) const {
    const int64_t B = ids.size(0), T = ids.size(1), hd = d / heads;
    Tensor x = ops::add(ops::embedding(wte, ids), wpe.slice(0, 0, T));
    ops::AttentionMask causal;
    causal.kind = ops::AttnMaskKind::causal;
    for (const Layer& y : layers) {
      Tensor h = ops::layer_norm(x, y.ln1_w, y.ln1_b);
      Tensor qkv = ops::linear(h, y.qkv_w, y.qkv_b).reshape({B, T, 3, heads, hd});
      Tensor q = qkv.slice(2, 0, 1).squeeze(2).permute({0, 2, 1, 3});  // [B, H, T, hd]
      Tensor k = qkv.slice(2, 1, 2).squeeze(2).permute({0, 2, 1, 3});
      Tensor v = qkv.slice(2, 2, 3).squeeze(2).permute({0, 2, 1, 3});
      Tensor a = ops::attention(q, k, v, causal).permute({0, 2, 1, 3}).reshape({B, T, d});
      x = ops::add(x, ops::linear(a, y.proj_w, y.proj_b));
      h = ops::layer_norm(x, y.ln2_w, y.ln2_b);
      h = ops::linear(ops::gelu(ops::linear(h, y.fc1_w, y.fc1_b)), y.fc2_w, y.fc2_b);
      x = ops::add(x, h);
    }
    x = ops::layer_norm(x, lnf_w, lnf_b).reshape({B * T, d});
    return ops::matmul(x, wte, false, true);
  }

  int64_t parameter_count() const {
    int64_t n = 0;
    for (const auto& [name, t] : named) n += t.numel();
    return n;
  }
};

std::vector<uint8_t> read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MLM_CHECK(f.good(), IoError, "[toy-lm] cannot open data file '", path,
            "' (run scripts/fetch_data.sh, or pass --data FILE)");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return bytes;
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
    size_t start = begin + static_cast<size_t>(gen.randint(0, static_cast<int64_t>(end - begin) - T - 1));
    for (int64_t t = 0; t < T; ++t) {
      ip[b * T + t] = bytes[start + t];
      tp[b * T + t] = bytes[start + t + 1];
    }
  }
}

std::string format_eta(double seconds) {
  char buf[32];
  int s = static_cast<int>(seconds + 0.5);
  std::snprintf(buf, sizeof buf, "%d:%02d", s / 60, s % 60);
  return buf;
}

}  // namespace

int run_toy_lm(const ToyLmOptions& o) {
  MLM_CHECK(o.d_model > 0 && o.heads > 0 && o.d_model % o.heads == 0, ValueError,
            "[toy-lm] --d-model must be a positive multiple of --heads");
  MLM_CHECK(o.steps >= 0 && o.batch > 0 && o.seq_len > 1 && o.layers > 0, ValueError,
            "[toy-lm] --steps, --batch, --seq-len and --layers must be positive");
  std::vector<uint8_t> bytes = read_text(o.data);
  const size_t split = bytes.size() / 20 * 19;  // last 5% held out
  MLM_CHECK(bytes.size() / 20 > static_cast<size_t>(o.seq_len) + 1, ValueError, "[toy-lm] '",
            o.data, "' is too small (", bytes.size(), " bytes) for --seq-len ", o.seq_len);
  const double h1 = unigram_entropy(bytes, 0, split);
  std::printf("data: %s, %zu bytes (train %zu, validation %zu)\n", o.data.c_str(), bytes.size(),
              split, bytes.size() - split);
  std::printf("unigram entropy of the training bytes: %.3f nats/byte (%.3f bits)\n", h1,
              h1 / std::log(2.0));

  Generator init_gen(o.seed), data_gen(o.seed + 1);
  ToyGpt model(o, init_gen);
  std::printf("model: %lld layers, d=%lld, %lld heads, context %lld, %.2fM parameters\n",
              static_cast<long long>(o.layers), static_cast<long long>(o.d_model),
              static_cast<long long>(o.heads), static_cast<long long>(o.seq_len),
              static_cast<double>(model.parameter_count()) / 1e6);
  train::AdamW opt(train::make_param_groups(model.named, o.weight_decay, {"wpe"}),
                   {o.lr, 0.9, 0.95, 1e-8});
  std::vector<Tensor> params;
  for (const auto& [name, t] : model.named) params.push_back(t);

  std::ofstream log;
  if (!o.log.empty()) {
    std::filesystem::path parent = std::filesystem::path(o.log).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    log.open(o.log);
    MLM_CHECK(log.good(), IoError, "[toy-lm] cannot write log file '", o.log, "'");
  }
  auto evaluate = [&]() {
    NoGradGuard ng;
    Generator g(o.seed + 2);  // the same validation windows every time
    double total = 0;
    for (int64_t i = 0; i < o.eval_batches; ++i) {
      Tensor ids, targets;
      make_batch(bytes, split, bytes.size(), o.batch, o.seq_len, g, ids, targets);
      total += ops::cross_entropy(model.forward(ids), targets).item<double>();
    }
    return total / static_cast<double>(o.eval_batches);
  };

  const double first_val = evaluate();
  std::printf("step %5d  val loss %.3f\n", 0, first_val);
  auto t0 = Clock::now();
  double running = 0;
  int64_t running_n = 0;
  double last_val = first_val;
  for (int64_t step = 1; step <= o.steps; ++step) {
    const double lr = step <= o.warmup
                          ? o.lr * static_cast<double>(step) / static_cast<double>(o.warmup)
                          : o.lr * 0.5 *
                                (1 + std::cos(3.141592653589793 * static_cast<double>(step - o.warmup) /
                                              static_cast<double>(std::max<int64_t>(1, o.steps - o.warmup))));
    opt.set_lr(lr);
    Tensor ids, targets;
    make_batch(bytes, 0, split, o.batch, o.seq_len, data_gen, ids, targets);
    Tensor loss = ops::cross_entropy(model.forward(ids), targets);
    loss.backward();
    const double gnorm = train::clip_grad_norm(params, o.clip);
    opt.step();
    opt.zero_grad();
    const double l = loss.item<double>();
    running += l;
    ++running_n;
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    const double tok_s = static_cast<double>(step * o.batch * o.seq_len) / elapsed;
    if (log.is_open())
      log << "{\"step\": " << step << ", \"loss\": " << l << ", \"lr\": " << lr
          << ", \"grad_norm\": " << gnorm << ", \"tokens_per_s\": " << tok_s
          << ", \"wall_s\": " << elapsed << "}\n";
    if (step % 20 == 0 || step == o.steps) {
      std::printf("step %5lld/%lld  loss %.3f  lr %.2e  %.0f tok/s  ETA %s\n",
                  static_cast<long long>(step), static_cast<long long>(o.steps),
                  running / static_cast<double>(running_n), lr, tok_s,
                  format_eta(elapsed / static_cast<double>(step) * static_cast<double>(o.steps - step)).c_str());
      std::fflush(stdout);
      running = 0;
      running_n = 0;
    }
    if (step % o.eval_every == 0 || step == o.steps) {
      last_val = evaluate();
      std::printf("step %5lld  val loss %.3f nats/byte (%.3f bits)\n", static_cast<long long>(step),
                  last_val, last_val / std::log(2.0));
    }
  }
  std::printf("validation loss %.3f -> %.3f nats/byte; unigram entropy %.3f nats/byte\n", first_val,
              last_val, h1);

  // Sample: recompute the whole window each step (no KV cache in this interim tool).
  if (o.sample_bytes > 0) {
    NoGradGuard ng;
    std::string text = o.prompt.empty() ? std::string("\n") : o.prompt;
    std::printf("\n--- sample (temperature %.2f) ---\n%s", o.temperature, text.c_str());
    for (int64_t i = 0; i < o.sample_bytes; ++i) {
      const int64_t T = std::min<int64_t>(static_cast<int64_t>(text.size()), o.seq_len);
      std::vector<int64_t> window(text.end() - T, text.end());
      for (auto& c : window) c = static_cast<uint8_t>(c);
      Tensor logits = model.forward(Tensor::from_vector<int64_t>({1, T}, window));
      std::vector<float> last = logits.slice(0, T - 1, T).to_vector<float>();
      double mx = -1e30;
      for (float v : last) mx = std::max<double>(mx, v / o.temperature);
      std::vector<double> p(256);
      double z = 0;
      for (int c = 0; c < 256; ++c) z += p[c] = std::exp(last[c] / o.temperature - mx);
      double u = Generator::uniform_at(o.seed + 3, static_cast<uint64_t>(i)) * z;
      int pick = 255;
      for (int c = 0; c < 256; ++c) {
        u -= p[c];
        if (u <= 0) {
          pick = c;
          break;
        }
      }
      text.push_back(static_cast<char>(pick));
      std::putchar(pick);
    }
    std::printf("\n--- end of sample ---\n");
  }
  return last_val < h1 ? 0 : 2;
}

}  // namespace metalm::apps
