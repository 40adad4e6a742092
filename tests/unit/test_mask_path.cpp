// The one mask path (models/stack.h): a batch's positions, segment ids and padding go from
// StackInputs to the attention op as one mask per call. Packed examples give the logits each
// gives alone; a left-padded batch decoded through the KV cache gives the logits each row gives
// unpadded and alone; the layout's argument errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/test_util.h"
#include "common/tiny_stacks.h"
#include "metalm/autograd/autograd.h"
#include "metalm/models/stack.h"

using namespace metalm;
using metalm::test::all_close;
using metalm::test::token_row;

namespace {

// The variants whose positions work differently: learned (absolute table), sinusoidal (fairseq
// table), xPos (relative rotation), T5 bias (relative buckets).
struct Variant {
  const char* name;
  nn::PositionKind positions;
  bool xpos, rel;
};
const Variant kVariants[] = {{"learned", nn::PositionKind::learned, false, false},
                             {"sinusoidal", nn::PositionKind::sinusoidal, false, false},
                             {"xpos", nn::PositionKind::none, true, false},
                             {"relbias", nn::PositionKind::learned, false, true}};

template <typename C>
C tiny(const Variant& v) {
  C c = test::tiny_config<C>(3, 64);
  c.positions = v.positions;
  c.xpos_rel_pos = v.xpos;
  if (v.rel) c.rel_pos_buckets = 16, c.max_rel_pos = 32;
  return c;
}

// Rows [from, to) of [1, T, V] logits.
Tensor rows(const Tensor& logits, int64_t from, int64_t to) { return logits.slice(1, from, to); }

const std::vector<int64_t> kA = {5, 17, 9, 33, 12}, kB = {41, 7, 7, 28};

models::StackInputs packed_inputs() {
  std::vector<int64_t> tok = kA, pos, seg;
  tok.insert(tok.end(), kB.begin(), kB.end());
  for (size_t i = 0; i < kA.size(); ++i) pos.push_back(static_cast<int64_t>(i)), seg.push_back(0);
  for (size_t i = 0; i < kB.size(); ++i) pos.push_back(static_cast<int64_t>(i)), seg.push_back(1);
  models::StackInputs in;
  in.tokens = token_row(tok);
  in.positions = Tensor::from_vector<int64_t>({1, 9}, pos);
  in.segment_ids = Tensor::from_vector<int64_t>({1, 9}, seg);
  return in;
}

// xPos rotates by the sequence index; alone and packed differ only in f32 rounding of the
// rotation (the scores depend on distances only).
double tolerance(const Variant& v) { return v.xpos ? 2e-4 : 2e-5; }

}  // namespace

TEST(MaskPath, PackedDecoderExamplesGiveTheLogitsOfEachAlone) {
  for (const Variant& v : kVariants) {
    SCOPED_TRACE(v.name);
    Generator gen(3);
    models::Decoder dec(tiny<nn::DecoderConfig>(v), gen);
    dec.eval();
    NoGradGuard ng;
    models::StackInputs a, b;
    a.tokens = token_row(kA);
    b.tokens = token_row(kB);
    const Tensor alone_a = dec.forward(a).logits, alone_b = dec.forward(b).logits;
    const Tensor packed = dec.forward(packed_inputs()).logits;
    EXPECT_TRUE(all_close(rows(packed, 0, 5), alone_a, tolerance(v), 1e-5));
    EXPECT_TRUE(all_close(rows(packed, 5, 9), alone_b, tolerance(v), 1e-5));
    // Without the segments, the second example sees the first: the logits move.
    models::StackInputs leaky = packed_inputs();
    leaky.segment_ids = Tensor();
    EXPECT_FALSE(all_close(rows(dec.forward(leaky).logits, 5, 9), alone_b, 1e-3, 1e-3));
  }
}

TEST(MaskPath, PackedEncoderExamplesGiveTheFeaturesOfEachAlone) {
  for (const Variant& v : kVariants) {
    if (v.positions == nn::PositionKind::sinusoidal) continue;  // encoders use learned / none
    SCOPED_TRACE(v.name);
    Generator gen(4);
    models::Encoder enc(tiny<nn::EncoderConfig>(v), gen);
    enc.eval();
    NoGradGuard ng;
    models::StackInputs a, b;
    a.tokens = token_row(kA);
    b.tokens = token_row(kB);
    const Tensor packed = enc.forward(packed_inputs()).logits;
    EXPECT_TRUE(all_close(rows(packed, 0, 5), enc.forward(a).logits, tolerance(v), 1e-5));
    EXPECT_TRUE(all_close(rows(packed, 5, 9), enc.forward(b).logits, tolerance(v), 1e-5));
    // Bidirectional: without segments the FIRST example sees the second too.
    models::StackInputs leaky = packed_inputs();
    leaky.segment_ids = Tensor();
    EXPECT_FALSE(all_close(rows(enc.forward(leaky).logits, 0, 5), enc.forward(a).logits, 1e-3, 1e-3));
  }
}

// Two prompts of different lengths, the shorter left-padded, prefilled together and decoded
// together through one incremental state: every step's logits equal those of each prompt
// decoded alone, unpadded, with the same continuation.
TEST(MaskPath, LeftPaddedBatchedDecodingEqualsUnpaddedSingleDecoding) {
  const std::vector<int64_t> p0 = {8, 3, 22}, p1 = {14, 9, 31, 5, 19, 26};
  const std::vector<std::vector<int64_t>> next = {{4, 11}, {30, 6}, {17, 2}, {45, 13}};  // [step][row]
  for (const Variant& v : kVariants) {
    SCOPED_TRACE(v.name);
    Generator gen(5);
    models::Decoder dec(tiny<nn::DecoderConfig>(v), gen);
    dec.eval();
    NoGradGuard ng;

    // Alone: prefill then one token per step; logits of the last prompt token and every step.
    auto alone = [&](const std::vector<int64_t>& prompt, size_t row) {
      models::IncrementalState st(dec, 1, 16);
      models::StackInputs in;
      in.tokens = token_row(prompt);
      in.state = &st;
      Tensor l = dec.forward(in).logits;
      std::vector<Tensor> out = {rows(l, l.size(1) - 1, l.size(1))};
      for (const auto& step : next) {
        in.tokens = token_row({step[row]});
        out.push_back(dec.forward(in).logits);
      }
      return out;
    };
    const std::vector<Tensor> want0 = alone(p0, 0), want1 = alone(p1, 1);

    // Together: row 0 left-padded by 3 (the pad id is an ordinary token: padding is the mask).
    const int64_t T = 6;
    std::vector<int64_t> tok = {0, 0, 0, p0[0], p0[1], p0[2]};
    tok.insert(tok.end(), p1.begin(), p1.end());
    std::vector<uint8_t> pad = {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    models::IncrementalState st(dec, 2, 16);
    models::StackInputs in;
    in.tokens = Tensor::from_vector<int64_t>({2, T}, tok);
    in.padding = Tensor::from_vector<uint8_t>({2, T}, pad);
    in.positions = models::positions_after_padding(in.padding);
    in.state = &st;
    Tensor l = dec.forward(in).logits;  // [2, T, V]
    const double tol = tolerance(v);
    EXPECT_TRUE(all_close(l.slice(0, 0, 1).slice(1, T - 1, T), want0[0], tol, 1e-5));
    EXPECT_TRUE(all_close(l.slice(0, 1, 2).slice(1, T - 1, T), want1[0], tol, 1e-5));
    in.padding = in.positions = Tensor();  // later steps: the state continues each row
    for (size_t s = 0; s < next.size(); ++s) {
      SCOPED_TRACE("step " + std::to_string(s));
      in.tokens = Tensor::from_vector<int64_t>({2, 1}, {next[s][0], next[s][1]});
      l = dec.forward(in).logits;
      EXPECT_TRUE(all_close(l.slice(0, 0, 1), want0[s + 1], tol, 1e-5));
      EXPECT_TRUE(all_close(l.slice(0, 1, 2), want1[s + 1], tol, 1e-5));
    }
    // The padding is what makes it work: without it row 0 attends to the pads.
    models::IncrementalState st2(dec, 2, 16);
    models::StackInputs leaky;
    leaky.tokens = Tensor::from_vector<int64_t>({2, T}, tok);
    leaky.positions = models::positions_after_padding(Tensor::from_vector<uint8_t>({2, T}, pad));
    leaky.state = &st2;
    const Tensor l2 = dec.forward(leaky).logits;
    EXPECT_FALSE(all_close(l2.slice(0, 0, 1).slice(1, T - 1, T), want0[0], 1e-3, 1e-3));
  }
}

TEST(MaskPath, PositionsAfterPadding) {
  const Tensor pad = Tensor::from_vector<uint8_t>({2, 4}, {1, 1, 0, 0, 0, 0, 1, 0});
  EXPECT_EQ(models::positions_after_padding(pad).to_vector<int64_t>(),
            (std::vector<int64_t>{0, 0, 0, 1, 0, 1, 0, 2}));
  EXPECT_TRUE(test::throws_with<ValueError>(
      [] { models::positions_after_padding(Tensor::zeros({2, 4}, DType::i64)); },
      "[positions_after_padding] padding must be u8"));
}

TEST(MaskPath, LayoutErrorsNameTheField) {
  Generator gen(6);
  models::Decoder dec(tiny<nn::DecoderConfig>(kVariants[0]), gen);
  NoGradGuard ng;
  models::StackInputs in;
  in.tokens = token_row({3, 4, 5});
  in.positions = Tensor::zeros({1, 2}, DType::i64);
  EXPECT_TRUE(test::throws_with<ShapeError>([&] { dec.forward(in); }, "[stack] positions must be [1, 3]"));
  in.positions = Tensor::zeros({1, 3}, DType::f32);
  EXPECT_TRUE(test::throws_with<DTypeError>([&] { dec.forward(in); }, "positions must be i32 or i64"));
  in.positions = Tensor::from_vector<int64_t>({1, 3}, {0, -1, 2});
  EXPECT_TRUE(test::throws_with<ValueError>([&] { dec.forward(in); }, "positions must be >= 0"));
  in.positions = Tensor();
  in.padding = Tensor::zeros({1, 3}, DType::i64);
  EXPECT_TRUE(test::throws_with<DTypeError>([&] { dec.forward(in); }, "padding must be u8"));
  in.padding = Tensor();
  in.segment_ids = Tensor::zeros({1, 3}, DType::i32);
  in.prefix_len = 2;
  EXPECT_TRUE(test::throws_with<ValueError>([&] { dec.forward(in); }, "cannot be combined"));
  in.segment_ids = Tensor();
  in.prefix_len = -1;
  EXPECT_TRUE(test::throws_with<ValueError>([&] { dec.forward(in); }, "prefix_len must be >= 0"));
  // A position past the learned table.
  in.prefix_len = 0;
  in.positions = Tensor::from_vector<int64_t>({1, 3}, {0, 1, 64});
  EXPECT_TRUE(test::throws_with<ValueError>([&] { dec.forward(in); }, "[positions]"));
  // A state of another batch size.
  in.positions = Tensor();
  models::IncrementalState st(dec, 2, 8);
  in.state = &st;
  EXPECT_TRUE(test::throws_with<ShapeError>([&] { dec.forward(in); }, "holds 2 rows"));
}

// A prefix block: keys before prefix_len are visible to every query, the rest stays causal.
TEST(MaskPath, PrefixBlockSeesTheWholePrefix) {
  Generator gen(7);
  models::Decoder dec(tiny<nn::DecoderConfig>(kVariants[0]), gen);
  dec.eval();
  NoGradGuard ng;
  models::StackInputs in;
  in.tokens = token_row({3, 4, 5, 6, 7});
  const Tensor causal = dec.forward(in).logits;
  in.prefix_len = 3;
  const Tensor prefix = dec.forward(in).logits;
  // Position 0 now sees tokens 1 and 2: it changes.
  EXPECT_FALSE(all_close(rows(prefix, 0, 1), rows(causal, 0, 1), 1e-3, 1e-3));
  // Changing a token inside the prefix's future (token 2) moves position 0 only with the prefix.
  models::StackInputs other = in;
  other.tokens = token_row({3, 4, 9, 6, 7});
  EXPECT_FALSE(all_close(rows(dec.forward(other).logits, 0, 1), rows(prefix, 0, 1), 1e-3, 1e-3));
  other.prefix_len = 0;
  EXPECT_TRUE(all_close(rows(dec.forward(other).logits, 0, 1), rows(causal, 0, 1), 0, 0));
}
