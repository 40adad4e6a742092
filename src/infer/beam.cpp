// fairseq's beam search (reference-spec 6.1) over the decoder's KV cache.
#include "metalm/infer/beam.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "infer/log_normalizer.h"
#include "metalm/autograd/autograd.h"

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

std::vector<Hypothesis> beam_search(models::Decoder& dec, const DecoderPrompt& prompt,
                                    const BeamOptions& o) {
  check(dec, prompt, o);
  NoGradGuard ng;
  const bool was_training = dec.is_training();
  dec.eval();
  const int64_t V = dec.config.vocab_size, B = o.beam;
  models::IncrementalState state(dec, 1, prompt.size() + o.max_new_tokens + 1);
  std::vector<Live> live(1);  // step 0: only the prompt's row (fairseq uses beam 0 only)
  std::vector<Hypothesis> done;
  std::vector<int64_t> feed = prompt.tokens;
  std::vector<double> lp;
  struct Cand {
    double score;
    int64_t beam, token;
  };
  std::vector<Cand> cands;
  for (int64_t step = 0; static_cast<int64_t>(done.size()) < B; ++step) {
    models::StackInputs in;
    const auto rows = static_cast<int64_t>(live.size());
    const auto t = static_cast<int64_t>(feed.size()) / rows;
    in.tokens = Tensor::from_vector<int64_t>({rows, t}, feed);
    if (step == 0 && prompt.docked()) {
      in.dock_mask = prompt.dock_mask;
      in.dock_features = prompt.dock_features;
    }
    in.state = &state;
    const Tensor logits = dec.forward(in).logits;  // [rows, t, V]
    const Tensor last = logits.slice(1, t - 1, t).contiguous();
    cands.clear();
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = last.data<float>() + r * V;
      const double lz = log_normalizer(x, V);
      lp.resize(static_cast<size_t>(V));
      for (int64_t i = 0; i < V; ++i) lp[static_cast<size_t>(i)] = static_cast<double>(x[i]) - lz;
      for (const int64_t id : o.banned_ids) lp[static_cast<size_t>(id)] = -INFINITY;
      if (step < o.min_new_tokens) lp[static_cast<size_t>(o.eos_id)] = -INFINITY;
      if (step >= o.max_new_tokens)
        for (int64_t i = 0; i < V; ++i)
          if (i != o.eos_id) lp[static_cast<size_t>(i)] = -INFINITY;
      ban_repeated_ngrams(live[static_cast<size_t>(r)].tokens, o.no_repeat_ngram, lp);
      for (int64_t i = 0; i < V; ++i)
        cands.push_back({live[static_cast<size_t>(r)].score + lp[static_cast<size_t>(i)], r, i});
    }
    // The top 2 x beam of beam x vocab, best first; ties go to the lower flat index (beam, id).
    const auto k = std::min<size_t>(cands.size(), static_cast<size_t>(2 * B));
    std::partial_sort(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(k), cands.end(),
                      [V](const Cand& a, const Cand& b) {
                        if (a.score != b.score) return a.score > b.score;
                        return a.beam * V + a.token < b.beam * V + b.token;
                      });
    std::vector<Live> next;
    std::vector<int64_t> from;
    for (size_t c = 0; c < k; ++c) {
      const Cand& x = cands[c];
      if (x.score == -INFINITY) break;
      const Live& parent = live[static_cast<size_t>(x.beam)];
      if (x.token == o.eos_id) {
        if (c < static_cast<size_t>(B) && static_cast<int64_t>(done.size()) < B) {
          Hypothesis h;
          h.tokens = parent.tokens;
          h.tokens.push_back(x.token);
          h.sum_logprob = x.score;
          h.score = x.score / std::pow(static_cast<double>(step + 1), o.length_penalty);
          done.push_back(std::move(h));
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
    if (static_cast<int64_t>(done.size()) >= B || next.empty()) break;
    state.select_rows(from);
    live = std::move(next);
    feed.clear();
    for (const Live& l : live) feed.push_back(l.tokens.back());
  }
  dec.train(was_training);
  std::stable_sort(done.begin(), done.end(),
                   [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
  return done;
}

}  // namespace metalm::infer
