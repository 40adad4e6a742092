// Decoding (infer/generate.h): greedy decoding through the KV cache picks what a full forward
// over the whole context picks at every step; sampling follows its seed; top-k 1 is greedy;
// stop ids end it; a full context slides.
#include <gtest/gtest.h>

#include <set>

#include <algorithm>
#include <cmath>

#include "common/test_util.h"
#include "common/tiny_stacks.h"
#include "metalm/autograd/autograd.h"
#include "metalm/infer/beam.h"
#include "metalm/infer/generate.h"
#include "metalm/infer/score.h"
#include "metalm/ops/ops.h"

using namespace metalm;

namespace {

// Greedy continuation recomputing the whole context every step (the plain reference).
std::vector<int64_t> greedy_by_recompute(models::Decoder& dec, std::vector<int64_t> ctx, int n) {
  NoGradGuard ng;
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) {
    models::StackInputs in;
    in.tokens = Tensor::from_vector<int64_t>({1, static_cast<int64_t>(ctx.size())}, ctx);
    const Tensor l = dec.forward(in).logits;
    const std::vector<float> last = l.slice(1, l.size(1) - 1, l.size(1)).to_vector<float>();
    const int64_t id = std::max_element(last.begin(), last.end()) - last.begin();
    out.push_back(id);
    ctx.push_back(id);
  }
  return out;
}

}  // namespace

TEST(Generate, GreedyEqualsArgmaxOfTheFullForward) {
  Generator g(2);
  models::Decoder dec(test::tiny_decoder(), g);
  test::randomise(dec, 3);
  dec.eval();
  const std::vector<int64_t> prompt = {5, 9, 17, 3};
  infer::GenerateOptions o;
  o.max_new_tokens = 12;
  const std::vector<int64_t> got = infer::generate(dec, prompt, o);
  EXPECT_EQ(got, greedy_by_recompute(dec, prompt, 12));
  std::vector<int64_t> streamed;
  infer::generate(dec, prompt, o, [&](int64_t id) { streamed.push_back(id); });
  EXPECT_EQ(streamed, got);
  // top_k = 1 sampling is greedy whatever the temperature.
  o.temperature = 5.0;
  o.top_k = 1;
  EXPECT_EQ(infer::generate(dec, prompt, o), got);
}

TEST(Generate, SamplingFollowsItsSeedAndStopsAtAStopId) {
  Generator g(4);
  models::Decoder dec(test::tiny_decoder(), g);
  infer::GenerateOptions o;
  o.max_new_tokens = 20;
  o.temperature = 1.5;
  const std::vector<int64_t> a = infer::generate(dec, {5, 6}, o);
  EXPECT_EQ(infer::generate(dec, {5, 6}, o), a);
  o.seed = 2;
  EXPECT_NE(infer::generate(dec, {5, 6}, o), a);
  o.seed = 1;
  o.stop_ids = {a[3]};
  const std::vector<int64_t> stopped = infer::generate(dec, {5, 6}, o);
  const size_t first = std::find(a.begin(), a.end(), a[3]) - a.begin();
  EXPECT_EQ(stopped, std::vector<int64_t>(a.begin(), a.begin() + first + 1));
  // The distribution: with top_k = 3 every pick is among the 3 most likely of its step.
  std::vector<float> logits = {0.f, 3.f, 1.f, 2.5f, -1.f, 2.9f};
  infer::GenerateOptions k3;
  k3.temperature = 1.0;
  k3.top_k = 3;
  for (uint64_t s = 0; s < 200; ++s) {
    const int64_t id = infer::pick_token(logits.data(), 6, k3, s);
    EXPECT_TRUE(id == 1 || id == 3 || id == 5) << id;
  }
}

// Banned ids never come out, greedy or sampled, even where they are the argmax; out-of-range
// bans and a ban of the whole vocabulary are errors.
TEST(Generate, BannedIdsAreNeverEmitted) {
  Generator g(4);
  models::Decoder dec(test::tiny_decoder(), g);
  infer::GenerateOptions o;
  o.max_new_tokens = 12;
  const std::vector<int64_t> free_run = infer::generate(dec, {5, 6}, o);
  o.banned_ids = {free_run[0], free_run[1]};
  for (double t : {0.0, 1.5}) {
    o.temperature = t;
    const std::vector<int64_t> out = infer::generate(dec, {5, 6}, o);
    ASSERT_EQ(out.size(), 12u);
    for (int64_t id : out) EXPECT_TRUE(id != free_run[0] && id != free_run[1]) << id;
  }
  const int64_t V = dec.config.vocab_size;
  o.banned_ids = {V};
  EXPECT_TRUE(test::throws_with<ValueError>(
      [&] {
        infer::generate(dec, {5, 6}, o);
      },
      "outside the"));
  o.banned_ids.clear();
  for (int64_t i = 0; i < V; ++i) o.banned_ids.push_back(i);
  EXPECT_TRUE(test::throws_with<ValueError>([&] { infer::generate(dec, {5, 6}, o); }, "every id"));
}

TEST(Generate, AFullContextSlidesOrStops) {
  nn::DecoderConfig c = test::tiny_decoder();
  c.max_positions = 8;
  Generator g(5);
  models::Decoder dec(c, g);
  infer::GenerateOptions o;
  o.max_new_tokens = 20;
  // 8 positions read: 3 prompt + 5 generated ones, predicting a sixth, then it stops.
  EXPECT_EQ(infer::generate(dec, {3, 4, 5}, o).size(), 6u);
  o.slide_keep = 4;
  EXPECT_EQ(infer::generate(dec, {3, 4, 5}, o).size(), 20u);
  EXPECT_TRUE(
      test::throws_with<ValueError>([&] { infer::generate(dec, {}, o); }, "prompt is empty"));
  o.slide_keep = 0;
  EXPECT_TRUE(test::throws_with<ValueError>(
      [&] { infer::generate(dec, std::vector<int64_t>(9, 3), o); }, "the decoder reads 8"));
}

// The n-gram rule by hand: only the tokens that would complete a repeat are banned.
TEST(Beam, RepeatedNgramsAreBannedByHand) {
  auto banned = [](std::vector<int64_t> tokens, int64_t n) {
    std::vector<double> lp(10, 0.0);
    infer::ban_repeated_ngrams(tokens, n, lp);
    std::vector<int64_t> out;
    for (int64_t i = 0; i < 10; ++i)
      if (lp[static_cast<size_t>(i)] == -INFINITY) out.push_back(i);
    return out;
  };
  using V = std::vector<int64_t>;
  EXPECT_EQ(banned({5, 6, 7, 5, 6}, 3), V{7});          // 5 6 | 7 seen after 5 6
  EXPECT_EQ(banned({5, 6, 7, 5, 6}, 2), V{7});          // 6 | 7
  EXPECT_EQ(banned({5, 6, 7, 5, 6}, 1), (V{5, 6, 7}));  // every token seen
  EXPECT_EQ(banned({5, 6, 7, 5, 6}, 4), V{});           // 7 5 6 never seen before
  EXPECT_EQ(banned({4, 4, 4}, 2), V{4});
  EXPECT_EQ(banned({3, 8, 3, 9, 3}, 2), (V{8, 9}));  // every continuation of 3
  EXPECT_EQ(banned({1, 2}, 3), V{});                 // shorter than n: nothing
  EXPECT_EQ(banned({1, 2}, 0), V{});
}

// Beam search: beam 1 is greedy (equal to generate() at temperature 0 until EOS), and bad
// options are one clear error each.
TEST(Beam, BeamOneIsGreedyAndBadOptionsAreErrors) {
  Generator g(4);
  models::Decoder dec(test::tiny_decoder(), g);
  infer::GenerateOptions greedy;
  greedy.max_new_tokens = 10;
  const std::vector<int64_t> want = infer::generate(dec, {5, 6}, greedy);
  infer::BeamOptions o;
  o.beam = 1;
  o.max_new_tokens = 10;
  o.eos_id = 2;
  const std::vector<infer::Hypothesis> h = infer::beam_search(dec, {5, 6}, o);
  ASSERT_EQ(h.size(), 1u);
  const size_t eos = std::find(want.begin(), want.end(), 2) - want.begin();
  const std::vector<int64_t> body(want.begin(), want.begin() + std::min(eos, want.size()));
  EXPECT_EQ(std::vector<int64_t>(h[0].tokens.begin(), h[0].tokens.end() - 1), body);
  EXPECT_EQ(h[0].tokens.back(), 2);
  auto fails = [&](infer::BeamOptions bad, const std::vector<int64_t>& prompt, const char* what) {
    EXPECT_TRUE(test::throws_with<ValueError>([&] { infer::beam_search(dec, prompt, bad); }, what))
        << what;
  };
  infer::BeamOptions b = o;
  b.beam = dec.config.vocab_size;
  fails(b, {5}, "beam must be in");
  b = o;
  b.min_new_tokens = 11;
  fails(b, {5}, "above max_new_tokens");
  b = o;
  b.banned_ids = {2};
  fails(b, {5}, "is EOS");
  b = o;
  b.max_new_tokens = dec.config.max_positions;
  fails(b, {5}, "exceed the decoder");
  fails(o, {}, "prompt is empty");
}

// Batched beam search: prompts of different lengths, left-padded in one cache, each searched
// as beam_search does it alone (the same hypotheses in the same order, scores to float
// rounding), prompts finishing at different steps.
TEST(Beam, BatchedSearchEqualsEachPromptAlone) {
  Generator g(6);
  models::Decoder dec(test::tiny_decoder(), g);
  infer::BeamOptions o;
  o.beam = 3;
  o.length_penalty = 0.6;
  o.max_new_tokens = 12;
  o.no_repeat_ngram = 2;
  o.eos_id = 2;
  const std::vector<std::vector<int64_t>> prompts = {{5, 6, 7}, {9, 3, 11, 12, 4, 8, 20}, {30}};
  std::vector<infer::DecoderPrompt> batch(prompts.begin(), prompts.end());
  const auto got = infer::beam_search_batch(dec, batch, o);
  ASSERT_EQ(got.size(), prompts.size());
  std::set<size_t> lengths;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const auto alone = infer::beam_search(dec, prompts[p], o);
    ASSERT_EQ(got[p].size(), alone.size()) << "prompt " << p;
    for (size_t h = 0; h < alone.size(); ++h) {
      EXPECT_EQ(got[p][h].tokens, alone[h].tokens) << "prompt " << p << " hypothesis " << h;
      EXPECT_NEAR(got[p][h].score, alone[h].score, 1e-5) << "prompt " << p << " hypothesis " << h;
      lengths.insert(alone[h].tokens.size());
    }
  }
  EXPECT_GT(lengths.size(), 1u);  // hypotheses finished at different steps
  EXPECT_TRUE(test::throws_with<ValueError>([&] { infer::beam_search_batch(dec, {}, o); }, "no prompts"));
}

// Top-p keeps the smallest most-likely prefix whose mass reaches p (the crossing id included)
// and renormalises; min_new_tokens keeps the stop ids out of the first steps.
TEST(Generate, TopPKeepsTheNucleusAndMinNewTokensDelaysStops) {
  const std::vector<double> probs = {0.15, 0.5, 0.05, 0.3};  // ids by likelihood: 1, 3, 0, 2
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  auto counts = [&](double top_p) {
    infer::GenerateOptions o;
    o.temperature = 1.0;
    o.top_p = top_p;
    std::vector<int> n(4, 0);
    for (uint64_t s = 0; s < 4000; ++s)
      ++n[static_cast<size_t>(infer::pick_token(logits.data(), 4, o, s))];
    return n;
  };
  const std::vector<int> p45 = counts(0.45);
  EXPECT_EQ(p45[1], 4000);  // 0.5 alone reaches 0.45
  const std::vector<int> p7 = counts(0.7);
  EXPECT_EQ(p7[0] + p7[2], 0);  // 0.5 + 0.3 crosses 0.7: ids 1 and 3 only
  EXPECT_NEAR(p7[1] / 4000.0, 0.5 / 0.8, 0.03);
  const std::vector<int> p9 = counts(0.9);
  EXPECT_EQ(p9[2], 0);  // 0.5 + 0.3 + 0.15 crosses 0.9
  EXPECT_GT(p9[0], 0);
  EXPECT_NEAR(p9[0] / 4000.0, 0.15 / 0.95, 0.03);
  const std::vector<int> all = counts(1.0);
  EXPECT_GT(all[2], 0);

  Generator g(4);
  models::Decoder dec(test::tiny_decoder(), g);
  infer::GenerateOptions o;
  o.max_new_tokens = 6;
  const std::vector<int64_t> free_run = infer::generate(dec, {5, 6}, o);
  o.stop_ids = {free_run[0]};
  EXPECT_EQ(infer::generate(dec, {5, 6}, o), std::vector<int64_t>{free_run[0]});
  o.min_new_tokens = 1;
  const std::vector<int64_t> delayed = infer::generate(dec, {5, 6}, o);
  ASSERT_FALSE(delayed.empty());
  EXPECT_NE(delayed[0], free_run[0]);
  o.top_p = 0;
  EXPECT_TRUE(test::throws_with<ValueError>([&] { infer::generate(dec, {5, 6}, o); }, "top_p"));
}

// Prompts of different lengths in one batch (left-padded, pads masked, own positions) give what
// each gives alone, greedy and sampled, with rows stopping at different steps.
TEST(Generate, BatchedPaddedGenerationEqualsOneByOne) {
  Generator g(4);
  models::Decoder dec(test::tiny_decoder(), g);
  const std::vector<std::vector<int64_t>> prompts = {{5, 6}, {7, 3, 9, 11, 4}, {12}, {8, 8, 2}};
  for (double temperature : {0.0, 1.3}) {
    infer::GenerateOptions o;
    o.max_new_tokens = 9;
    o.temperature = temperature;
    o.top_k = temperature > 0 ? 5 : 0;
    std::vector<std::vector<int64_t>> alone;
    for (const auto& p : prompts) alone.push_back(infer::generate(dec, p, o));
    EXPECT_EQ(infer::generate_batch(dec, prompts, o), alone) << "temperature " << temperature;
    // A stop id that ends some rows early and not others.
    o.stop_ids = {alone[1][2]};
    std::vector<std::vector<int64_t>> stopped;
    for (const auto& p : prompts) stopped.push_back(infer::generate(dec, p, o));
    EXPECT_EQ(infer::generate_batch(dec, prompts, o), stopped) << "temperature " << temperature;
    EXPECT_LT(stopped[1].size(), 9u);
  }
  infer::GenerateOptions o;
  EXPECT_TRUE(test::throws_with<ValueError>(
      [&] {
        infer::generate_batch(dec, {{5}, {}}, o);
      },
      "a prompt is empty"));
  o.max_new_tokens = dec.config.max_positions;
  EXPECT_TRUE(test::throws_with<ValueError>([&] { infer::generate_batch(dec, {{5}}, o); },
                                            "exceed the decoder"));
}

// Candidate scores from one padded batch equal log-softmax sums of each candidate's own full
// forward (computed here independently, through ops::log_softmax on f64 logits), within f32
// rounding: the batched GEMMs differ from the single-row ones in the last bits (2e-6 relative).
TEST(Score, BatchedCandidateScoresEqualOneByOneLogSoftmaxSums) {
  Generator g(4);
  models::Decoder dec(test::tiny_decoder(), g);
  const std::vector<int64_t> context = {0, 5, 6, 9};
  const std::vector<std::vector<int64_t>> cands = {{7}, {11, 3, 8}, {4, 4}, {12, 13, 14, 15, 16}};
  const std::vector<infer::CandidateScore> got = infer::score_candidates(dec, context, cands);
  ASSERT_EQ(got.size(), cands.size());
  dec.eval();
  for (size_t i = 0; i < cands.size(); ++i) {
    std::vector<int64_t> seq = context;
    seq.insert(seq.end(), cands[i].begin(), cands[i].end());
    models::StackInputs in;
    in.tokens = Tensor::from_vector<int64_t>({1, static_cast<int64_t>(seq.size())}, seq);
    const Tensor lp = ops::log_softmax(dec.forward(in).logits.to(DType::f64));
    const std::vector<double> all = lp.contiguous().to_vector<double>();
    const int64_t V = lp.size(2);
    double want = 0;
    for (size_t j = 0; j < cands[i].size(); ++j)
      want +=
          all[(context.size() + j - 1) * static_cast<size_t>(V) + static_cast<size_t>(cands[i][j])];
    EXPECT_NEAR(got[i].sum_logprob, want, 2e-6 * std::abs(want) + 1e-6) << i;
    EXPECT_NEAR(got[i].mean_logprob * static_cast<double>(cands[i].size()), got[i].sum_logprob,
                1e-12)
        << i;
    EXPECT_EQ(got[i].tokens, static_cast<int64_t>(cands[i].size()));
  }
  EXPECT_TRUE(test::throws_with<ValueError>(
      [&] {
        infer::score_candidates(dec, context, {{5}, {}});
      },
      "candidate is empty"));
  EXPECT_TRUE(test::throws_with<ValueError>([&] { infer::score_candidates(dec, {}, {{5}}); },
                                            "context is empty"));
}

// stop_when ends a row once it holds for the ids so far, alone and batched.
TEST(Generate, StopWhenEndsEachRowWhereItHolds) {
  Generator g(4);
  models::Decoder dec(test::tiny_decoder(), g);
  infer::GenerateOptions o;
  o.max_new_tokens = 10;
  o.stop_when = [](const std::vector<int64_t>& ids) { return ids.size() == 3; };
  EXPECT_EQ(infer::generate(dec, {5, 6}, o).size(), 3u);
  const std::vector<int64_t> free_run = [&] {
    infer::GenerateOptions f = o;
    f.stop_when = nullptr;
    return infer::generate(dec, {5, 6}, f);
  }();
  ASSERT_EQ(free_run.size(), 10u);
  o.stop_when = [&](const std::vector<int64_t>& ids) { return ids.back() == free_run[4]; };
  const size_t first = std::find(free_run.begin(), free_run.end(), free_run[4]) - free_run.begin();
  EXPECT_EQ(infer::generate(dec, {5, 6}, o),
            std::vector<int64_t>(free_run.begin(), free_run.begin() + first + 1));
  o.stop_when = [](const std::vector<int64_t>& ids) { return ids.size() == 2; };
  for (const auto& row : infer::generate_batch(dec, {{5, 6}, {7, 8, 9}}, o))
    EXPECT_EQ(row.size(), 2u);
}
