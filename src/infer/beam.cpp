// fairseq's beam search (reference-spec 6.1) over the decoder's KV cache.
#include "metalm/infer/beam.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "infer/log_normalizer.h"
#include "metalm/autograd/autograd.h"
#include "metalm/ops/shape.h"

namespace metalm::infer {
namespace {

struct Live {  // a hypothesis that goes on
  std::vector<int64_t> tokens;
  double score = 0;  // summed log-probabilities
};

void check(const models::Decoder& dec, const DecoderPrompt& prompt, const BeamOptions& o) {
  const int64_t V = dec.config.vocab_size;
  MLM_CHECK(prompt.size() > 0, ValueError, "[beam] the prompt is empty");
  MLM_CHECK(o.beam >= 1 && o.beam <= V / 2, ValueError, "[beam] beam must be in [1, ", V / 2,
            "] (2 x beam candidates per step), got ", o.beam);
  MLM_CHECK(o.max_new_tokens >= 0 && o.min_new_tokens >= 0 && o.no_repeat_ngram >= 0, ValueError,
            "[beam] max_new_tokens, min_new_tokens, no_repeat_ngram must be >= 0");
  MLM_CHECK(o.min_new_tokens <= o.max_new_tokens, ValueError, "[beam] min_new_tokens ",
            o.min_new_tokens, " is above max_new_tokens ", o.max_new_tokens);
  MLM_CHECK(o.eos_id >= 0 && o.eos_id < V, ValueError, "[beam] eos id ", o.eos_id,
            " is outside the ", V, "-id vocabulary");
  for (const int64_t id : o.banned_ids)
    MLM_CHECK(id >= 0 && id < V && id != o.eos_id, ValueError, "[beam] banned id ", id,
              " is outside the vocabulary or is EOS");
  const int64_t need = prompt.size() + o.max_new_tokens + 1;
  MLM_CHECK(need <= dec.config.max_positions, ValueError, "[beam] the prompt (", prompt.size(),
            " tokens) and ", o.max_new_tokens + 1, " new ones exceed the decoder's ",
            dec.config.max_positions, " positions");
}

}  // namespace

void ban_repeated_ngrams(const std::vector<int64_t>& tokens, int64_t n, std::vector<double>& lp) {
  const auto len = static_cast<int64_t>(tokens.size());
  if (n <= 0 || len < n) return;
  for (int64_t s = 0; s + n <= len; ++s) {
    bool same = true;  // tokens[s, s + n - 1) equals the last n - 1 tokens
    for (int64_t k = 0; k + 1 < n && same; ++k) same = tokens[s + k] == tokens[len - n + 1 + k];
    if (same) lp[static_cast<size_t>(tokens[s + n - 1])] = -INFINITY;
  }
}

namespace {

// One prompt's search: its live hypotheses (their rows are contiguous in the cache, in prompt
// order) and the finished ones.
struct Search {
  std::vector<Live> live = std::vector<Live>(1);  // step 0: only the prompt's row
  std::vector<Hypothesis> done;
  bool finished = false;
};

struct Cand {
  double score;
  int64_t beam, token;
};

// One step of fairseq's BeamSearch for one prompt: `logits` [live, V] of its rows; fills the
// next live hypotheses and `from` (their parents, as row indices within this prompt's rows).
void advance(Search& s, const float* logits, int64_t V, int64_t step, const BeamOptions& o,
             std::vector<int64_t>& from, std::vector<double>& lp, std::vector<Cand>& cands) {
  const int64_t B = o.beam;
  cands.clear();
  for (size_t r = 0; r < s.live.size(); ++r) {
    const float* x = logits + static_cast<int64_t>(r) * V;
    const double lz = log_normalizer(x, V);
    lp.resize(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) lp[static_cast<size_t>(i)] = static_cast<double>(x[i]) - lz;
    for (const int64_t id : o.banned_ids) lp[static_cast<size_t>(id)] = -INFINITY;
    if (step < o.min_new_tokens) lp[static_cast<size_t>(o.eos_id)] = -INFINITY;
    if (step >= o.max_new_tokens)
      for (int64_t i = 0; i < V; ++i)
        if (i != o.eos_id) lp[static_cast<size_t>(i)] = -INFINITY;
    ban_repeated_ngrams(s.live[r].tokens, o.no_repeat_ngram, lp);
    for (int64_t i = 0; i < V; ++i)
      cands.push_back({s.live[r].score + lp[static_cast<size_t>(i)], static_cast<int64_t>(r), i});
  }
  // The top 2 x beam of beam x vocab, best first; ties go to the lower flat index (beam, id).
  const auto k = std::min<size_t>(cands.size(), static_cast<size_t>(2 * B));
  std::partial_sort(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(k), cands.end(),
                    [V](const Cand& a, const Cand& b) {
                      if (a.score != b.score) return a.score > b.score;
                      return a.beam * V + a.token < b.beam * V + b.token;
                    });
  std::vector<Live> next;
  from.clear();
  for (size_t c = 0; c < k; ++c) {
    const Cand& x = cands[c];
    if (x.score == -INFINITY) break;
    const Live& parent = s.live[static_cast<size_t>(x.beam)];
    if (x.token == o.eos_id) {
      if (c < static_cast<size_t>(B) && static_cast<int64_t>(s.done.size()) < B) {
        Hypothesis h;
        h.tokens = parent.tokens;
        h.tokens.push_back(x.token);
        h.sum_logprob = x.score;
        h.score = x.score / std::pow(static_cast<double>(step + 1), o.length_penalty);
        s.done.push_back(std::move(h));
      }
      continue;
    }
    if (static_cast<int64_t>(next.size()) < B) {
      Live l{parent.tokens, x.score};
      l.tokens.push_back(x.token);
      next.push_back(std::move(l));
      from.push_back(x.beam);
    }
  }
  s.finished = static_cast<int64_t>(s.done.size()) >= B || next.empty();
  s.live = std::move(next);
  if (s.finished) from.clear();
}

}  // namespace

std::vector<std::vector<Hypothesis>> beam_search_batch(models::Decoder& dec,
                                                       const std::vector<DecoderPrompt>& prompts,
                                                       const BeamOptions& o) {
  MLM_CHECK(!prompts.empty(), ValueError, "[beam] no prompts");
  int64_t T = 0;
  for (const DecoderPrompt& p : prompts) T = std::max(T, p.size());
  for (const DecoderPrompt& p : prompts) check(dec, p, o);  // the longest one must fit too
  NoGradGuard ng;
  const nn::EvalModeGuard eval_mode(dec);
  const int64_t V = dec.config.vocab_size, P = static_cast<int64_t>(prompts.size());
  // Left padding, as generate_batch: every prompt's last token at column T - 1, pads never
  // attended, each row's positions its own; docked rows shifted by the padding.
  std::vector<int64_t> tokens(static_cast<size_t>(P * T)), positions(tokens.size(), 0);
  std::vector<uint8_t> padding(tokens.size(), 1), dock(tokens.size(), 0);
  std::vector<Tensor> features;
  const int64_t pad = dec.config.padding_idx >= 0 ? dec.config.padding_idx : 0;
  for (int64_t b = 0; b < P; ++b) {
    const DecoderPrompt& p = prompts[static_cast<size_t>(b)];
    const int64_t off = T - p.size();
    const std::vector<uint8_t> m = p.docked() ? p.dock_mask.to_vector<uint8_t>() : std::vector<uint8_t>();
    for (int64_t t = 0; t < T; ++t) {
      const auto i = static_cast<size_t>(b * T + t);
      tokens[i] = t < off ? pad : p.tokens[static_cast<size_t>(t - off)];
      positions[i] = t < off ? 0 : t - off;
      padding[i] = t < off ? 1 : 0;
      dock[i] = t < off || m.empty() ? 0 : m[static_cast<size_t>(t - off)];
    }
    if (p.docked()) features.push_back(p.dock_features);
  }
  models::IncrementalState state(dec, P, T + o.max_new_tokens + 1);
  std::vector<Search> searches(static_cast<size_t>(P));
  models::StackInputs in;
  in.tokens = Tensor::from_vector<int64_t>({P, T}, tokens);
  in.positions = Tensor::from_vector<int64_t>({P, T}, positions);
  in.padding = Tensor::from_vector<uint8_t>({P, T}, padding);
  if (!features.empty()) {
    in.dock_mask = Tensor::from_vector<uint8_t>({P, T}, dock);
    in.dock_features = features.size() == 1 ? features[0] : ops::concat(features, 0);
  }
  in.state = &state;
  std::vector<int64_t> from, rows, feed;
  std::vector<double> lp;
  std::vector<Cand> cands;
  for (int64_t step = 0;; ++step) {
    const Tensor logits = dec.forward(in).logits;  // [rows, t, V]
    const int64_t t = logits.size(1);
    const Tensor last = logits.slice(1, t - 1, t).contiguous();
    rows.clear();
    feed.clear();
    int64_t row = 0;  // the first cache row of the current prompt
    for (Search& s : searches) {
      if (s.finished) continue;
      const auto n = static_cast<int64_t>(s.live.size());
      advance(s, last.data<float>() + row * V, V, step, o, from, lp, cands);
      for (const int64_t f : from) rows.push_back(row + f);
      for (const Live& l : s.live)
        if (!s.finished) feed.push_back(l.tokens.back());
      row += n;
    }
    if (rows.empty()) break;
    state.select_rows(rows);
    in = models::StackInputs();
    in.tokens = Tensor::from_vector<int64_t>({static_cast<int64_t>(feed.size()), 1}, feed);
    in.state = &state;
  }
  std::vector<std::vector<Hypothesis>> out;
  for (Search& s : searches) {
    std::stable_sort(s.done.begin(), s.done.end(),
                     [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
    out.push_back(std::move(s.done));
  }
  return out;
}

std::vector<Hypothesis> beam_search(models::Decoder& dec, const DecoderPrompt& prompt,
                                    const BeamOptions& o) {
  return beam_search_batch(dec, {prompt}, o)[0];
}

}  // namespace metalm::infer
