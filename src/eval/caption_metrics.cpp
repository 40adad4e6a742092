// BLEU-1..4, ROUGE-L and CIDEr-D as pycocoevalcap computes them (reference-spec section 7), on
// captions tokenised into whitespace-separated words, and the tokenizer that approximates its
// PTBTokenizer. N-grams are keyed by their words joined with single spaces (words hold none).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "metalm/core/error.h"
#include "metalm/eval/metrics.h"
#include "text_util.h"

namespace metalm::eval {

namespace {

constexpr int kMaxN = 4;
using NgramCounts = std::unordered_map<std::string, int64_t>;

// Counts of every n-gram of `words` with n in [1, kMaxN], each n in its own map.
std::array<NgramCounts, kMaxN> count_ngrams(const std::vector<std::string>& words) {
  std::array<NgramCounts, kMaxN> counts;
  for (size_t i = 0; i < words.size(); ++i) {
    std::string gram;
    for (size_t n = 0; n < static_cast<size_t>(kMaxN) && i + n < words.size(); ++n) {
      if (n) gram += ' ';
      gram += words[i + n];
      ++counts[n][gram];
    }
  }
  return counts;
}

void check_items(const char* op, const std::vector<std::string>& hyps,
                 const std::vector<std::vector<std::string>>& refs) {
  MLM_CHECK(hyps.size() == refs.size(), ValueError, "[", op, "] ", hyps.size(),
            " hypotheses for ", refs.size(), " reference sets");
  MLM_CHECK(!hyps.empty(), ValueError, "[", op, "] no items");
  for (size_t i = 0; i < refs.size(); ++i) {
    MLM_CHECK(!refs[i].empty(), ValueError, "[", op, "] item ", i, " has no references");
  }
}

// Length of the longest common subsequence of two word sequences.
size_t lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// A caption's CIDEr-D vectors: per n, tf-idf weights, their norm, and the bigram count used as
// its length for every n.
struct TfIdf {
  std::array<std::unordered_map<std::string, double>, kMaxN> weights;
  std::array<double, kMaxN> norm{};
  double length = 0;
};

TfIdf tf_idf(const std::array<NgramCounts, kMaxN>& counts,
             const std::unordered_map<std::string, int64_t>& doc_freq, double log_items) {
  TfIdf v;
  for (int n = 0; n < kMaxN; ++n) {
    for (const auto& [gram, tf] : counts[n]) {
      auto it = doc_freq.find(gram);
      const double df = it == doc_freq.end() ? 0.0 : static_cast<double>(it->second);
      const double w = static_cast<double>(tf) * (log_items - std::log(std::max(1.0, df)));
      v.weights[n][gram] = w;
      v.norm[n] += w * w;
      if (n == 1) v.length += static_cast<double>(tf);
    }
    v.norm[n] = std::sqrt(v.norm[n]);
  }
  return v;
}

// The mean over n of the clipped, length-penalised cosine similarity of a hypothesis and one
// reference.
double cider_similarity(const TfIdf& h, const TfIdf& r) {
  constexpr double kSigma = 6.0;
  const double delta = h.length - r.length;
  double total = 0;
  for (int n = 0; n < kMaxN; ++n) {
    double val = 0;
    for (const auto& [gram, wh] : h.weights[n]) {
      auto it = r.weights[n].find(gram);
      if (it != r.weights[n].end()) val += std::min(wh, it->second) * it->second;
    }
    if (h.norm[n] != 0 && r.norm[n] != 0) val /= h.norm[n] * r.norm[n];
    total += val * std::exp(-(delta * delta) / (2 * kSigma * kSigma));
  }
  return total / kMaxN;
}

bool is_edge_punct(char c) {
  return std::string_view(".,;:!?\"'`()[]{}").find(c) != std::string_view::npos;
}

// The PTB tokens pycocoevalcap deletes before scoring (brackets and quotes come out of the
// tokenizer as -LRB-, `` and the like; here they are never produced as words).
bool is_removed_token(std::string_view t) {
  return t.empty() || t == "-" || t == "--" ||
         std::all_of(t.begin(), t.end(), [](char c) { return is_edge_punct(c); });
}

// Splits an English clitic off a word ("don't" -> "do n't", "cat's" -> "cat 's").
void push_word(std::string_view w, std::vector<std::string>& out) {
  if (w.size() > 3 && w.substr(w.size() - 3) == "n't") {
    out.emplace_back(w.substr(0, w.size() - 3));
    out.emplace_back("n't");
    return;
  }
  for (std::string_view clitic : {"'s", "'re", "'ve", "'ll", "'d", "'m"}) {
    if (w.size() > clitic.size() && w.substr(w.size() - clitic.size()) == clitic) {
      out.emplace_back(w.substr(0, w.size() - clitic.size()));
      out.emplace_back(clitic);
      return;
    }
  }
  out.emplace_back(w);
}

}  // namespace

std::string caption_tokenize(std::string_view text) {
  std::string lower;
  for (char c : text) lower += ascii_lower(c);
  std::vector<std::string> words;
  for (const std::string& chunk : split_whitespace(lower)) {
    std::string_view w = chunk;
    while (!w.empty() && is_edge_punct(w.front())) w.remove_prefix(1);
    while (!w.empty() && is_edge_punct(w.back())) w.remove_suffix(1);
    if (is_removed_token(w)) continue;
    push_word(w, words);
  }
  return join(words, ' ');
}

std::array<double, 4> bleu(const std::vector<std::string>& hyps,
                           const std::vector<std::vector<std::string>>& refs) {
  check_items("bleu", hyps, refs);
  std::array<double, kMaxN> correct{}, guess{};
  double test_len = 0, ref_len = 0;
  for (size_t i = 0; i < hyps.size(); ++i) {
    const std::vector<std::string> words = split_whitespace(hyps[i]);
    const auto len = static_cast<int64_t>(words.size());
    std::array<NgramCounts, kMaxN> max_ref;
    int64_t closest = std::numeric_limits<int64_t>::max();
    for (const std::string& ref : refs[i]) {
      const std::vector<std::string> rw = split_whitespace(ref);
      const auto rlen = static_cast<int64_t>(rw.size());
      const int64_t d = std::abs(rlen - len), best = std::abs(closest - len);
      if (d < best || (d == best && rlen < closest)) closest = rlen;
      const auto counts = count_ngrams(rw);
      for (int n = 0; n < kMaxN; ++n) {
        for (const auto& [gram, c] : counts[n]) max_ref[n][gram] = std::max(max_ref[n][gram], c);
      }
    }
    const auto counts = count_ngrams(words);
    for (int n = 0; n < kMaxN; ++n) {
      guess[n] += static_cast<double>(std::max<int64_t>(0, len - n));
      for (const auto& [gram, c] : counts[n]) {
        auto it = max_ref[n].find(gram);
        if (it != max_ref[n].end()) correct[n] += static_cast<double>(std::min(c, it->second));
      }
    }
    test_len += static_cast<double>(len);
    ref_len += static_cast<double>(closest);
  }
  constexpr double kTiny = 1e-15, kSmall = 1e-9;  // bleu_scorer.py's smoothing constants
  std::array<double, 4> scores{};
  double product = 1;
  for (int n = 0; n < kMaxN; ++n) {
    product *= (correct[n] + kTiny) / (guess[n] + kSmall);
    scores[n] = std::pow(product, 1.0 / (n + 1));
  }
  const double ratio = (test_len + kTiny) / (ref_len + kSmall);
  if (ratio < 1) {
    for (double& s : scores) s *= std::exp(1 - 1 / ratio);
  }
  return scores;
}

std::vector<double> rouge_l(const std::vector<std::string>& hyps,
                            const std::vector<std::vector<std::string>>& refs) {
  check_items("rouge_l", hyps, refs);
  constexpr double kBeta = 1.2;
  std::vector<double> scores;
  for (size_t i = 0; i < hyps.size(); ++i) {
    const std::vector<std::string> c = split_whitespace(hyps[i]);
    MLM_CHECK(!c.empty(), ValueError, "[rouge_l] hypothesis ", i, " is empty");
    double p = 0, r = 0;
    for (const std::string& ref : refs[i]) {
      const std::vector<std::string> rw = split_whitespace(ref);
      const auto lcs = static_cast<double>(lcs_length(c, rw));
      p = std::max(p, lcs / static_cast<double>(c.size()));
      if (!rw.empty()) r = std::max(r, lcs / static_cast<double>(rw.size()));
    }
    scores.push_back(p != 0 && r != 0 ? (1 + kBeta * kBeta) * p * r / (r + kBeta * kBeta * p) : 0);
  }
  return scores;
}

std::vector<double> cider_d(const std::vector<std::string>& hyps,
                            const std::vector<std::vector<std::string>>& refs) {
  check_items("cider_d", hyps, refs);
  std::vector<std::array<NgramCounts, kMaxN>> hyp_counts;
  std::vector<std::vector<std::array<NgramCounts, kMaxN>>> ref_counts(refs.size());
  std::unordered_map<std::string, int64_t> doc_freq;  // items whose references hold the n-gram
  for (size_t i = 0; i < hyps.size(); ++i) {
    hyp_counts.push_back(count_ngrams(split_whitespace(hyps[i])));
    std::unordered_set<std::string> seen;
    for (const std::string& ref : refs[i]) {
      ref_counts[i].push_back(count_ngrams(split_whitespace(ref)));
      for (const NgramCounts& by_n : ref_counts[i].back()) {
        for (const auto& kv : by_n) seen.insert(kv.first);
      }
    }
    for (const std::string& gram : seen) ++doc_freq[gram];
  }
  const double log_items = std::log(static_cast<double>(hyps.size()));
  std::vector<double> scores;
  for (size_t i = 0; i < hyps.size(); ++i) {
    const TfIdf h = tf_idf(hyp_counts[i], doc_freq, log_items);
    double sum = 0;
    for (const auto& rc : ref_counts[i]) sum += cider_similarity(h, tf_idf(rc, doc_freq, log_items));
    scores.push_back(sum / static_cast<double>(refs[i].size()) * 10.0);
  }
  return scores;
}

double mean(const std::vector<double>& scores) {
  if (scores.empty()) return 0;
  double s = 0;
  for (double x : scores) s += x;
  return s / static_cast<double>(scores.size());
}

}  // namespace metalm::eval
