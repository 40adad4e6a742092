// Task files (data/tasks.h) and the task evaluator (eval/task_eval.h): the reader's checks, the
// bootstrap interval, and evaluate_task's wiring on a tiny random MetaLM and GPT: choices ranked
// by score_candidates on the k-shot prompt, answers generated from the same prompt as
// infer::generate gives, metrics aggregated from the predictions, prompts shortened to fit.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "common/test_util.h"
#include "common/tiny_task_model.h"
#include "metalm/data/tasks.h"
#include "metalm/eval/metrics.h"
#include "metalm/eval/task_eval.h"
#include "metalm/infer/generate.h"
#include "metalm/infer/score.h"

using namespace metalm;
using metalm::test::throws_with;
namespace fs = std::filesystem;

namespace {

std::string write_tmp(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / ("metalm_task_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(p) << text;
  return p.string();
}

std::vector<data::TaskExample> review_task(bool choices) {
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"the film was great", "positive"}, {"awful plot", "negative"},
      {"good acting and a good movie", "positive"}, {"bad film", "negative"},
      {"the plot was awful", "negative"}, {"great movie", "positive"}};
  std::vector<data::TaskExample> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    data::TaskExample e;
    e.task = "reviews";
    e.input = rows[i].first;
    e.output = rows[i].second;
    e.answers = {e.output};
    if (choices) e.choices = {"positive", "negative"};
    e.line = static_cast<int64_t>(i) + 1;
    out.push_back(e);
  }
  return out;
}

}  // namespace

TEST(TaskFile, ReadsExamplesAndChecksThem) {
  const std::string p = write_tmp("ok.jsonl",
      "{\"input\": \"a\", \"output\": \"yes\", \"choices\": [\"yes\", \"no\"]}\n\n"
      "{\"input\": \"b\", \"output\": \"x\", \"answers\": [\"y\", \"x\"], \"task\": \"qa\"}\n");
  const auto ex = data::read_task_file(p);
  ASSERT_EQ(ex.size(), 2u);
  EXPECT_EQ(ex[0].task, fs::path(p).stem().string());  // the file's stem by default
  EXPECT_EQ(ex[0].answers, std::vector<std::string>{"yes"});
  EXPECT_EQ(ex[1].task, "qa");
  EXPECT_EQ(ex[1].answers, (std::vector<std::string>{"x", "y"}));  // output first, once
  EXPECT_EQ(ex[1].line, 3);
  // A split file is named after its folder.
  const fs::path split = fs::temp_directory_path() / ("metalm_task_" + std::to_string(::getpid())) / "spam";
  fs::create_directories(split);
  std::ofstream(split / "test.jsonl") << "{\"input\": \"a\", \"output\": \"b\"}\n";
  EXPECT_EQ(data::read_task_file((split / "test.jsonl").string())[0].task, "spam");
  fs::remove_all(split.parent_path());
  auto fails = [](const std::string& name, const std::string& text, const std::vector<std::string>& parts) {
    const std::string f = write_tmp(name, text);
    EXPECT_TRUE(throws_with<ValueError>([&] { data::read_task_file(f); }, parts)) << text;
    fs::remove(f);
  };
  fails("missing.jsonl", "{\"input\": \"a\"}\n", {"line 1", "output", "missing"});
  fails("notchoice.jsonl", "{\"input\": \"a\", \"output\": \"c\", \"choices\": [\"a\", \"b\"]}\n",
        {"not one of the choices"});
  fails("typo.jsonl", "{\"input\": \"a\", \"output\": \"b\", \"choises\": []}\n", {"choises", "choices"});
  fails("emptyin.jsonl", "{\"input\": \"\", \"output\": \"b\"}\n", {"input", "empty"});
  fails("badlist.jsonl", "{\"input\": \"a\", \"output\": \"b\", \"answers\": [1]}\n", {"answers", "string"});
  fails("none.jsonl", "\n", {"no examples"});
  fs::remove(p);
}

TEST(Bootstrap, IntervalCoversTheMeanAtTheNormalWidth) {
  std::vector<double> v(400);
  for (size_t i = 0; i < v.size(); ++i) v[i] = i % 2 ? 1.0 : 0.0;
  auto mean_of = [&](const std::vector<int64_t>& idx) {
    double s = 0;
    for (int64_t i : idx) s += v[static_cast<size_t>(i)];
    return s / static_cast<double>(idx.size());
  };
  const auto [lo, hi] = eval::bootstrap_interval(400, 2000, 7, mean_of);
  const double half = 1.96 * std::sqrt(0.25 / 400);  // the normal approximation: 0.049
  EXPECT_NEAR(lo, 0.5 - half, 0.01);
  EXPECT_NEAR(hi, 0.5 + half, 0.01);
  EXPECT_EQ(eval::bootstrap_interval(400, 2000, 7, mean_of), std::make_pair(lo, hi));  // seeded
  const auto same = eval::bootstrap_interval(10, 100, 1, [](const std::vector<int64_t>&) { return 0.3; });
  EXPECT_EQ(same.first, 0.3);
  EXPECT_EQ(same.second, 0.3);
}

// Each choice prediction is the best-scored candidate of that example's k-shot prompt.
TEST(TaskEval, ChoicesAreRankedByTheirScoreOnTheFewShotPrompt) {
  const auto& tok = test::tiny_tokenizer();
  auto m = test::tiny_metalm();
  const auto ex = review_task(true);
  eval::TaskEvalOptions o;
  o.tmpl.text = "review: {input} sentiment:";
  o.shots = 2;
  o.bootstrap = 200;
  const eval::TaskEvalResult r = eval::evaluate_task(*m, tok, ex, ex, o);
  ASSERT_EQ(r.predictions.size(), ex.size());
  ASSERT_EQ(r.metrics.size(), 1u);
  EXPECT_EQ(r.metrics[0].name, "accuracy");
  int right = 0;
  for (size_t i = 0; i < ex.size(); ++i) right += r.predictions[i] == ex[i].output;
  EXPECT_NEAR(r.metrics[0].value, 100.0 * right / static_cast<double>(ex.size()), 1e-9);
  EXPECT_LE(r.metrics[0].low, r.metrics[0].value);
  EXPECT_GE(r.metrics[0].high, r.metrics[0].value);
  EXPECT_EQ(r.shortened, 0);
  // With sums instead of per-token means the ranking may change, never the candidates.
  o.length_normalized = false;
  for (const std::string& p : eval::evaluate_task(*m, tok, ex, ex, o).predictions)
    EXPECT_TRUE(p == "positive" || p == "negative");
  // 0-shot: recompute the first example's choice by hand.
  o.shots = 0;
  o.length_normalized = true;
  const auto r0 = eval::evaluate_task(*m, tok, {ex[0]}, {}, o);
  const infer::Prompt p = infer::few_shot_prompt(tok, o.tmpl, {}, ex[0].input, "text");
  const auto s = infer::score_candidates(
      infer::task_decoder(*m), infer::prepare_prompt(*m, p, tok.bos_id()),
      {infer::encode_lines(tok, "positive"), infer::encode_lines(tok, "negative")});
  EXPECT_EQ(r0.predictions[0], s[0].mean_logprob >= s[1].mean_logprob ? "positive" : "negative");
}

// A generated answer is what infer::generate gives on the rendered prompt, up to </s>.
TEST(TaskEval, GeneratedAnswersAndTheirMetrics) {
  const auto& tok = test::tiny_tokenizer();
  for (const bool metalm : {true, false}) {
    auto m = metalm ? test::tiny_metalm() : test::tiny_gpt();
    const auto ex = review_task(false);
    eval::TaskEvalOptions o;
    o.tmpl.text = "review: {input} sentiment:";
    o.beam = 0;
    o.max_new_tokens = 6;
    o.metrics = {"em", "f1", "accuracy"};
    const eval::TaskEvalResult r = eval::evaluate_task(*m, tok, ex, {}, o);
    const std::string enc = metalm ? "text" : "";
    const infer::Prompt p = infer::few_shot_prompt(tok, o.tmpl, {}, ex[1].input, enc);
    EXPECT_EQ(p.has_docked(), metalm);
    // Single-line answers: generation stops at </s>, </doc> or </line>; the answer is the text
    // before it.
    infer::GenerateOptions g;
    g.max_new_tokens = 6;
    g.stop_ids = {tok.eos_id(), tok.spec().doc_end_id, tok.spec().line_end_id};
    for (int64_t id : {tok.spec().bos_id, tok.spec().pad_id, tok.spec().unk_id, tok.spec().mask_id,
                       tok.spec().image_id, tok.spec().image_end_id})
      g.banned_ids.push_back(id);
    std::vector<int64_t> out =
        infer::generate(infer::task_decoder(*m), infer::prepare_prompt(*m, p, tok.bos_id()), g);
    if (!out.empty() && (out.back() == tok.eos_id() || out.back() == tok.spec().doc_end_id ||
                         out.back() == tok.spec().line_end_id))
      out.pop_back();
    std::string want = tok.decode(std::vector<int32_t>(out.begin(), out.end()));
    want.erase(0, want.find_first_not_of(" \n"));
    EXPECT_EQ(r.predictions[1], want.substr(0, want.find_last_not_of(" \n") + 1));
    double em = 0, f1 = 0;
    for (size_t i = 0; i < ex.size(); ++i) {
      em += eval::squad_exact_match(r.predictions[i], ex[i].answers);
      f1 += eval::squad_f1(r.predictions[i], ex[i].answers);
    }
    EXPECT_NEAR(r.metrics[0].value, 100 * em / 6, 1e-9);
    EXPECT_NEAR(r.metrics[1].value, 100 * f1 / 6, 1e-9);
    EXPECT_EQ(r.metrics[2].name, "accuracy");
  }
}

TEST(TaskEval, PromptsAreShortenedToFitAndErrorsAreClear) {
  const auto& tok = test::tiny_tokenizer();
  auto m = test::tiny_metalm();
  auto ex = review_task(true);
  std::string long_input;
  for (int i = 0; i < 30; ++i) long_input += "the film was great and ";
  ex[0].input = long_input;  // over the encoder's 40 positions
  eval::TaskEvalOptions o;
  o.shots = 4;
  o.bootstrap = 0;
  const eval::TaskEvalResult r = eval::evaluate_task(*m, tok, ex, ex, o);
  EXPECT_GT(r.shortened, 0);
  EXPECT_FALSE(r.metrics[0].has_interval);
  // The pool never gives an example itself: one example, one-shot, is impossible.
  EXPECT_TRUE(throws_with<ValueError>(
      [&] { o.shots = 1; eval::evaluate_task(*m, tok, {ex[1]}, {ex[1]}, o); }, "the pool has 0"));
  auto gen = review_task(false);
  o.shots = 0;
  o.max_new_tokens = 300;  // more than the decoder's 256 positions
  EXPECT_TRUE(throws_with<ValueError>([&] { eval::evaluate_task(*m, tok, gen, {}, o); },
                                      "do not fit"));
  o.max_new_tokens = 4;
  o.metrics = {"bleu5"};
  EXPECT_TRUE(throws_with<ValueError>([&] { eval::evaluate_task(*m, tok, gen, {}, o); },
                                      "unknown metric"));
}
