// Accuracy, SQuAD v1.1 EM/F1 and VQA accuracy, following their official evaluation scripts rule
// by rule (reference-spec section 7; where the spec's VQA punctuation list differs from
// vqaEval.py, the script's list is used).
#include <algorithm>
#include <map>
#include <unordered_map>

#include "metalm/core/error.h"
#include "metalm/eval/metrics.h"
#include "text_util.h"

namespace metalm::eval {

double accuracy(const std::vector<std::string>& preds, const std::vector<std::string>& golds) {
  MLM_CHECK(preds.size() == golds.size(), ValueError, "[accuracy] ", preds.size(),
            " predictions for ", golds.size(), " gold answers");
  MLM_CHECK(!preds.empty(), ValueError, "[accuracy] no items");
  size_t right = 0;
  for (size_t i = 0; i < preds.size(); ++i) right += preds[i] == golds[i];
  return static_cast<double>(right) / static_cast<double>(preds.size());
}

// ---- SQuAD ----

std::string squad_normalize(std::string_view text) {
  std::string s;
  for (char c : text) {
    if (!is_ascii_punct(c)) s += ascii_lower(c);
  }
  // \b(a|an|the)\b matches exactly a whole run of word characters equal to an article.
  std::string no_articles;
  for (size_t i = 0; i < s.size();) {
    if (!is_word_byte(s[i])) {
      no_articles += s[i++];
      continue;
    }
    size_t j = i;
    while (j < s.size() && is_word_byte(s[j])) ++j;
    const std::string_view word(s.data() + i, j - i);
    if (word == "a" || word == "an" || word == "the") {
      no_articles += ' ';
    } else {
      no_articles += word;
    }
    i = j;
  }
  return join(split_whitespace(no_articles), ' ');
}

double squad_exact_match(std::string_view pred, const std::vector<std::string>& golds) {
  MLM_CHECK(!golds.empty(), ValueError, "[squad_exact_match] no gold answers");
  const std::string p = squad_normalize(pred);
  for (const std::string& g : golds) {
    if (squad_normalize(g) == p) return 1.0;
  }
  return 0.0;
}

double squad_f1(std::string_view pred, const std::vector<std::string>& golds) {
  MLM_CHECK(!golds.empty(), ValueError, "[squad_f1] no gold answers");
  const std::vector<std::string> p = split_whitespace(squad_normalize(pred));
  std::map<std::string, int64_t> pred_counts;
  for (const std::string& w : p) ++pred_counts[w];
  double best = 0;
  for (const std::string& gold : golds) {
    const std::vector<std::string> g = split_whitespace(squad_normalize(gold));
    std::map<std::string, int64_t> left = pred_counts;
    int64_t same = 0;
    for (const std::string& w : g) {
      auto it = left.find(w);
      if (it != left.end() && it->second > 0) {
        --it->second;
        ++same;
      }
    }
    if (same == 0) continue;
    const double precision = static_cast<double>(same) / static_cast<double>(p.size());
    const double recall = static_cast<double>(same) / static_cast<double>(g.size());
    best = std::max(best, 2 * precision * recall / (precision + recall));
  }
  return best;
}

// ---- VQA ----

namespace {

constexpr std::string_view kVqaPunct = ";/[]\"{}()=+\\_-><@`,?!";
constexpr int kVqaMaxPeriodsRemoved = 32;  // re.UNICODE (32) passed as re.sub's count

// vqaEval.py's contraction table: apostrophe-less spellings an annotator or a model types, to the
// spelling the human answers use. Keys with capitals never match (words are lowercased first);
// they are kept so the table is the reference's.
const std::unordered_map<std::string_view, std::string_view>& contractions() {
  static const std::unordered_map<std::string_view, std::string_view> table = {
      {"aint", "ain't"}, {"arent", "aren't"}, {"cant", "can't"}, {"couldve", "could've"},
      {"couldnt", "couldn't"}, {"couldn'tve", "couldn't've"}, {"couldnt've", "couldn't've"},
      {"didnt", "didn't"}, {"doesnt", "doesn't"}, {"dont", "don't"}, {"hadnt", "hadn't"},
      {"hadnt've", "hadn't've"}, {"hadn'tve", "hadn't've"}, {"hasnt", "hasn't"},
      {"havent", "haven't"}, {"hed", "he'd"}, {"hed've", "he'd've"}, {"he'dve", "he'd've"},
      {"hes", "he's"}, {"howd", "how'd"}, {"howll", "how'll"}, {"hows", "how's"},
      {"Id've", "I'd've"}, {"I'dve", "I'd've"}, {"Im", "I'm"}, {"Ive", "I've"},
      {"isnt", "isn't"}, {"itd", "it'd"}, {"itd've", "it'd've"}, {"it'dve", "it'd've"},
      {"itll", "it'll"}, {"let's", "let's"}, {"maam", "ma'am"}, {"mightnt", "mightn't"},
      {"mightnt've", "mightn't've"}, {"mightn'tve", "mightn't've"}, {"mightve", "might've"},
      {"mustnt", "mustn't"}, {"mustve", "must've"}, {"neednt", "needn't"}, {"notve", "not've"},
      {"oclock", "o'clock"}, {"oughtnt", "oughtn't"}, {"ow's'at", "'ow's'at"},
      {"'ows'at", "'ow's'at"}, {"'ow'sat", "'ow's'at"}, {"shant", "shan't"},
      {"shed've", "she'd've"}, {"she'dve", "she'd've"}, {"she's", "she's"},
      {"shouldve", "should've"}, {"shouldnt", "shouldn't"}, {"shouldnt've", "shouldn't've"},
      {"shouldn'tve", "shouldn't've"}, {"somebody'd", "somebodyd"},
      {"somebodyd've", "somebody'd've"}, {"somebody'dve", "somebody'd've"},
      {"somebodyll", "somebody'll"}, {"somebodys", "somebody's"}, {"someoned", "someone'd"},
      {"someoned've", "someone'd've"}, {"someone'dve", "someone'd've"},
      {"someonell", "someone'll"}, {"someones", "someone's"}, {"somethingd", "something'd"},
      {"somethingd've", "something'd've"}, {"something'dve", "something'd've"},
      {"somethingll", "something'll"}, {"thats", "that's"}, {"thered", "there'd"},
      {"thered've", "there'd've"}, {"there'dve", "there'd've"}, {"therere", "there're"},
      {"theres", "there's"}, {"theyd", "they'd"}, {"theyd've", "they'd've"},
      {"they'dve", "they'd've"}, {"theyll", "they'll"}, {"theyre", "they're"},
      {"theyve", "they've"}, {"twas", "'twas"}, {"wasnt", "wasn't"}, {"wed've", "we'd've"},
      {"we'dve", "we'd've"}, {"weve", "we've"}, {"werent", "weren't"}, {"whatll", "what'll"},
      {"whatre", "what're"}, {"whats", "what's"}, {"whatve", "what've"}, {"whens", "when's"},
      {"whered", "where'd"}, {"wheres", "where's"}, {"whereve", "where've"}, {"whod", "who'd"},
      {"whod've", "who'd've"}, {"who'dve", "who'd've"}, {"wholl", "who'll"}, {"whos", "who's"},
      {"whove", "who've"}, {"whyll", "why'll"}, {"whyre", "why're"}, {"whys", "why's"},
      {"wont", "won't"}, {"wouldve", "would've"}, {"wouldnt", "wouldn't"},
      {"wouldnt've", "wouldn't've"}, {"wouldn'tve", "wouldn't've"}, {"yall", "y'all"},
      {"yall'll", "y'all'll"}, {"y'allll", "y'all'll"}, {"yall'd've", "y'all'd've"},
      {"y'alld've", "y'all'd've"}, {"y'all'dve", "y'all'd've"}, {"youd", "you'd"},
      {"youd've", "you'd've"}, {"you'dve", "you'd've"}, {"youll", "you'll"},
      {"youre", "you're"}, {"youve", "you've"}};
  return table;
}

bool has_digit_comma_digit(std::string_view s) {
  for (size_t i = 0; i + 2 < s.size(); ++i) {
    if (is_ascii_digit(s[i]) && s[i + 1] == ',' && is_ascii_digit(s[i + 2])) return true;
  }
  return false;
}

// Tabs and newlines to spaces, then Python's strip().
std::string vqa_clean(std::string_view s) {
  std::string out(s);
  std::replace(out.begin(), out.end(), '\n', ' ');
  std::replace(out.begin(), out.end(), '\t', ' ');
  return std::string(strip(out));
}

}  // namespace

std::string vqa_process_punctuation(std::string_view text) {
  const bool delete_all = has_digit_comma_digit(text);
  std::string out(text);
  for (char p : kVqaPunct) {
    const bool next_to_space =
        text.find(std::string{p, ' '}) != std::string_view::npos ||
        text.find(std::string{' ', p}) != std::string_view::npos;
    if (delete_all || next_to_space) {
      out.erase(std::remove(out.begin(), out.end(), p), out.end());
    } else {
      std::replace(out.begin(), out.end(), p, ' ');
    }
  }
  std::string result;
  int removed = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const bool digit_next = i + 1 < out.size() && is_ascii_digit(out[i + 1]);
    if (out[i] == '.' && !digit_next && removed < kVqaMaxPeriodsRemoved) {
      ++removed;
      continue;
    }
    result += out[i];
  }
  return result;
}

std::string vqa_process_digit_article(std::string_view text) {
  static const std::unordered_map<std::string_view, std::string_view> numbers = {
      {"none", "0"}, {"zero", "0"}, {"one", "1"}, {"two", "2"},   {"three", "3"}, {"four", "4"},
      {"five", "5"}, {"six", "6"},  {"seven", "7"}, {"eight", "8"}, {"nine", "9"}, {"ten", "10"}};
  std::string lower;
  for (char c : text) lower += ascii_lower(c);
  std::vector<std::string> words;
  for (std::string& w : split_whitespace(lower)) {
    if (auto it = numbers.find(w); it != numbers.end()) w = it->second;
    if (w == "a" || w == "an" || w == "the") continue;
    if (auto it = contractions().find(w); it != contractions().end()) w = it->second;
    words.push_back(std::move(w));
  }
  return join(words, ' ');
}

std::string vqa_normalize_prediction(std::string_view pred) {
  return vqa_process_digit_article(vqa_process_punctuation(vqa_clean(pred)));
}

double vqa_accuracy(std::string_view pred, const std::vector<std::string>& answers) {
  MLM_CHECK(!answers.empty(), ValueError, "[vqa_accuracy] no human answers");
  std::vector<std::string> gts;
  for (const std::string& a : answers) gts.push_back(vqa_clean(a));
  const bool all_same =
      std::all_of(gts.begin(), gts.end(), [&](const std::string& g) { return g == gts[0]; });
  if (!all_same) {
    for (std::string& g : gts) g = vqa_process_punctuation(g);
  }
  const std::string p = vqa_normalize_prediction(pred);
  const auto matches = static_cast<double>(std::count(gts.begin(), gts.end(), p));
  double total = 0;
  for (const std::string& g : gts) {
    const double others = matches - (g == p ? 1 : 0);
    total += std::min(1.0, others / 3.0);
  }
  return total / static_cast<double>(gts.size());
}

}  // namespace metalm::eval
