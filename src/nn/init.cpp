// Initialisation formulas (reference-spec 1.4) and the in-place initialisers.
#include "metalm/nn/init.h"

#include <cmath>
#include <utility>

#include "metalm/autograd/autograd.h"
#include "metalm/core/error.h"
#include "metalm/nn/layers.h"
#include "metalm/nn/positions.h"
#include "metalm/ops/elementwise.h"

namespace metalm::nn {
namespace {

void check_depth(const char* op, const char* name, int64_t layers) {
  if (layers < 1) throw ValueError(detail::cat("[", op, "] ", name, " must be >= 1, got ", layers));
}

// Checks the depths the role's formula uses (N for the encoder roles, M for every role but
// encoder-only); returns {N, M} as doubles.
std::pair<double, double> depths(const char* op, StackRole role, int64_t n, int64_t m) {
  if (role == StackRole::encoder_only || role == StackRole::encdec_encoder)
    check_depth(op, "encoder_layers", n);
  if (role != StackRole::encoder_only) check_depth(op, "decoder_layers", m);
  return {static_cast<double>(n), static_cast<double>(m)};
}

}  // namespace

double deepnorm_alpha(StackRole role, int64_t encoder_layers, int64_t decoder_layers) {
  const auto [n, m] = depths("deepnorm_alpha", role, encoder_layers, decoder_layers);
  switch (role) {
    case StackRole::encoder_only: return std::pow(2.0 * n, 0.25);
    case StackRole::decoder_only: return std::pow(2.0 * m, 0.25);
    case StackRole::encdec_encoder: return 0.81 * std::pow(std::pow(n, 4.0) * m, 1.0 / 16.0);
    case StackRole::encdec_decoder: return std::pow(3.0 * m, 0.25);
  }
  return 1.0;
}

double deepnorm_init_scale(StackRole role, int64_t encoder_layers, int64_t decoder_layers) {
  const auto [n, m] = depths("deepnorm_init_scale", role, encoder_layers, decoder_layers);
  switch (role) {
    case StackRole::encoder_only: return std::pow(8.0 * n, 0.25);
    case StackRole::decoder_only: return std::pow(8.0 * m, 0.25);
    case StackRole::encdec_encoder: return std::pow(std::pow(n, 4.0) * m, 1.0 / 16.0) / 1.15;
    case StackRole::encdec_decoder: return std::pow(12.0 * m, 0.25);
  }
  return 1.0;
}

double subln_init_gamma(StackRole role, int64_t encoder_layers, int64_t decoder_layers) {
  const auto [n, m] = depths("subln_init_gamma", role, encoder_layers, decoder_layers);
  switch (role) {
    case StackRole::encoder_only: return std::sqrt(std::log(2.0 * n));
    case StackRole::decoder_only: return std::sqrt(std::log(2.0 * m));
    case StackRole::encdec_encoder: return std::sqrt(std::log(3.0 * m) * std::log(2.0 * n) / 3.0);
    case StackRole::encdec_decoder: return std::sqrt(std::log(3.0 * m));
  }
  return 1.0;
}

double linspace_f32(double rate, int64_t layers, int64_t layer) {
  if (layers <= 1) return 0.0;
  const float end = static_cast<float>(rate);
  const float step = end / static_cast<float>(layers - 1);
  const float v = layer < layers / 2 ? step * static_cast<float>(layer)
                                     : end - step * static_cast<float>(layers - 1 - layer);
  return static_cast<double>(v);
}

void init_normal(const Tensor& t, Generator& gen, double mean, double std) {
  gen.fill_normal(t.detach(), mean, std);
}

void init_uniform(const Tensor& t, Generator& gen, double low, double high) {
  gen.fill_uniform(t.detach(), low, high);
}

void init_zeros(const Tensor& t, Generator& gen) {
  if (!gen.draws()) return;
  NoGradGuard ng;
  copy_into(t.detach(), Tensor::zeros(t.shape(), t.dtype()));
}

void init_scale(const Tensor& t, Generator& gen, double factor) {
  if (!gen.draws()) return;
  NoGradGuard ng;
  copy_into(t.detach(), t.detach() * factor);
}

void bert_init(Module& m, Generator& gen) {
  m.for_each_module([&](const std::string&, Module& sub) {
    if (auto* l = dynamic_cast<Linear*>(&sub)) {
      init_normal(l->weight, gen, 0.0, 0.02);
      if (l->bias.defined()) init_zeros(l->bias, gen);
    } else if (auto* e = dynamic_cast<Embedding*>(&sub)) {
      init_normal(e->weight, gen, 0.0, 0.02);
      if (e->padding_idx >= 0)
        init_zeros(e->weight.slice(0, e->padding_idx, e->padding_idx + 1), gen);
    } else if (auto* p = dynamic_cast<LearnedPositionalEmbedding*>(&sub)) {
      // TorchScale's PositionalEmbedding is an nn.Embedding (no padding row).
      init_normal(p->weight, gen, 0.0, 0.02);
    }
  });
}

std::vector<std::string> scale_init_parameters(Module& m, Generator& gen, double factor,
                                               bool skip_encoder_attn) {
  std::vector<std::string> scaled;
  for (auto& [name, p] : m.named_parameters()) {
    const bool hit = name.find("fc1") != std::string::npos ||
                     name.find("fc2") != std::string::npos ||
                     name.find("out_proj") != std::string::npos ||
                     name.find("v_proj") != std::string::npos;
    if (!hit || (skip_encoder_attn && name.find("encoder_attn") != std::string::npos)) continue;
    init_scale(p, gen, factor);
    scaled.push_back(name);
  }
  return scaled;
}

}  // namespace metalm::nn
