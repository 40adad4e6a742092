// The metrics of eval/metrics.h against tests/reference/ref_metrics.py, an independent Python
// implementation written from the same definitions (reference-spec section 7), on its generated
// and hand-picked cases: SQuAD EM/F1, VQA accuracy (normalised prediction and score), and
// BLEU-1..4, ROUGE-L and CIDEr-D per caption set; BLEU also against NLTK's corpus_bleu where the
// reference found NLTK installed. Scores agree to 1e-12 (both sides sum f64 in different orders).
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/reference_file.h"
#include "metalm/eval/metrics.h"

using namespace metalm;
using nlohmann::json;

namespace {

class MetricsRef : public test::ReferenceTest<::testing::Test> {
 protected:
  MetricsRef() : ReferenceTest("metrics") {}
  json cases() const { return json::parse(ref().meta("cases")); }
};

constexpr double kTol = 1e-12;

}  // namespace

TEST_F(MetricsRef, SquadExactMatchAndF1) {
  const json c = cases();
  double em = 0, f1 = 0;
  ASSERT_GT(c["squad"].size(), 20u);
  for (const json& item : c["squad"]) {
    const auto pred = item["pred"].get<std::string>();
    const auto golds = item["golds"].get<std::vector<std::string>>();
    SCOPED_TRACE("pred '" + pred + "'");
    EXPECT_EQ(eval::squad_normalize(pred), item["norm_pred"].get<std::string>());
    const double e = eval::squad_exact_match(pred, golds), f = eval::squad_f1(pred, golds);
    EXPECT_EQ(e, item["em"].get<double>());
    EXPECT_NEAR(f, item["f1"].get<double>(), kTol);
    em += e;
    f1 += f;
  }
  const double n = static_cast<double>(c["squad"].size());
  EXPECT_NEAR(100 * em / n, c["squad_corpus"]["em"].get<double>(), 1e-9);
  EXPECT_NEAR(100 * f1 / n, c["squad_corpus"]["f1"].get<double>(), 1e-9);
}

TEST_F(MetricsRef, VqaAccuracy) {
  const json c = cases();
  ASSERT_GT(c["vqa"].size(), 20u);
  double total = 0;
  for (const json& item : c["vqa"]) {
    const auto pred = item["pred"].get<std::string>();
    SCOPED_TRACE("pred '" + pred + "'");
    EXPECT_EQ(eval::vqa_normalize_prediction(pred), item["norm_pred"].get<std::string>());
    const double acc = eval::vqa_accuracy(pred, item["answers"].get<std::vector<std::string>>());
    EXPECT_NEAR(acc, item["acc"].get<double>(), kTol);
    total += acc;
  }
  EXPECT_NEAR(100 * total / static_cast<double>(c["vqa"].size()), c["vqa_corpus"].get<double>(),
              1e-9);
}

TEST_F(MetricsRef, CaptionMetricsPerSet) {
  const json c = cases();
  ASSERT_GE(c["caption_sets"].size(), 4u);
  int nltk_sets = 0;
  for (const json& set : c["caption_sets"]) {
    SCOPED_TRACE("caption set " + set["name"].get<std::string>());
    const auto hyps = set["hyps"].get<std::vector<std::string>>();
    const auto refs = set["refs"].get<std::vector<std::vector<std::string>>>();
    const auto b = eval::bleu(hyps, refs);
    const auto want_b = set["bleu"].get<std::vector<double>>();
    ASSERT_EQ(want_b.size(), 4u);
    for (int n = 0; n < 4; ++n) EXPECT_NEAR(b[n], want_b[n], kTol) << "BLEU-" << n + 1;
    if (!set["bleu_nltk"].is_null()) {
      // NLTK has no 1e-15 / 1e-9 smoothing terms: equal to ~1e-9 relative.
      const auto nltk = set["bleu_nltk"].get<std::vector<double>>();
      for (int n = 0; n < 4; ++n) EXPECT_NEAR(b[n], nltk[n], 1e-8) << "NLTK BLEU-" << n + 1;
      ++nltk_sets;
    }
    const auto r = eval::rouge_l(hyps, refs);
    const auto want_r = set["rouge_l"].get<std::vector<double>>();
    ASSERT_EQ(r.size(), want_r.size());
    for (size_t i = 0; i < r.size(); ++i) EXPECT_NEAR(r[i], want_r[i], kTol) << "ROUGE-L " << i;
    EXPECT_NEAR(eval::mean(r), set["rouge_l_mean"].get<double>(), kTol);
    const auto d = eval::cider_d(hyps, refs);
    const auto want_d = set["cider_d"].get<std::vector<double>>();
    ASSERT_EQ(d.size(), want_d.size());
    for (size_t i = 0; i < d.size(); ++i) EXPECT_NEAR(d[i], want_d[i], 1e-11) << "CIDEr-D " << i;
    EXPECT_NEAR(eval::mean(d), set["cider_d_mean"].get<double>(), 1e-11);
  }
  if (nltk_sets == 0) std::printf("note: no NLTK comparison (NLTK not installed)\n");
}
