// IncrementalState::truncate (BEiT-3 captioning rewinds its MASK slot; a search that backtracks
// rewinds too): after a rewind every layer must continue from the kept prefix exactly as if the
// dropped tokens had never been decoded. Checked by decoding after the rewind and comparing with
// a fresh full forward of the kept prefix plus the new tokens, on a multi-layer decoder, so that
// a truncate that rewinds only some layers' caches fails.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/test_util.h"
#include "common/tiny_stacks.h"
#include "metalm/autograd/autograd.h"
#include "metalm/models/stack.h"
#include "metalm/nn/transformer.h"
#include "metalm/ops/ops.h"

using namespace metalm;
using metalm::test::all_close;

namespace {

struct TruncateCase {
  const char* name;
  bool xpos_relbias;  // xPos re-rotates the cached keys, the bias rows follow the cache length
  bool cross;         // encoder-decoder: the cross-attention caches survive truncate()
};

void PrintTo(const TruncateCase& c, std::ostream* os) {
  *os << c.name;
}

class Truncate : public ::testing::TestWithParam<TruncateCase> {};

TEST_P(Truncate, ContinuesLikeAFreshForwardOfTheKeptPrefix) {
  const TruncateCase c = GetParam();
  nn::DecoderConfig cfg = test::tiny_decoder(3, 64);
  if (c.xpos_relbias) {
    cfg.xpos_rel_pos = true;
    cfg.xpos_scale_base = 64;
    cfg.rel_pos_buckets = 16;
    cfg.max_rel_pos = 32;
    cfg.positions = nn::PositionKind::none;
  }
  Generator gen(31);
  models::Decoder dec(cfg, gen,
                  {c.cross ? nn::StackRole::encdec_decoder : nn::StackRole::decoder_only,
                   c.cross ? 2 : 0, nullptr});
  test::randomise(dec, 32);  // LayerNorm affines and biases too: no layer is near the identity
  dec.eval();
  NoGradGuard ng;
  // Only the first incremental call reads encoder_out; later calls get another one, which the
  // kept cross-attention caches must make irrelevant (truncate() keeps them, even at 0).
  const Tensor enc = test::randn({1, 5, 32}, 33), ignored = test::randn({1, 5, 32}, 34);
  bool first_call = true;

  auto full_logits = [&](const std::vector<int64_t>& seq) {
    models::StackInputs in;
    in.tokens = test::token_row(seq);
    if (c.cross) in.encoder_out = enc;
    return dec.forward(in).logits;  // [1, T, V]
  };
  models::IncrementalState state(dec, 1, 16);
  std::vector<int64_t> seq;  // what the state should hold
  // Feeds `ids` as one chunk and checks its logits against the full forward of seq + ids.
  auto step = [&](const std::vector<int64_t>& ids, const std::string& what) {
    models::StackInputs in;
    in.tokens = test::token_row(ids);
    if (c.cross) in.encoder_out = first_call ? enc : ignored;
    in.state = &state;
    first_call = false;
    const Tensor got = dec.forward(in).logits;
    const int64_t start = static_cast<int64_t>(seq.size());
    seq.insert(seq.end(), ids.begin(), ids.end());
    const int64_t end = static_cast<int64_t>(seq.size());
    EXPECT_TRUE(all_close(got, full_logits(seq).slice(1, start, end), 1e-4, 2e-5))
        << c.name << ": " << what << ", positions " << start << ".." << end - 1;
    EXPECT_EQ(state.length(), end);
  };
  auto rewind = [&](int64_t k) {
    state.truncate(k);
    seq.resize(static_cast<size_t>(k));
    EXPECT_EQ(state.length(), k);
  };

  step({7, 12, 5}, "prefill");
  for (int64_t t : {9, 23, 4, 41, 17}) step({t}, "decode");  // 8 tokens cached
  rewind(5);
  step({30}, "first step after truncate(5)");
  step({11}, "second step after truncate(5)");
  rewind(2);
  step({19, 8, 26}, "chunk after truncate(2)");
  step({3}, "step after the chunk");
  rewind(0);  // everything dropped, cross-attention keys kept
  step({14, 6}, "after truncate(0)");
}

INSTANTIATE_TEST_SUITE_P(Decoder, Truncate,
                         ::testing::Values(TruncateCase{"learned", false, false},
                                           TruncateCase{"xpos_relbias", true, false},
                                           TruncateCase{"encdec", false, true}),
                         [](const auto& i) { return std::string(i.param.name); });

}  // namespace
