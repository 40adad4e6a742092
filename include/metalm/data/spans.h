// MetaLM's semi-causal spans (reference-spec 3.1-3.2, DESIGN D4): which stretches of a packed
// sequence a bidirectional encoder re-encodes and docks into the decoder, and which targets are
// then scored. The sampler follows the released loader's _mlm_cut; the loss mask follows D4 (no
// target the encoder has seen is scored), with the released code's one-token leak available as
// an explicit compatibility mode.
#pragma once
#include <cstdint>
#include <vector>

#include "metalm/core/tensor.h"

namespace metalm::data {

struct Span {
  int64_t begin = 0, end = 0;  // [begin, end) positions in the sequence
  int64_t size() const { return end - begin; }
  bool operator==(const Span&) const = default;
};

struct SpanOptions {
  int64_t length = 128;       // L (mlm_cut_length): spans are about L/2 .. L tokens
  double proportion = 0.25;   // rho (mlm_tokens_proportion): share of the tokens in spans
  int32_t boundary_id = 8;    // </line>: spans never cross one
  int64_t min_after_boundary = 20;  // a window whose boundary leaves fewer tokens is skipped
};

// The spans of one sequence ids[0 .. n) (ids[0] = <s>), as _mlm_cut draws them:
//   sequences of n <= 2.5 L + 1 get none (plain causal LM);
//   candidate windows [s, s + L) start at 1, 1 + L, 1 + 2L, ... while s < n - 1.5 L, visited in
//   an order shuffled by the seed;
//   a window with two or more boundaries is skipped; with one at offset e the span is
//   [s + e + 1, s + L) unless L - e < min_after_boundary; with none, c = randint(0, L - 1): the
//   span is [s, s + c + 1) when c >= L / 2, else [s + c, s + L);
//   spans are added until their tokens exceed (n - 1) rho; returned sorted by begin.
// Deterministic in (ids, options, seed): the draws come from Generator(seed).
std::vector<Span> sample_spans(const int32_t* ids, int64_t n, const SpanOptions& options,
                               uint64_t seed);

enum class SpanLoss {
  exact,      // D4: input positions a .. e-2 unscored (their targets were seen); a-1, e-1 scored
  reference,  // the released loader: a-1 .. e-3 unscored, e-2 scored (a one-token leak)
};

// The decoder side of a [T]-long input (input = sequence[:-1], target = sequence[1:]): dock[t]
// = 1 where position t takes an encoder vector (t in [a, e) for every span), and loss[t] *= 0
// where the target of position t must not be scored (SpanLoss). loss is updated in place (it
// already holds the padding mask); dock is set for the spans' positions.
void apply_spans(const std::vector<Span>& spans, int64_t T, SpanLoss mode, uint8_t* dock,
                 float* loss);

}  // namespace metalm::data
