// Initialisation (reference-spec 1.4): where a stack sits, the DeepNorm and SubLN (MAGNETO)
// scalings that depend on it, fairseq's BERT init, and in-place initialisers that draw straight
// into a parameter (no temporary), so that a model built for loading (Generator::no_draws) pays
// neither the draws nor the memory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "metalm/core/random.h"
#include "metalm/nn/module.h"

namespace metalm::nn {

// Where a stack sits; the formulas depend on it (and on both depths for encoder-decoder).
enum class StackRole { encoder_only, decoder_only, encdec_encoder, encdec_decoder };

// N = encoder_layers, M = decoder_layers; the ones the role needs must be >= 1 (ValueError).
// DeepNorm residual multiplier alpha: encoder-only (2N)^(1/4), decoder-only (2M)^(1/4),
//   enc-dec encoder 0.81 (N^4 M)^(1/16), enc-dec decoder (3M)^(1/4).
double deepnorm_alpha(StackRole role, int64_t encoder_layers, int64_t decoder_layers);
// DeepNorm init_scale (weights are divided by it): (8N)^(1/4), (8M)^(1/4),
// (N^4 M)^(1/16) / 1.15 [quirk: the paper's beta for the enc-dec encoder is 0.87 (N^4 M)^(-1/16);
// TorchScale's code is followed, as its checkpoints were trained with it], (12M)^(1/4).
double deepnorm_init_scale(StackRole role, int64_t encoder_layers, int64_t decoder_layers);
// SubLN / MAGNETO gamma (weights are multiplied by it): sqrt(ln 2N), sqrt(ln 2M),
// sqrt(ln(3M) ln(2N) / 3), sqrt(ln 3M) (the enc-dec decoder skips encoder_attn parameters).
double subln_init_gamma(StackRole role, int64_t encoder_layers, int64_t decoder_layers);

// torch.linspace(0, rate, layers)[layer] as its float32 CPU kernel computes it (TorchScale takes
// .item() of a float32 tensor), so drop-path probabilities match to the last bit.
double linspace_f32(double rate, int64_t layers, int64_t layer);

// ---- in-place initialisers (torch.nn.init style); no-ops for a no_draws generator ----
void init_normal(const Tensor& t, Generator& gen, double mean, double std);
void init_uniform(const Tensor& t, Generator& gen, double low, double high);
void init_zeros(const Tensor& t, Generator& gen);
// Multiplies t by factor in place (the DeepNorm / SubLN scalings).
void init_scale(const Tensor& t, Generator& gen, double factor);

// fairseq init_bert_params: every Linear weight N(0, 0.02) with zero bias, every Embedding
// N(0, 0.02) with its padding row zeroed, learned position tables N(0, 0.02).
void bert_init(Module& m, Generator& gen);
// Multiplies every parameter whose name contains fc1, fc2, out_proj or v_proj (weights and
// biases, all experts) by `factor`, skipping names containing encoder_attn when
// skip_encoder_attn (the enc-dec decoder under SubLN). Returns the scaled names (sorted). With a
// no_draws generator nothing is multiplied, but the names are still returned.
std::vector<std::string> scale_init_parameters(Module& m, Generator& gen, double factor,
                                               bool skip_encoder_attn);

}  // namespace metalm::nn
