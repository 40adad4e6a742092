// Beam search and greedy decoding against the PyTorch reference of tests/reference/ref_decode.py
// (fairseq semantics, reference-spec 6.1; the reference recomputes the whole sequence every step,
// metalm reorders its KV cache): the same tiny decoder's weights, the same prompt and options
// give the same hypotheses token for token, in the same order, with the same scores (1e-6
// relative: both sides sum f64 log-probabilities of f32 logits). The cases cover length penalties
// 1 and 0.6, hypotheses finishing at different steps, EOS banned before min_new_tokens and forced
// at max_new_tokens, no-repeat n-grams of 1 (which fires: the model repeats a token without
// it), 2 and 3 (the exact rule is also checked by hand in tests/unit/test_generate.cpp), banned
// ids, and beam 1 (greedy).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/reference_file.h"
#include "metalm/infer/beam.h"
#include "metalm/models/stack.h"
#include "metalm/nn/transformer.h"

using namespace metalm;

namespace {

// The cases of ref_decode.py (CASES).
const std::vector<std::string> kCases = {"beam4_lenpen1", "beam4_lenpen06_ngram2",
                                         "beam3_lenpen06_banned", "greedy_ngram3",
                                         "beam4_ngram1_long"};

class DecodeRef : public test::ReferenceTest<::testing::TestWithParam<std::string>> {
 protected:
  DecodeRef() : ReferenceTest("decode_" + GetParam()) {}
};

TEST_P(DecodeRef, BeamSearchMatchesTokenForToken) {
  const test::ReferenceFile& c = ref();
  const auto cfg = nn::decoder_config_from_json(nlohmann::json::parse(c.meta("config")));
  Generator gen(7);
  models::Decoder dec(cfg, gen);
  dec.load_state_dict(
      models::drop_tied_output_projection(c.with_prefix("state."), cfg.share_input_output_embed),
      true);
  infer::BeamOptions o;
  o.beam = c.meta_int("beam");
  o.length_penalty = std::stod(c.meta("lenpen"));
  o.max_new_tokens = c.meta_int("max_new");
  o.min_new_tokens = c.meta_int("min_new");
  o.no_repeat_ngram = c.meta_int("ngram");
  o.eos_id = c.meta_int("eos");
  o.banned_ids = nlohmann::json::parse(c.meta("banned")).get<std::vector<int64_t>>();
  const std::vector<infer::Hypothesis> hyps =
      infer::beam_search(dec, c.get("prompt").to_vector<int64_t>(), o);

  const Tensor& want_tokens = c.get("tokens");
  const std::vector<double> scores = c.get("scores").to_vector<double>();
  const std::vector<double> sums = c.get("sum_logprobs").to_vector<double>();
  ASSERT_EQ(hyps.size(), scores.size());
  const int64_t width = want_tokens.size(1);
  const std::vector<int64_t> all = want_tokens.to_vector<int64_t>();
  for (size_t i = 0; i < hyps.size(); ++i) {
    std::vector<int64_t> want;
    for (int64_t j = 0; j < width; ++j)
      if (const int64_t t = all[i * static_cast<size_t>(width) + static_cast<size_t>(j)]; t >= 0)
        want.push_back(t);
    EXPECT_EQ(hyps[i].tokens, want) << GetParam() << ": hypothesis " << i;
    EXPECT_NEAR(hyps[i].score, scores[i], 1e-6 * std::abs(scores[i])) << GetParam() << " " << i;
    EXPECT_NEAR(hyps[i].sum_logprob, sums[i], 1e-6 * std::abs(sums[i])) << GetParam() << " " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, DecodeRef, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param; });

}  // namespace
