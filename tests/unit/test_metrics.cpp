// The metrics of eval/metrics.h on cases worked by hand and on the worked examples their authors
// publish (Papineni et al. 2002 for BLEU, Lin 2004 for ROUGE-L, the VQA paper's "3 humans"
// rule). tests/reference/test_ref_metrics.cpp compares them with an independent Python
// implementation on many generated cases.
#include <gtest/gtest.h>

#include <cmath>

#include "metalm/core/error.h"
#include "metalm/eval/metrics.h"

using namespace metalm;
using namespace metalm::eval;

TEST(Accuracy, CountsExactMatches) {
  EXPECT_DOUBLE_EQ(accuracy({"a", "b", "c", "d"}, {"a", "x", "c", "D"}), 0.5);
  EXPECT_THROW(accuracy({"a"}, {"a", "b"}), ValueError);
  EXPECT_THROW(accuracy({}, {}), ValueError);
}

TEST(Squad, NormalizeDropsCasePunctuationArticlesAndSpaces) {
  EXPECT_EQ(squad_normalize("  The Cat sat,\ton a  mat!"), "cat sat on mat");
  EXPECT_EQ(squad_normalize("theory of another anthem"), "theory of another anthem");
  EXPECT_EQ(squad_normalize("the-end"), "theend");  // punctuation goes first, then articles
  EXPECT_EQ(squad_normalize("(a) an, the."), "");
}

TEST(Squad, ExactMatchAndF1TakeTheBestGold) {
  EXPECT_EQ(squad_exact_match("The Cat.", {"dog", "cat"}), 1.0);
  EXPECT_EQ(squad_exact_match("cats", {"cat"}), 0.0);
  // Multiset overlap: "y" twice in common, P = 2/4, R = 2/3.
  const double f1 = 2 * 0.5 * (2.0 / 3) / (0.5 + 2.0 / 3);
  EXPECT_NEAR(squad_f1("x y y y", {"y y z"}), f1, 1e-15);
  EXPECT_NEAR(squad_f1("x y y y", {"q", "y y z", "r"}), f1, 1e-15);
  EXPECT_EQ(squad_f1("", {""}), 0.0);  // v1.1: no common token, no credit
  EXPECT_THROW(squad_f1("x", {}), ValueError);
}

TEST(Vqa, ThreeMatchingHumansGiveFullCredit) {
  auto answers = [](int matching) {
    std::vector<std::string> a(10, "blue");
    for (int i = 0; i < matching; ++i) a[i] = "red";
    return a;
  };
  EXPECT_DOUBLE_EQ(vqa_accuracy("red", answers(4)), 1.0);
  // 3 of 10: the three leave-one-out subsets without a match give 2/3 each.
  EXPECT_NEAR(vqa_accuracy("red", answers(3)), (3 * 2.0 / 3 + 7) / 10, 1e-15);
  EXPECT_NEAR(vqa_accuracy("red", answers(2)), (2 * 1.0 / 3 + 8 * 2.0 / 3) / 10, 1e-15);
  EXPECT_NEAR(vqa_accuracy("red", answers(1)), 9 * (1.0 / 3) / 10, 1e-15);
  EXPECT_EQ(vqa_accuracy("green", answers(3)), 0.0);
}

TEST(Vqa, PredictionNormalisationFollowsVqaEval) {
  EXPECT_EQ(vqa_normalize_prediction(" Two\tdogs\n"), "2 dogs");
  EXPECT_EQ(vqa_normalize_prediction("None"), "0");
  EXPECT_EQ(vqa_normalize_prediction("the dog"), "dog");
  EXPECT_EQ(vqa_normalize_prediction("dont know"), "don't know");
  EXPECT_EQ(vqa_normalize_prediction("1,000"), "1000");         // digit,digit: all deleted
  EXPECT_EQ(vqa_normalize_prediction("yes, no,maybe"), "yes nomaybe");  // ", " seen: deleted
  EXPECT_EQ(vqa_normalize_prediction("no,maybe"), "no maybe");           // otherwise a space
  EXPECT_EQ(vqa_normalize_prediction("3.5 m."), "3.5 m");       // period before a digit stays
  EXPECT_EQ(vqa_normalize_prediction("it's: x/y"), "it's: x y");  // no ':' or '\'' in the list
  EXPECT_EQ(vqa_process_punctuation("x" + std::string(40, '.')), "x" + std::string(8, '.'));
}

TEST(Vqa, HumanAnswersGetPunctuationOnlyWhenTheyDiffer) {
  // Not all the same: punctuation processed, but never lowercased or mapped to digits.
  std::vector<std::string> a = {"yes.", "yes", "yes", "Yes", "two", "2", "2", "2", "no", "no"};
  EXPECT_NEAR(vqa_accuracy("yes", a), (3 * 2.0 / 3 + 7) / 10, 1e-15);
  EXPECT_NEAR(vqa_accuracy("two", a), (3 * 2.0 / 3 + 7) / 10, 1e-15);  // "two" -> "2"
  // The replacing space stays: "yes!" becomes "yes " and never equals a normalised prediction.
  EXPECT_EQ(vqa_process_punctuation("yes!"), "yes ");
  // All the same: left as they are, so "yes." never matches the normalised "yes".
  EXPECT_EQ(vqa_accuracy("yes.", std::vector<std::string>(10, "yes.")), 0.0);
  EXPECT_EQ(vqa_accuracy("yes", std::vector<std::string>(10, " yes\n")), 1.0);  // but trimmed
  EXPECT_THROW(vqa_accuracy("x", {}), ValueError);
}

TEST(CaptionTokenize, SplitsCliticsAndDropsPunctuation) {
  EXPECT_EQ(caption_tokenize("A man's dog, running!"), "a man 's dog running");
  EXPECT_EQ(caption_tokenize("Don't stop... - (really)"), "do n't stop really");
  EXPECT_EQ(caption_tokenize("a black-and-white cat, 3.5 m tall."), "a black-and-white cat 3.5 m tall");
  EXPECT_EQ(caption_tokenize("\"Quoted\" `text'"), "quoted text");
}

TEST(Bleu, PapineniModifiedUnigramPrecision) {
  // Papineni et al. (2002), section 2.1: 2 of the 7 "the" are credited; the closest reference
  // length is 7 (no brevity penalty); there is no matching bigram.
  const auto b = bleu({"the the the the the the the"},
                      {{"the cat is on the mat", "there is a cat on the mat"}});
  EXPECT_NEAR(b[0], 2.0 / 7, 1e-9);
  EXPECT_LT(b[1], 1e-6);
}

TEST(Bleu, ExactCopyScoresOneAndShortHypothesesArePenalised) {
  const auto same = bleu({"a b c d e"}, {{"a b c d e"}});
  for (double s : same) EXPECT_NEAR(s, 1.0, 1e-9);
  // Every n-gram right but 3 words against 6: brevity penalty exp(1 - 6/3).
  const auto short_hyp = bleu({"a b c"}, {{"a b c d e f"}});
  EXPECT_NEAR(short_hyp[0], std::exp(1.0 - 2.0), 1e-9);
  EXPECT_NEAR(short_hyp[2], std::exp(1.0 - 2.0), 1e-9);
  // Closest length ties (4 and 6 around 5) go to the shorter: no penalty.
  const auto tie = bleu({"a b c d e"}, {{"a b c d", "a b c d e f"}});
  EXPECT_NEAR(tie[0], 1.0, 1e-9);
  EXPECT_THROW(bleu({"a"}, {{}}), ValueError);
  EXPECT_THROW(bleu({"a"}, {}), ValueError);
}

TEST(RougeL, LinsPoliceExample) {
  // Lin (2004), section 3.1: S2 shares "police the gunman" with S1, S3 only "the gunman".
  const auto s = rouge_l({"police kill the gunman", "the gunman kill police"},
                         {{"police killed the gunman"}, {"police killed the gunman"}});
  EXPECT_NEAR(s[0], 0.75, 1e-15);
  EXPECT_NEAR(s[1], 0.5, 1e-15);
  // Precision and recall are maximised over the references separately: P = 2/2 from the long
  // reference, R = 1/1 from the short one (the best single reference has F < 1).
  const auto sep = rouge_l({"a b"}, {{"a b c d", "a"}});
  EXPECT_NEAR(sep[0], 1.0, 1e-15);
  EXPECT_THROW(rouge_l({""}, {{"a"}}), ValueError);
}

TEST(CiderD, IdenticalCaptionsWithDisjointVocabularies) {
  // Every n-gram appears in one item's references of two: idf ln 2; hypothesis = reference gives
  // cosine 1 for n = 1..3 and 0 for n = 4 (no 4-grams): (3/4) x 10.
  const auto s = cider_d({"a b c", "d e f"}, {{"a b c"}, {"d e f"}});
  EXPECT_NEAR(s[0], 7.5, 1e-12);
  EXPECT_NEAR(s[1], 7.5, 1e-12);
  // Words every item's references hold carry no weight: idf ln 2 - ln 2 = 0.
  const auto common = cider_d({"x", "x"}, {{"x"}, {"x"}});
  EXPECT_EQ(common[0], 0.0);
  // The clipping: a hypothesis repeating a reference word gets no more than the reference has.
  const auto rep = cider_d({"a a", "d e f"}, {{"a"}, {"d e f"}});
  EXPECT_NEAR(rep[0], 10.0 / 4 * 0.5 * std::exp(-1.0 / 72), 1e-12);
  EXPECT_EQ(mean({}), 0.0);
  EXPECT_NEAR(mean(s), 7.5, 1e-12);
}
