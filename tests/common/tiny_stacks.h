// Tiny TorchScale stacks for unit tests: the config builders, random token ids and random
// parameter values that the transformer, incremental-decoding and mask-path tests share.
#pragma once
#include <cstdint>
#include <vector>

#include "metalm/core/tensor.h"
#include "metalm/nn/config.h"
#include "metalm/nn/module.h"

namespace metalm::test {

// Width 32 (4 heads of 8), FFN 64, vocabulary 50: small enough for f64 gradient checks, large
// enough for multi-head and multi-layer bugs to show. Everything else is the config's default.
template <typename Config>
Config tiny_config(int64_t layers, int64_t max_positions) {
  Config c;
  c.embed_dim = 32;
  c.attention_heads = 4;
  c.ffn_embed_dim = 64;
  c.layers = layers;
  c.vocab_size = 50;
  c.max_positions = max_positions;
  return c;
}
// The decoder's position table covers a 4-token prompt decoded 64 steps further.
inline nn::DecoderConfig tiny_decoder(int64_t layers = 2, int64_t max_positions = 128) {
  return tiny_config<nn::DecoderConfig>(layers, max_positions);
}
inline nn::EncoderConfig tiny_encoder(int64_t layers = 2, int64_t max_positions = 64) {
  return tiny_config<nn::EncoderConfig>(layers, max_positions);
}

// [B, T] token ids drawn from [3, vocab): no bos (0) and no pad (1).
Tensor random_tokens(int64_t B, int64_t T, int64_t vocab, uint64_t seed);
// [1, T] token ids.
Tensor token_row(const std::vector<int64_t>& ids);

// Adds Normal(0, 0.1) to every parameter (LayerNorm affines and zero biases included), so that
// tests do not pass because of the trivial 1 / 0 initialisation.
void randomise(nn::Module& m, uint64_t seed);

}  // namespace metalm::test
