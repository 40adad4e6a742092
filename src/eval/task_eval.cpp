// The task evaluator: prompts, choice scoring or generation, metrics with bootstrap intervals.
#include "metalm/eval/task_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "metalm/core/error.h"
#include "metalm/core/random.h"
#include "metalm/data/tokenizer.h"
#include "metalm/eval/metrics.h"
#include "text_util.h"
#include "metalm/infer/beam.h"
#include "metalm/infer/generate.h"
#include "metalm/infer/score.h"
#include "metalm/models/metalm.h"

namespace metalm::eval {

const std::vector<std::string>& metric_names() {
  static const std::vector<std::string> names = {"accuracy", "em",      "f1", "bleu4",
                                                 "rouge_l",  "cider_d", "vqa"};
  return names;
}

std::pair<double, double> bootstrap_interval(
    int64_t n, int64_t resamples, uint64_t seed,
    const std::function<double(const std::vector<int64_t>&)>& stat) {
  MLM_CHECK(n > 0 && resamples > 0, ValueError, "[bootstrap] needs items and resamples");
  Generator g(seed);
  std::vector<double> stats;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t r = 0; r < resamples; ++r) {
    for (auto& i : idx) i = g.randint(0, n);
    stats.push_back(stat(idx));
  }
  std::sort(stats.begin(), stats.end());
  auto at = [&](double q) {  // linear interpolation between order statistics
    const double pos = q * static_cast<double>(resamples - 1);
    const auto lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, stats.size() - 1);
    return stats[lo] + (pos - static_cast<double>(lo)) * (stats[hi] - stats[lo]);
  };
  return {at(0.025), at(0.975)};
}

namespace {

std::string trim(const std::string& s) { return std::string(strip(s)); }

// Generated ids to text up to </s> or </doc> (a pretrained LM ends text with </doc>): </line>
// as a line break, control tokens dropped, trimmed; with single_line, only the first line (the
// answers hold no line break, and an LM goes on writing after one).
std::string answer_text(const data::Tokenizer& tok, const std::vector<int64_t>& ids,
                        bool single_line) {
  std::vector<int64_t> kept;
  for (const int64_t id : ids) {
    if (id == tok.eos_id() || id == tok.spec().doc_end_id) break;
    if (single_line && id == tok.spec().line_end_id) break;
    kept.push_back(id);
  }
  return trim(data::decode_lines(tok, kept));
}

// `shots` distinct demonstrations for example `i`, none with the example's input.
std::vector<std::pair<std::string, std::string>> draw_demonstrations(
    const std::vector<data::TaskExample>& pool, const data::TaskExample& ex, int64_t shots,
    uint64_t seed, int64_t i) {
  std::vector<int64_t> candidates;
  for (size_t j = 0; j < pool.size(); ++j)
    if (pool[j].input != ex.input) candidates.push_back(static_cast<int64_t>(j));
  MLM_CHECK(static_cast<int64_t>(candidates.size()) >= shots, ValueError, "[eval] ", shots,
            "-shot prompts need ", shots, " demonstrations of task ", ex.task, "; the pool has ",
            candidates.size());
  Generator g(seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i + 1)));
  std::vector<std::pair<std::string, std::string>> demos;
  for (int64_t k = 0; k < shots; ++k) {  // a partial Fisher-Yates shuffle
    const int64_t r = g.randint(k, static_cast<int64_t>(candidates.size()));
    std::swap(candidates[static_cast<size_t>(k)], candidates[static_cast<size_t>(r)]);
    const data::TaskExample& d = pool[static_cast<size_t>(candidates[static_cast<size_t>(k)])];
    demos.emplace_back(d.input, d.output);
  }
  return demos;
}

// Per-example values of one metric, or the corpus value over the chosen items.
struct Scorer {
  const std::vector<data::TaskExample>& ex;
  const std::vector<std::string>& pred;
  std::vector<std::string> hyp_tokens;
  std::vector<std::vector<std::string>> ref_tokens;

  Scorer(const std::vector<data::TaskExample>& e, const std::vector<std::string>& p)
      : ex(e), pred(p) {
    for (size_t i = 0; i < e.size(); ++i) {
      hyp_tokens.push_back(caption_tokenize(p[i]));
      std::vector<std::string> refs;
      for (const std::string& a : e[i].answers) refs.push_back(caption_tokenize(a));
      ref_tokens.push_back(std::move(refs));
    }
  }
  // Items scored one by one (a mean over items); bleu4 and cider_d are corpus metrics.
  std::vector<double> per_item(const std::string& m) const {
    std::vector<double> v;
    for (size_t i = 0; i < ex.size(); ++i) {
      if (m == "accuracy") v.push_back(trim(pred[i]) == trim(ex[i].output) ? 1.0 : 0.0);
      else if (m == "em") v.push_back(squad_exact_match(pred[i], ex[i].answers));
      else if (m == "f1") v.push_back(squad_f1(pred[i], ex[i].answers));
      else if (m == "vqa") v.push_back(vqa_accuracy(pred[i], ex[i].answers));
      else if (m == "rouge_l")
        v.push_back(hyp_tokens[i].empty() ? 0.0 : rouge_l({hyp_tokens[i]}, {ref_tokens[i]})[0]);
    }
    return v;
  }
  double bleu4(const std::vector<int64_t>& idx) const {
    std::vector<std::string> h;
    std::vector<std::vector<std::string>> r;
    for (const int64_t i : idx) {
      h.push_back(hyp_tokens[static_cast<size_t>(i)]);
      r.push_back(ref_tokens[static_cast<size_t>(i)]);
    }
    return bleu(h, r)[3];
  }
};

MetricResult score_metric(const Scorer& s, const std::string& m, int64_t resamples, uint64_t seed) {
  MetricResult r;
  r.name = m;
  const auto n = static_cast<int64_t>(s.ex.size());
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
  if (m == "cider_d") {
    r.value = 100 * mean(cider_d(s.hyp_tokens, s.ref_tokens));
    return r;
  }
  std::function<double(const std::vector<int64_t>&)> stat;
  std::vector<double> items;
  if (m == "bleu4") {
    stat = [&s](const std::vector<int64_t>& idx) { return s.bleu4(idx); };
  } else {
    items = s.per_item(m);
    stat = [&items](const std::vector<int64_t>& idx) {
      double sum = 0;
      for (const int64_t i : idx) sum += items[static_cast<size_t>(i)];
      return sum / static_cast<double>(idx.size());
    };
  }
  r.value = 100 * stat(all);
  if (resamples > 0) {
    const auto [lo, hi] = bootstrap_interval(n, resamples, seed, stat);
    r.low = 100 * lo, r.high = 100 * hi, r.has_interval = true;
  }
  return r;
}

}  // namespace

TaskEvalResult evaluate_task(models::Model& model, const data::Tokenizer& tok,
                             const std::vector<data::TaskExample>& examples,
                             const std::vector<data::TaskExample>& pool,
                             const TaskEvalOptions& o,
                             const std::function<void(int64_t, int64_t)>& progress) {
  MLM_CHECK(!examples.empty(), ValueError, "[eval] no examples");
  MLM_CHECK(o.shots >= 0 && o.max_new_tokens > 0 && o.beam >= 0 && o.bootstrap >= 0, ValueError,
            "[eval] shots, beam and bootstrap must be >= 0 and max_new_tokens > 0");
  std::vector<std::string> metrics = o.metrics;
  const bool any_choices = std::any_of(examples.begin(), examples.end(),
                                       [](const data::TaskExample& e) { return !e.choices.empty(); });
  if (metrics.empty())
    metrics = any_choices ? std::vector<std::string>{"accuracy"}
                          : std::vector<std::string>{"em", "f1", "bleu4", "rouge_l"};
  for (const std::string& m : metrics)
    MLM_CHECK(std::find(metric_names().begin(), metric_names().end(), m) != metric_names().end(),
              ValueError, "[eval] unknown metric \"", m, "\"");
  const auto start = std::chrono::steady_clock::now();
  models::Decoder& dec = infer::task_decoder(model);
  const std::string encoder = infer::default_encoder(model);
  const int64_t limit = dec.config.max_positions;
  infer::PromptTemplate tmpl = o.tmpl;
  int64_t input_cap = limit / 2;
  if (auto* m = dynamic_cast<models::MetaLM*>(&model); m != nullptr && !encoder.empty())
    input_cap = std::min(input_cap, m->encoder(encoder).stack_config().max_positions - 1);
  tmpl.max_input_tokens = tmpl.max_input_tokens > 0 ? std::min(tmpl.max_input_tokens, input_cap)
                                                    : input_cap;
  TaskEvalResult res;
  res.task = examples[0].task;
  res.examples = static_cast<int64_t>(examples.size());
  for (size_t i = 0; i < examples.size(); ++i) {
    const data::TaskExample& ex = examples[i];
    auto demos = draw_demonstrations(pool, ex, o.shots, o.seed, static_cast<int64_t>(i));
    std::vector<std::vector<int64_t>> cands;
    int64_t need = o.max_new_tokens + 1;
    if (!ex.choices.empty()) {
      need = 0;
      for (const std::string& c : ex.choices) {
        cands.push_back(infer::encode_lines(tok, c));
        need = std::max<int64_t>(need, static_cast<int64_t>(cands.back().size()));
      }
    }
    infer::Prompt prompt = infer::few_shot_prompt(tok, tmpl, demos, ex.input, encoder);
    const bool cut = static_cast<int64_t>(infer::encode_lines(tok, ex.input).size()) > tmpl.max_input_tokens;
    bool shortened = cut;
    while (prompt.size() + need > limit && !demos.empty()) {
      demos.erase(demos.begin());
      prompt = infer::few_shot_prompt(tok, tmpl, demos, ex.input, encoder);
      shortened = true;
    }
    MLM_CHECK(prompt.size() + need <= limit, ValueError, "[eval] task ", ex.task, " line ", ex.line,
              ": the prompt (", prompt.size(), " tokens) and its answer (", need,
              ") do not fit the model's ", limit, " positions");
    res.shortened += shortened;
    const bool single_line = std::none_of(ex.answers.begin(), ex.answers.end(),
                                          [](const std::string& a) { return a.find('\n') != std::string::npos; });
    const infer::DecoderPrompt dp = infer::prepare_prompt(model, prompt, tok.bos_id());
    if (!ex.choices.empty()) {
      const auto scores = infer::score_candidates(dec, dp, cands);
      size_t best = 0;
      for (size_t c = 1; c < scores.size(); ++c) {
        const double a = o.length_normalized ? scores[c].mean_logprob : scores[c].sum_logprob;
        const double b = o.length_normalized ? scores[best].mean_logprob : scores[best].sum_logprob;
        if (a > b) best = c;
      }
      res.predictions.push_back(ex.choices[best]);
    } else if (o.beam > 0) {
      infer::BeamOptions b;
      b.beam = o.beam;
      b.length_penalty = o.length_penalty;
      b.max_new_tokens = o.max_new_tokens;
      b.eos_id = tok.eos_id();
      b.banned_ids = data::non_text_ids(tok);
      const auto hyps = infer::beam_search(dec, dp, b);
      res.predictions.push_back(hyps.empty() ? "" : answer_text(tok, hyps[0].tokens, single_line));
    } else {
      infer::GenerateOptions g;
      g.max_new_tokens = o.max_new_tokens;
      g.stop_ids = {tok.eos_id()};
      for (const int64_t id : {tok.spec().doc_end_id, single_line ? tok.spec().line_end_id : -1})
        if (id >= 0) g.stop_ids.push_back(id);
      g.banned_ids = data::non_text_ids(tok);
      res.predictions.push_back(answer_text(tok, infer::generate(dec, dp, g), single_line));
    }
    if (progress) progress(static_cast<int64_t>(i) + 1, res.examples);
  }
  const Scorer scorer(examples, res.predictions);
  for (const std::string& m : metrics) res.metrics.push_back(score_metric(scorer, m, o.bootstrap, o.seed));
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return res;
}

}  // namespace metalm::eval
