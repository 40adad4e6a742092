// Evaluation metrics, each computed the way its reference implementation computes it
// (reference-spec section 7): accuracy, SQuAD v1.1 exact match and F1, VQA accuracy, and the COCO
// caption metrics BLEU-1..4, ROUGE-L and CIDEr-D. Every score is a fraction (1 = perfect) except
// CIDEr-D, which keeps its reference's x10 scale; reports multiply by 100 where papers do.
// Text is UTF-8; case folding is ASCII only and bytes >= 0x80 count as letters (see squad_normalize).
#pragma once
#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace metalm::eval {

// Fraction of items whose prediction equals the gold string exactly. Sizes must match, non-empty.
double accuracy(const std::vector<std::string>& preds, const std::vector<std::string>& golds);

// ---- SQuAD v1.1 (evaluate-v1.1.py) ----
// Lowercase, delete ASCII punctuation (Python's string.punctuation), replace the words a, an and
// the by a space, collapse whitespace.
std::string squad_normalize(std::string_view text);
// 1 if the normalised prediction equals some normalised gold, else 0. `golds` non-empty.
double squad_exact_match(std::string_view pred, const std::vector<std::string>& golds);
// Token F1 over normalised words (multiset overlap), the best over `golds`; 0 when nothing
// overlaps (also when both are empty, as in v1.1).
double squad_f1(std::string_view pred, const std::vector<std::string>& golds);

// ---- VQA accuracy (GT-Vision-Lab vqaEval.py) ----
// processPunctuation: each of ; / [ ] " { } ( ) = + \ _ - > < @ ` , ? ! is deleted when the text
// has it next to a space (or has a digit,digit anywhere), else replaced by a space; then up to 32
// periods not followed by a digit are deleted (the reference passes re.UNICODE as sub's count).
std::string vqa_process_punctuation(std::string_view text);
// processDigitArticle: lowercase, number words none/zero..ten to digits, drop a/an/the, restore
// apostrophes of contractions ("dont" -> "don't"), single spaces.
std::string vqa_process_digit_article(std::string_view text);
// What the prediction is compared as: tabs and newlines to spaces, trimmed, then both steps above.
std::string vqa_normalize_prediction(std::string_view pred);
// Mean over the human answers a_i of min(1, #{j != i : a_j == prediction} / 3). The answers are
// trimmed, and get processPunctuation only when they are not all the same (the reference's rule).
double vqa_accuracy(std::string_view pred, const std::vector<std::string>& answers);

// ---- COCO caption metrics (pycocoevalcap) ----
// The metrics below take captions already tokenised into words separated by whitespace, as
// pycocoevalcap does after its Java PTBTokenizer. caption_tokenize approximates that tokenizer for
// English: ASCII lowercase, clitics split ("don't" -> "do n't", "cat's" -> "cat 's"), punctuation
// at word edges split off, and the punctuation tokens pycocoevalcap removes (. , ? ! : ; - -- ...
// quotes, brackets) dropped. Words with inner punctuation ("black-and-white", "3.5") stay whole.
std::string caption_tokenize(std::string_view text);

// BLEU-1..4 over the corpus (bleu_scorer.py, option "closest"): clipped n-gram counts summed over
// items, the reference length closest to each hypothesis (ties to the shorter), the brevity
// penalty on the summed lengths. refs[i] are item i's references (at least one).
std::array<double, 4> bleu(const std::vector<std::string>& hyps,
                           const std::vector<std::vector<std::string>>& refs);
// ROUGE-L per item (rouge.py): LCS over words; precision and recall each maximised over the
// references, then F with beta = 1.2. Hypotheses must be non-empty.
std::vector<double> rouge_l(const std::vector<std::string>& hyps,
                            const std::vector<std::vector<std::string>>& refs);
// CIDEr-D per item (cider_scorer.py): tf-idf vectors of 1..4-grams with document frequencies over
// this whole set of items, clipped cosine similarity with a Gaussian length penalty (sigma 6, on
// bigram counts), averaged over n, summed over references and divided by their number, x10.
std::vector<double> cider_d(const std::vector<std::string>& hyps,
                            const std::vector<std::vector<std::string>>& refs);

// The mean of per-item scores (0 for none).
double mean(const std::vector<double>& scores);

}  // namespace metalm::eval
