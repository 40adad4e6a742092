// MetaLM's semi-causal pieces: the span sampler (proportion, non-overlap, line boundaries,
// determinism), the D4 loss mask on a hand-worked example in both modes, the absence (exact) and
// presence (reference) of the one-token leak in the model itself, MLM corruption, and the
// MetaLM model's docking of one or several encoders.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "common/test_util.h"
#include "metalm/autograd/autograd.h"
#include "metalm/data/mlm.h"
#include "metalm/data/spans.h"
#include "metalm/models/factory.h"
#include "metalm/models/metalm.h"
#include "metalm/ops/ops.h"
#include "metalm/train/objectives.h"

using namespace metalm;
using metalm::test::all_close;
using json = nlohmann::json;

namespace {

constexpr int32_t kLine = 8;

// A sequence of n ids starting with <s>, ordinary tokens 9..99, a </line> every `line` tokens.
std::vector<int32_t> sequence(int64_t n, int64_t line, uint64_t seed) {
  Generator g(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  ids[0] = 0;
  for (int64_t i = 1; i < n; ++i)
    ids[i] = line > 0 && i % line == 0 ? kLine : static_cast<int32_t>(g.randint(9, 100));
  return ids;
}

}  // namespace

TEST(Spans, CoverTheProportionWithoutOverlapOrLineBoundaries) {
  data::SpanOptions o;
  o.length = 32;
  o.proportion = 0.25;
  o.boundary_id = kLine;
  double covered = 0, total = 0;
  std::set<int64_t> sizes;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const int64_t n = 257 + static_cast<int64_t>(seed % 5) * 50;
    const std::vector<int32_t> ids = sequence(n, seed % 2 ? 45 : 0, seed);
    const std::vector<data::Span> spans = data::sample_spans(ids.data(), n, o, seed);
    ASSERT_FALSE(spans.empty()) << seed;
    int64_t c = 0, last_end = 1;
    for (const data::Span& s : spans) {
      EXPECT_GE(s.begin, last_end) << "overlap or unsorted, seed " << seed;  // sorted, disjoint
      EXPECT_LE(s.end, n - 1);
      EXPECT_LE(s.size(), o.length);
      for (int64_t t = s.begin; t < s.end; ++t) EXPECT_NE(ids[t], kLine) << "crosses a line";
      last_end = s.end;
      c += s.size();
      sizes.insert(s.size());
    }
    // Spans are added until they exceed the budget, so coverage ends within one span above it.
    EXPECT_GT(static_cast<double>(c), (n - 1) * o.proportion - o.length) << seed;
    EXPECT_LE(static_cast<double>(c), (n - 1) * o.proportion + o.length) << seed;
    covered += static_cast<double>(c);
    total += static_cast<double>(n - 1);
  }
  EXPECT_NEAR(covered / total, 0.25, 0.05);
  EXPECT_GT(sizes.size(), 5u);  // lengths vary
  // Windows without a boundary give spans of at least L/2 + 1.
  const std::vector<int32_t> plain = sequence(400, 0, 9);
  for (const data::Span& s : data::sample_spans(plain.data(), 400, o, 3))
    EXPECT_GT(s.size(), o.length / 2);
}

TEST(Spans, DeterministicAndSeedSensitiveAndNoneForShortSequences) {
  data::SpanOptions o;
  o.length = 16;
  const std::vector<int32_t> ids = sequence(200, 0, 1);
  EXPECT_EQ(data::sample_spans(ids.data(), 200, o, 5), data::sample_spans(ids.data(), 200, o, 5));
  EXPECT_NE(data::sample_spans(ids.data(), 200, o, 5), data::sample_spans(ids.data(), 200, o, 6));
  // n <= 2.5 L + 1: plain causal LM.
  EXPECT_TRUE(data::sample_spans(ids.data(), 41, o, 5).empty());
  EXPECT_FALSE(data::sample_spans(ids.data(), 42, o, 5).empty());
  o.proportion = 0;
  EXPECT_TRUE(data::sample_spans(ids.data(), 200, o, 5).empty());
  // A window with one boundary gives the part after it; with two, nothing.
  std::vector<int32_t> one(100, 20);
  one[0] = 0;
  o.proportion = 0.9;
  one[1 + 3] = kLine;  // window [1, 17): boundary at offset 3
  for (int64_t w = 17; w < 100; w += 5) one[w] = one[w + 1] = kLine;  // later windows: two each
  EXPECT_TRUE(data::sample_spans(one.data(), 100, o, 1).empty());  // 16 - 3 = 13 < 20 left
  o.min_after_boundary = 13;  // 13 left after the boundary: taken
  const std::vector<data::Span> spans = data::sample_spans(one.data(), 100, o, 1);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0], (data::Span{5, 17}));
  o.min_after_boundary = 14;
  EXPECT_TRUE(data::sample_spans(one.data(), 100, o, 1).empty());
}

// Two spans [3, 7) and [12, 16) in an input of 20 positions, position by position.
TEST(SpanLoss, HandWorkedExampleInBothModes) {
  const std::vector<data::Span> spans = {{3, 7}, {12, 16}};
  for (data::SpanLoss mode : {data::SpanLoss::exact, data::SpanLoss::reference}) {
    std::vector<uint8_t> dock(20, 0);
    std::vector<float> loss(20, 1.f);
    loss[19] = 0.f;  // a padded target stays unscored
    data::apply_spans(spans, 20, mode, dock.data(), loss.data());
    EXPECT_EQ(dock, (std::vector<uint8_t>{0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0}));
    if (mode == data::SpanLoss::exact)  // D4: a..e-2 unscored; a-1 and e-1 scored
      EXPECT_EQ(loss, (std::vector<float>{1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0}));
    else  // the released loader: a-1 .. e-3 unscored, e-2 scored
      EXPECT_EQ(loss, (std::vector<float>{1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 0}));
  }
  std::vector<uint8_t> dock(8, 0);
  std::vector<float> loss(8, 1.f);
  EXPECT_TRUE(test::throws_with<ValueError>(
      [&] { data::apply_spans({{5, 9}}, 8, data::SpanLoss::exact, dock.data(), loss.data()); },
      "does not fit"));
}

TEST(Mlm, CorruptsFifteenPercentEightyTenTen) {
  data::MlmOptions o;
  o.vocab_size = 1000;
  const int64_t n = 200000;
  std::vector<int32_t> ids(static_cast<size_t>(n));
  Generator g(1);
  for (auto& v : ids) v = static_cast<int32_t>(g.randint(0, 1000));  // specials included
  std::vector<int64_t> in(ids.size()), tg(ids.size());
  const int64_t chosen = data::mlm_corrupt(ids.data(), n, o, 7, in.data(), tg.data());
  int64_t ordinary = 0, masked = 0, random = 0, kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool special = ids[i] < 9;
    ordinary += !special;
    if (tg[i] == -100) {
      EXPECT_EQ(in[i], ids[i]);
      continue;
    }
    EXPECT_FALSE(special) << "a special token was chosen";
    EXPECT_EQ(tg[i], ids[i]);
    if (in[i] == o.mask_id) {
      ++masked;
    } else if (in[i] == ids[i]) {
      ++kept;
    } else {
      ++random;
      EXPECT_GE(in[i], 9);
    }
  }
  // Binomial counts: 5 standard deviations of the proportions.
  const double p = static_cast<double>(chosen) / static_cast<double>(ordinary);
  EXPECT_NEAR(p, 0.15, 5 * std::sqrt(0.15 * 0.85 / static_cast<double>(ordinary)));
  const double c = static_cast<double>(chosen), sd = 5 * std::sqrt(0.09 / c);
  EXPECT_NEAR(masked / c, 0.8, sd);
  EXPECT_NEAR(random / c, 0.1 + 0.1 / 991, sd);  // a random token may equal the original
  EXPECT_NEAR(kept / c, 0.1 - 0.1 / 991, sd);
  std::vector<int64_t> in2(ids.size()), tg2(ids.size());
  data::mlm_corrupt(ids.data(), n, o, 7, in2.data(), tg2.data());
  EXPECT_EQ(in, in2);
  data::mlm_corrupt(ids.data(), n, o, 8, in2.data(), tg2.data());
  EXPECT_NE(in, in2);
}

namespace {

json tiny_metalm(int64_t d_enc = 24) {
  return {{"model_type", "metalm"},
          {"decoder",
           {{"decoder_embed_dim", 32}, {"decoder_attention_heads", 4},
            {"decoder_ffn_embed_dim", 64}, {"decoder_layers", 2}, {"vocab_size", 100},
            {"max_target_positions", 128}}},
          {"encoders",
           {{{"name", "text"}, {"span", "text"},
             {"config",
              {{"encoder_embed_dim", d_enc}, {"encoder_attention_heads", 4},
               {"encoder_ffn_embed_dim", 48}, {"encoder_layers", 2}, {"vocab_size", 100},
               {"max_source_positions", 64}}},
             {"connector", {{"kind", "complex"}}}},
            {{"name", "second"}, {"span", "text"},
             {"config",
              {{"encoder_embed_dim", 16}, {"encoder_attention_heads", 2},
               {"encoder_ffn_embed_dim", 32}, {"encoder_layers", 1}, {"vocab_size", 100}}},
             {"connector", {{"kind", "simple"}}}}}}};
}

models::SpanInputs spans_of(const std::string& encoder, const std::vector<std::vector<int64_t>>& rows,
                            const std::vector<uint8_t>& target, int64_t B, int64_t T) {
  int64_t L = 0;
  for (const auto& r : rows) L = std::max<int64_t>(L, static_cast<int64_t>(r.size()) + 1);
  const int64_t S = static_cast<int64_t>(rows.size());
  std::vector<int64_t> tok(static_cast<size_t>(S * L), 1);
  std::vector<uint8_t> pad(tok.size(), 1), sel(tok.size(), 0);
  for (int64_t s = 0; s < S; ++s) {
    tok[s * L] = 0, pad[s * L] = 0;
    for (size_t j = 0; j < rows[s].size(); ++j)
      tok[s * L + 1 + j] = rows[s][j], pad[s * L + 1 + j] = 0, sel[s * L + 1 + j] = 1;
  }
  models::SpanInputs sp;
  sp.encoder = encoder;
  sp.tokens = Tensor::from_vector<int64_t>({S, L}, tok);
  sp.padding = Tensor::from_vector<uint8_t>({S, L}, pad);
  sp.select = Tensor::from_vector<uint8_t>({S, L}, sel);
  sp.target = Tensor::from_vector<uint8_t>({B, T}, target);
  return sp;
}

}  // namespace

// Two encoders docking interleaved positions: the same logits as the decoder docked by hand
// with the vectors in position order, and gradients reach both encoders.
TEST(MetaLM, DocksSeveralEncodersInPositionOrder) {
  auto m = models::build_model(models::model_config_from_json(tiny_metalm()), {3, true});
  auto& lm = dynamic_cast<models::MetaLM&>(*m);
  lm.eval();
  const int64_t B = 2, T = 10;
  Generator g(4);
  std::vector<int64_t> tok(static_cast<size_t>(B * T));
  for (auto& t : tok) t = g.randint(9, 100);
  models::StackInputs in;
  in.tokens = Tensor::from_vector<int64_t>({B, T}, tok);
  // text: row 0 positions 2..4 and row 1 positions 6..7; second: row 0 positions 6..8.
  std::vector<uint8_t> t1(B * T, 0), t2(B * T, 0);
  for (int p : {2, 3, 4, 16, 17}) t1[p] = 1;
  for (int p : {6, 7, 8}) t2[p] = 1;
  in.spans = {spans_of("text", {{tok[2], tok[3], tok[4]}, {tok[16], tok[17]}}, t1, B, T),
              spans_of("second", {{tok[6], tok[7], tok[8]}}, t2, B, T)};
  const Tensor got = lm.forward(in).logits;

  const Tensor f1 = lm.span_features(in.spans[0]), f2 = lm.span_features(in.spans[1]);
  std::vector<uint8_t> all(B * T, 0);
  for (int p : {2, 3, 4, 6, 7, 8, 16, 17}) all[p] = 1;
  models::StackInputs manual;
  manual.tokens = in.tokens;
  manual.dock_mask = Tensor::from_vector<uint8_t>({B, T}, all);
  manual.dock_features = ops::concat({f1.slice(0, 0, 3), f2, f1.slice(0, 3, 5)}, 0);
  EXPECT_TRUE(all_close(got, lm.decoder().forward(manual).logits, 0, 0));

  lm.train();
  ops::sum(lm.forward(in).logits).backward();
  for (const char* p : {"encoders.text.layers.0.ffn.fc1.weight",
                        "encoders.second.layers.0.ffn.fc1.weight",
                        "connectors.text.dense.weight", "connectors.second.dense.weight"})
    EXPECT_TRUE(lm.named_parameters().at(p).grad().defined()) << p;
  // Overlapping targets are an error.
  in.spans[1].target = Tensor::from_vector<uint8_t>({B, T}, t1);
  EXPECT_TRUE(test::throws_with<ValueError>([&] { lm.forward(in); }, "target of two docked"));
}

// What `metalm pretrain` trains of a docked encoder: its top layers only; the other encoder and
// the connectors keep training.
TEST(MetaLM, FreezesADockedEncoderButItsTopLayers) {
  auto m = models::build_model(models::model_config_from_json(tiny_metalm()), {3, true});
  auto& lm = dynamic_cast<models::MetaLM&>(*m);
  const int64_t per_layer = lm.freeze_encoder("text", 1);
  EXPECT_GT(per_layer, 0);
  int64_t trained = 0;
  for (const auto& [name, p] : lm.named_parameters()) {
    const bool text = name.rfind("encoders.text.", 0) == 0;
    const bool top = name.rfind("encoders.text.layers.1.", 0) == 0;
    EXPECT_EQ(p.requires_grad(), !text || top) << name;
    trained += top;
  }
  EXPECT_EQ(trained, per_layer);
  EXPECT_EQ(lm.freeze_encoder("text", 5), 2 * per_layer);  // more layers than it has: all
  EXPECT_EQ(lm.freeze_encoder("text", 0), 0);
  EXPECT_TRUE(test::throws_with<ValueError>([&] { lm.freeze_encoder("image", 1); }, "image"));
}

// The model itself, through the objective: with the exact loss, no scored position's logits
// depend on its own target token; with the reference loss, position e-2 is scored although the
// encoder saw its target (the released code's leak, kept as an option).
TEST(SemiCausal, ScoredTargetsAreUnseenExactlyInTheExactMode) {
  auto m = models::build_model(models::model_config_from_json(tiny_metalm()), {5, true});
  m->eval();
  NoGradGuard ng;
  train::SemiCausalOptions o;
  o.spans.length = 12;
  o.spans.proportion = 0.3;
  const int64_t T = 64;
  std::vector<int64_t> ids = {0};
  Generator g(6);
  for (int64_t i = 0; i < T; ++i) ids.push_back(g.randint(9, 100));
  train::SequenceBatch batch{Tensor::from_vector<int64_t>({1, T + 1}, ids), 11};
  for (data::SpanLoss mode : {data::SpanLoss::exact, data::SpanLoss::reference}) {
    o.span_loss = mode;
    const train::SemiCausalObjective obj(o);
    const auto base = obj.prepare(batch);
    ASSERT_FALSE(base.inputs.spans.empty());
    const Tensor logits = m->forward(base.inputs).logits;
    const std::vector<float> score = base.score.to_vector<float>();
    const std::vector<uint8_t> dock = base.inputs.spans[0].target.to_vector<uint8_t>();
    int64_t leaks = 0;
    for (int64_t t = 0; t + 1 < T; ++t) {
      if (score[t] == 0) continue;
      // Change the target of position t (token t + 1), keeping the same spans.
      std::vector<int64_t> changed = ids;
      changed[t + 1] = changed[t + 1] == 50 ? 51 : 50;
      train::SequenceBatch b2{Tensor::from_vector<int64_t>({1, T + 1}, changed), 11};
      auto p2 = obj.prepare(b2);
      ASSERT_EQ(p2.inputs.spans[0].target.to_vector<uint8_t>(), dock);
      const Tensor l2 = m->forward(p2.inputs).logits;
      if (!all_close(l2.slice(1, t, t + 1), logits.slice(1, t, t + 1), 0, 0)) ++leaks;
    }
    if (mode == data::SpanLoss::exact)
      EXPECT_EQ(leaks, 0);
    else
      EXPECT_EQ(leaks, static_cast<int64_t>(base.inputs.spans[0].tokens.size(0)));  // one per span
  }
}

TEST(SemiCausal, PreparedInputsMatchTheSpans) {
  train::SemiCausalOptions o;
  o.spans.length = 10;
  const int64_t T = 60;
  std::vector<int64_t> ids = {0};
  for (int64_t i = 0; i < T; ++i) ids.push_back(9 + i);
  for (int i = 0; i < 5; ++i) ids[T - i] = 1;  // right padding
  const train::SemiCausalObjective obj(o);
  const auto p = obj.prepare({Tensor::from_vector<int64_t>({1, T + 1}, ids), 3});
  ASSERT_EQ(p.inputs.spans.size(), 1u);
  const models::SpanInputs& sp = p.inputs.spans[0];
  const std::vector<uint8_t> target = sp.target.to_vector<uint8_t>();
  const std::vector<int64_t> tok = sp.tokens.to_vector<int64_t>();
  const std::vector<uint8_t> sel = sp.select.to_vector<uint8_t>();
  const int64_t L = sp.tokens.size(1);
  // The selected encoder tokens, in order, are the decoder tokens at the target positions.
  std::vector<int64_t> docked, selected;
  for (int64_t t = 0; t < T; ++t)
    if (target[t]) docked.push_back(ids[t]);
  for (int64_t s = 0; s < sp.tokens.size(0); ++s) {
    EXPECT_EQ(tok[s * L], 0) << "each span starts with <s>";
    for (int64_t j = 0; j < L; ++j)
      if (sel[s * L + j]) selected.push_back(tok[s * L + j]);
  }
  EXPECT_EQ(docked, selected);
  EXPECT_EQ(p.span_tokens, static_cast<int64_t>(docked.size()));
  const std::vector<float> score = p.score.to_vector<float>();
  for (int64_t t = T - 5; t < T; ++t) EXPECT_EQ(score[t], 0.f) << "padded targets unscored";
}
