// Prompts with docked segments (infer/prompt.h) and the conversation over one cache
// (infer/chat.h): the markup and JSON forms, templates and k-shot prompts, and decoding from a
// docked prompt checked against MetaLM's own training-path forward (spans docked by
// MetaLM::run, the whole sequence recomputed at every step, no cache).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/test_util.h"
#include "common/tiny_task_model.h"
#include "metalm/data/tokenizer.h"
#include "metalm/infer/beam.h"
#include "metalm/infer/chat.h"
#include "metalm/infer/generate.h"
#include "metalm/infer/prompt.h"
#include "metalm/infer/score.h"
#include "metalm/models/factory.h"
#include "metalm/models/metalm.h"

using namespace metalm;
using metalm::test::throws_with;
using nlohmann::json;

namespace {

class PromptTest : public ::testing::Test {
 protected:
  const data::Tokenizer& tok() const { return test::tiny_tokenizer(); }
  std::vector<int64_t> enc(const std::string& s) const {
    std::vector<int64_t> out;
    for (int32_t id : tok().encode(s)) out.push_back(id);
    return out;
  }
  std::unique_ptr<models::Model> metalm() const { return test::tiny_metalm(); }
};

// MetaLM's training path for a prompt + continuation: the docked segments as SpanInputs of
// MetaLM::run (built here, independently of prepare_prompt), the whole sequence at once.
Tensor full_logits(models::MetaLM& lm, const infer::Prompt& p, const std::vector<int64_t>& more,
                   int64_t bos) {
  std::vector<int64_t> ids = p.ids();
  ids.insert(ids.end(), more.begin(), more.end());
  const auto T = static_cast<int64_t>(ids.size());
  std::vector<std::vector<int64_t>> rows;
  std::vector<uint8_t> target(static_cast<size_t>(T), 0);
  size_t pos = 0;
  for (const infer::Segment& s : p.segments) {
    if (!s.encoder.empty()) {
      rows.push_back(s.ids);
      for (size_t j = 0; j < s.ids.size(); ++j) target[pos + j] = 1;
    }
    pos += s.ids.size();
  }
  models::StackInputs in;
  in.tokens = Tensor::from_vector<int64_t>({1, T}, ids);
  if (!rows.empty()) {
    int64_t L = 0;
    for (const auto& r : rows) L = std::max<int64_t>(L, static_cast<int64_t>(r.size()) + 1);
    const auto S = static_cast<int64_t>(rows.size());
    std::vector<int64_t> tk(static_cast<size_t>(S * L), 1);
    std::vector<uint8_t> pad(tk.size(), 1), sel(tk.size(), 0);
    for (int64_t s = 0; s < S; ++s) {
      tk[s * L] = bos, pad[s * L] = 0;
      for (size_t j = 0; j < rows[s].size(); ++j)
        tk[s * L + 1 + j] = rows[s][j], pad[s * L + 1 + j] = 0, sel[s * L + 1 + j] = 1;
    }
    models::SpanInputs sp;
    sp.encoder = "text";
    sp.tokens = Tensor::from_vector<int64_t>({S, L}, tk);
    sp.padding = Tensor::from_vector<uint8_t>({S, L}, pad);
    sp.select = Tensor::from_vector<uint8_t>({S, L}, sel);
    sp.target = Tensor::from_vector<uint8_t>({1, T}, target);
    in.spans.push_back(sp);
  }
  return lm.forward(in).logits.contiguous();  // [1, T, V]
}

int64_t argmax_last(const Tensor& logits) {
  const int64_t T = logits.size(1), V = logits.size(2);
  const float* row = logits.data<float>() + (T - 1) * V;
  return std::max_element(row, row + V) - row;
}

}  // namespace

TEST_F(PromptTest, MarkupSplitsPlainAndDockedSegments) {
  const infer::Prompt p = infer::parse_prompt(tok(), "review: {{the film was great}} answer:", "text");
  ASSERT_EQ(p.segments.size(), 3u);
  std::vector<int64_t> first = {tok().bos_id()};
  for (int64_t id : enc("review: ")) first.push_back(id);
  EXPECT_EQ(p.segments[0].ids, first);
  EXPECT_EQ(p.segments[0].encoder, "");
  EXPECT_EQ(p.segments[1].ids, enc("the film was great"));
  EXPECT_EQ(p.segments[1].encoder, "text");
  EXPECT_EQ(p.segments[2].ids, enc(" answer:"));
  EXPECT_TRUE(p.has_docked());
  EXPECT_EQ(p.size(), static_cast<int64_t>(first.size() + enc("the film was great").size() +
                                           enc(" answer:").size()));
  // Line breaks are </line>; an escaped "{{" is text; no <s> when asked.
  const infer::Prompt q = infer::parse_prompt(tok(), "good\n\\{{bad", "text", false);
  ASSERT_EQ(q.segments.size(), 1u);
  std::vector<int64_t> want = enc("good");
  want.push_back(tok().spec().line_end_id);
  for (int64_t id : enc("{{bad")) want.push_back(id);
  EXPECT_EQ(q.segments[0].ids, want);
}

TEST_F(PromptTest, MarkupErrorsNameTheOffset) {
  EXPECT_TRUE(throws_with<ValueError>([&] { infer::parse_prompt(tok(), "a {{b", "text"); },
                                      std::vector<std::string>{"offset 2", "no closing"}));
  EXPECT_TRUE(throws_with<ValueError>([&] { infer::parse_prompt(tok(), "{{a {{b}} }}", "text"); },
                                      "do not nest"));
  EXPECT_TRUE(throws_with<ValueError>([&] { infer::parse_prompt(tok(), "a {{}}", "text"); },
                                      "is empty"));
  EXPECT_TRUE(throws_with<ValueError>([&] { infer::parse_prompt(tok(), "a {{b}}", ""); },
                                      "has none"));
}

TEST_F(PromptTest, JsonFormEqualsMarkup) {
  const json j = json::array({{{"text", "review: "}},
                              {{"text", "the film was great"}, {"dock", true}},
                              {{"text", " answer:"}, {"dock", false}}});
  const infer::Prompt a = infer::parse_prompt_json(tok(), j, "text", {"prompt", "p.json"});
  const infer::Prompt b = infer::parse_prompt(tok(), "review: {{the film was great}} answer:", "text");
  ASSERT_EQ(a.segments.size(), b.segments.size());
  for (size_t i = 0; i < a.segments.size(); ++i) {
    EXPECT_EQ(a.segments[i].ids, b.segments[i].ids);
    EXPECT_EQ(a.segments[i].encoder, b.segments[i].encoder);
  }
  const infer::Prompt s = infer::parse_prompt_json(tok(), json("{{good}} bad"), "text", {"prompt"});
  EXPECT_EQ(s.segments[1].encoder, "text");
  EXPECT_TRUE(throws_with<ValueError>(
      [&] { infer::parse_prompt_json(tok(), json::array({{{"txt", "a"}}}), "text", {"prompt"}); },
      "unknown field"));
  EXPECT_TRUE(throws_with<ValueError>(
      [&] { infer::parse_prompt_json(tok(), json::array({{{"text", "a"}, {"dock", 3}}}), "text",
                                     {"prompt"}); },
      "expected true, false or an encoder name"));
  EXPECT_TRUE(throws_with<ValueError>(
      [&] { infer::parse_prompt_json(tok(), json(5), "text", {"prompt"}); }, "a string"));
}

TEST_F(PromptTest, FewShotPromptDocksInputsAndSeparatesDemonstrations) {
  const infer::PromptTemplate t{"review: {input} sentiment:", true};
  const infer::Prompt p = infer::few_shot_prompt(
      tok(), t, {{"the film was great", "positive"}, {"awful plot", "negative"}}, "good acting",
      "text");
  // <s> review: | [docked] | sentiment: positive </s> review: | [docked] | ... | review: | [docked] | sentiment:
  std::vector<std::vector<int64_t>> docked;
  for (const infer::Segment& s : p.segments)
    if (!s.encoder.empty()) docked.push_back(s.ids);
  ASSERT_EQ(docked.size(), 3u);
  EXPECT_EQ(docked[0], enc("the film was great"));
  EXPECT_EQ(docked[2], enc("good acting"));
  std::vector<int64_t> want = {tok().bos_id()};
  for (auto [in, out] : std::vector<std::pair<std::string, std::string>>{
           {"the film was great", "positive"}, {"awful plot", "negative"}}) {
    for (auto x : {enc("review: "), enc(in), enc(" sentiment:"), enc(out)})
      want.insert(want.end(), x.begin(), x.end());
    want.push_back(tok().eos_id());
  }
  for (auto x : {enc("review: "), enc("good acting"), enc(" sentiment:")})
    want.insert(want.end(), x.begin(), x.end());
  EXPECT_EQ(p.ids(), want);
  // Without an encoder (a GPT) the same template renders the inputs as tokens.
  const infer::Prompt g = infer::few_shot_prompt(tok(), t, {{"great", "positive"}}, "bad", "");
  EXPECT_FALSE(g.has_docked());
  EXPECT_TRUE(throws_with<ValueError>(
      [&] { infer::render_template(tok(), {"no field", true}, "x", "text"); }, "exactly once"));
}

// Greedy decoding from a docked prompt through the cache = argmax of MetaLM's training-path
// forward on the prompt plus what came out so far, token for token.
TEST_F(PromptTest, DockedGenerationMatchesTheTrainingPathForward) {
  auto m = metalm();
  auto& lm = dynamic_cast<models::MetaLM&>(*m);
  const infer::Prompt p = infer::parse_prompt(
      tok(), "review: {{the film was great}} and {{awful acting}} sentiment:", "text");
  const infer::DecoderPrompt dp = infer::prepare_prompt(lm, p, tok().bos_id());
  ASSERT_TRUE(dp.docked());
  EXPECT_EQ(dp.dock_features.size(0),
            static_cast<int64_t>(enc("the film was great").size() + enc("awful acting").size()));
  infer::GenerateOptions o;
  o.max_new_tokens = 12;
  const std::vector<int64_t> got = infer::generate(lm.decoder(), dp, o);
  ASSERT_EQ(got.size(), 12u);
  std::vector<int64_t> want;
  for (int i = 0; i < 12; ++i) want.push_back(argmax_last(full_logits(lm, p, want, tok().bos_id())));
  EXPECT_EQ(got, want);
  // The docked vectors matter: the plain prompt continues differently.
  EXPECT_NE(infer::generate(lm.decoder(), p.ids(), o), got);
}

TEST_F(PromptTest, DockedScoringAndBeamSearchAgreeWithTheTrainingPath) {
  auto m = metalm();
  auto& lm = dynamic_cast<models::MetaLM&>(*m);
  const infer::Prompt p = infer::parse_prompt(tok(), "{{the film was great}} sentiment:", "text");
  const infer::DecoderPrompt dp = infer::prepare_prompt(lm, p, tok().bos_id());
  const std::vector<std::vector<int64_t>> cands = {enc(" positive"), enc(" negative")};
  const auto scores = infer::score_candidates(lm.decoder(), dp, cands);
  for (size_t c = 0; c < cands.size(); ++c) {
    const Tensor lg = full_logits(lm, p, cands[c], tok().bos_id());
    const int64_t C = p.size(), V = lg.size(2);
    double want = 0;
    for (size_t j = 0; j < cands[c].size(); ++j) {
      const float* row = lg.data<float>() + (C + static_cast<int64_t>(j) - 1) * V;
      double z = 0, mx = *std::max_element(row, row + V);
      for (int64_t v = 0; v < V; ++v) z += std::exp(static_cast<double>(row[v]) - mx);
      want += row[cands[c][j]] - mx - std::log(z);
    }
    EXPECT_NEAR(scores[c].sum_logprob, want, 1e-4) << "candidate " << c;
  }
  // The best beam's summed log-probability is what scoring its tokens gives.
  infer::BeamOptions b;
  b.beam = 2;
  b.max_new_tokens = 6;
  b.eos_id = tok().eos_id();
  const auto hyps = infer::beam_search(lm.decoder(), dp, b);
  ASSERT_FALSE(hyps.empty());
  const auto rescored = infer::score_candidates(lm.decoder(), dp, {hyps[0].tokens});
  EXPECT_NEAR(hyps[0].sum_logprob, rescored[0].sum_logprob, 1e-4);
}

// Docked prompts in one batched beam search: each as it searches alone.
TEST_F(PromptTest, BatchedBeamSearchOfDockedPrompts) {
  auto m = metalm();
  auto& lm = dynamic_cast<models::MetaLM&>(*m);
  std::vector<infer::DecoderPrompt> prompts;
  for (const char* text : {"{{the film was great}} sentiment:", "review: {{awful plot and bad acting}} it was"})
    prompts.push_back(infer::prepare_prompt(lm, infer::parse_prompt(tok(), text, "text"), tok().bos_id()));
  infer::BeamOptions b;
  b.beam = 2;
  b.max_new_tokens = 6;
  b.eos_id = tok().eos_id();
  const auto got = infer::beam_search_batch(lm.decoder(), prompts, b);
  for (size_t p = 0; p < prompts.size(); ++p) {
    const auto alone = infer::beam_search(lm.decoder(), prompts[p], b);
    ASSERT_EQ(got[p].size(), alone.size());
    for (size_t h = 0; h < alone.size(); ++h) {
      EXPECT_EQ(got[p][h].tokens, alone[h].tokens) << p << " " << h;
      EXPECT_NEAR(got[p][h].sum_logprob, alone[h].sum_logprob, 1e-4) << p << " " << h;
    }
  }
}

// Two turns through one cache give the reply that generate() gives on the whole history, and
// nothing is read twice: each docked segment is encoded once, each token decoded once.
TEST_F(PromptTest, ChatReusesTheCacheAcrossTurns) {
  auto m = metalm();
  auto& lm = dynamic_cast<models::MetaLM&>(*m);
  infer::ChatSession chat(lm, tok().bos_id());
  infer::GenerateOptions o;
  o.max_new_tokens = 5;
  const infer::Prompt t1 = infer::parse_prompt(tok(), "review: {{the film was great}} answer:", "text");
  const std::vector<int64_t> r1 = chat.turn(t1, o);
  ASSERT_EQ(r1.size(), 5u);
  const infer::Prompt t2 = infer::parse_prompt(tok(), " and {{awful plot}} answer:", "text", false);
  const std::vector<int64_t> r2 = chat.turn(t2, o);

  infer::Prompt whole = t1;
  whole.plain(r1).append(t2);
  EXPECT_EQ(infer::generate(lm.decoder(), infer::prepare_prompt(lm, whole, tok().bos_id()), o), r2);
  std::vector<int64_t> history = whole.ids();
  history.insert(history.end(), r2.begin(), r2.end());
  EXPECT_EQ(chat.history(), history);
  const int64_t docked = static_cast<int64_t>(enc("the film was great").size() + enc("awful plot").size());
  EXPECT_EQ(chat.encoder_tokens_read(), docked + 2);  // each segment once, with its <s>
  EXPECT_EQ(chat.decoder_tokens_read(), static_cast<int64_t>(history.size()) - 1);  // last: pending

  // A turn that does not fit is refused and leaves the session as it was.
  infer::Prompt huge;
  huge.plain(std::vector<int64_t>(300, enc("good")[0]));
  EXPECT_TRUE(throws_with<ValueError>([&] { chat.turn(huge, o); }, "reset"));
  EXPECT_EQ(chat.history(), history);
  infer::GenerateOptions none = o;
  none.max_new_tokens = 0;
  EXPECT_TRUE(throws_with<ValueError>([&] { chat.turn(t2, none); }, "max_new_tokens"));
  EXPECT_EQ(chat.history(), history);
  chat.reset();
  EXPECT_TRUE(chat.history().empty());
  EXPECT_EQ(chat.turn(t1, o), r1);  // a fresh start replies as the first time
}

// An error inside leaves the model in the mode it was in (a validation hook mid-training).
TEST_F(PromptTest, ErrorsKeepTheModelsTrainingMode) {
  auto m = metalm();
  m->train();
  infer::Prompt p;
  p.docked({5, 6}, "nosuch");
  EXPECT_TRUE(throws_with<ValueError>([&] { infer::prepare_prompt(*m, p, tok().bos_id()); }, "nosuch"));
  EXPECT_TRUE(m->is_training());
}

TEST_F(PromptTest, ModelsWithoutEncodersRefuseDockedSegments) {
  auto gpt = test::tiny_gpt();
  EXPECT_EQ(infer::default_encoder(*gpt), "");
  const infer::Prompt p = infer::parse_prompt(tok(), "a {{b}}", "text");
  EXPECT_TRUE(throws_with<ValueError>([&] { infer::prepare_prompt(*gpt, p, 0); },
                                      "no encoder to dock"));
  EXPECT_NO_THROW(infer::task_decoder(*gpt));
}
