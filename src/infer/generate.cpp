// Incremental decoding with greedy or sampled picks.
#include "metalm/infer/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "metalm/autograd/autograd.h"
#include "metalm/core/random.h"

namespace metalm::infer {

int64_t pick_token(const float* logits, int64_t V, const GenerateOptions& o, uint64_t step) {
  if (o.temperature <= 0) return std::max_element(logits, logits + V) - logits;
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  int64_t k = o.top_k > 0 ? std::min(o.top_k, V) : V;
  // The k most likely first (ties: lower id first); top-p walks them in this order.
  auto likelier = [&](int64_t a, int64_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  };
  if (k < V || o.top_p < 1.0)
    std::partial_sort(order.begin(), order.begin() + k, order.end(), likelier);
  double mx = -INFINITY;
  for (int64_t i = 0; i < k; ++i) mx = std::max<double>(mx, logits[order[i]]);
  std::vector<double> p(static_cast<size_t>(k));
  double z = 0;
  for (int64_t i = 0; i < k; ++i) z += p[i] = std::exp((logits[order[i]] - mx) / o.temperature);
  if (o.top_p < 1.0) {  // keep the prefix whose mass reaches top_p, the crossing id included
    double mass = 0;
    int64_t keep = 0;
    while (keep < k && mass < o.top_p * z) mass += p[keep++];
    k = std::max<int64_t>(keep, 1);
    z = 0;
    for (int64_t i = 0; i < k; ++i) z += p[i];
  }
  double u = Generator::uniform_at(o.seed, step) * z;
  for (int64_t i = 0; i < k; ++i) {
    u -= p[i];
    if (u <= 0) return order[i];
  }
  return order[k - 1];
}

namespace {

void check_options(const models::Decoder& dec, const GenerateOptions& o) {
  MLM_CHECK(
      o.max_new_tokens >= 0 && o.temperature >= 0 && o.top_k >= 0 && o.slide_keep >= 0 &&
          o.min_new_tokens >= 0,
      ValueError,
      "[generate] max_new_tokens, min_new_tokens, temperature, top_k, slide_keep must be >= 0");
  MLM_CHECK(o.top_p > 0 && o.top_p <= 1, ValueError, "[generate] top_p must be in (0, 1], got ",
            o.top_p);
  const int64_t limit = dec.config.max_positions;
  MLM_CHECK(o.slide_keep < limit, ValueError, "[generate] slide_keep ", o.slide_keep,
            " must be below the decoder's ", limit, " positions");
  const int64_t V = dec.config.vocab_size;
  std::vector<char> banned(static_cast<size_t>(V), 0);
  for (const int64_t id : o.banned_ids) {
    MLM_CHECK(id >= 0 && id < V, ValueError, "[generate] banned id ", id, " is outside the ", V,
              "-id vocabulary");
    banned[static_cast<size_t>(id)] = 1;
  }
  MLM_CHECK(std::find(banned.begin(), banned.end(), 0) != banned.end(), ValueError,
            "[generate] every id of the vocabulary is banned");
}

// The logits of one row as pick_token sees them: banned ids, and stop ids before min_new_tokens.
std::vector<float> adjusted_row(const float* logits, int64_t V, const GenerateOptions& o,
                                int64_t step) {
  std::vector<float> row(logits, logits + V);
  for (const int64_t b : o.banned_ids) row[static_cast<size_t>(b)] = -INFINITY;
  if (step < o.min_new_tokens)
    for (const int64_t s : o.stop_ids)
      if (s >= 0 && s < V) row[static_cast<size_t>(s)] = -INFINITY;
  return row;
}

bool is_stop(const GenerateOptions& o, int64_t id) {
  return std::find(o.stop_ids.begin(), o.stop_ids.end(), id) != o.stop_ids.end();
}

}  // namespace

namespace {

// The decoding loop of generate() and continue_generation(): `feed` goes in first (with its
// docked vectors), then one new id per step. With `context` (every id the cache should hold),
// a full cache slides to the last slide_keep ids; without, it stops.
std::vector<int64_t> decode(models::Decoder& dec, models::IncrementalState& state,
                            const DecoderPrompt& first, const GenerateOptions& o,
                            const std::function<void(int64_t)>& on_token,
                            std::vector<int64_t>* context) {
  const int64_t limit = state.capacity(), V = dec.config.vocab_size;
  NoGradGuard ng;
  const nn::EvalModeGuard eval_mode(dec);
  std::vector<int64_t> feed = first.tokens, out;
  bool docked = first.docked();
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    if (state.length() + static_cast<int64_t>(feed.size()) > limit) {
      if (o.slide_keep == 0 || context == nullptr || first.docked()) break;
      state.reset();
      context->erase(context->begin(), context->end() - o.slide_keep);
      feed = *context;
    }
    models::StackInputs in;
    in.tokens = Tensor::from_vector<int64_t>({1, static_cast<int64_t>(feed.size())}, feed);
    if (docked) {
      in.dock_mask = first.dock_mask;
      in.dock_features = first.dock_features;
      docked = false;
    }
    in.state = &state;
    const Tensor logits = dec.forward(in).logits;  // [1, t, V]
    const Tensor last = logits.slice(1, logits.size(1) - 1, logits.size(1)).contiguous();
    const std::vector<float> row = adjusted_row(last.data<float>(), V, o, step);
    const int64_t id = pick_token(row.data(), V, o, static_cast<uint64_t>(step));
    out.push_back(id);
    if (context) context->push_back(id);
    if (on_token) on_token(id);
    if (is_stop(o, id) || (o.stop_when && o.stop_when(out))) break;
    feed = {id};
  }
  return out;
}

}  // namespace

std::vector<int64_t> generate(models::Decoder& dec, const DecoderPrompt& prompt,
                              const GenerateOptions& o,
                              const std::function<void(int64_t)>& on_token) {
  MLM_CHECK(prompt.size() > 0, ValueError, "[generate] the prompt is empty");
  check_options(dec, o);
  const int64_t limit = dec.config.max_positions;
  std::vector<int64_t> context = prompt.tokens;
  models::IncrementalState state(dec, 1, limit);
  if (prompt.size() <= limit) return decode(dec, state, prompt, o, on_token, &context);
  MLM_CHECK(o.slide_keep > 0 && !prompt.docked(), ValueError, "[generate] the prompt has ",
            prompt.size(), " tokens, the decoder reads ", limit);
  context.erase(context.begin(), context.end() - o.slide_keep);
  return decode(dec, state, DecoderPrompt(context), o, on_token, &context);
}

std::vector<int64_t> continue_generation(models::Decoder& dec, models::IncrementalState& state,
                                         const DecoderPrompt& feed, const GenerateOptions& o,
                                         const std::function<void(int64_t)>& on_token) {
  MLM_CHECK(feed.size() > 0, ValueError, "[generate] nothing to read (an empty feed)");
  check_options(dec, o);
  return decode(dec, state, feed, o, on_token, nullptr);
}

std::vector<std::vector<int64_t>> generate_batch(models::Decoder& dec,
                                                 const std::vector<std::vector<int64_t>>& prompts,
                                                 const GenerateOptions& o) {
  MLM_CHECK(!prompts.empty(), ValueError, "[generate] no prompts");
  check_options(dec, o);
  const int64_t V = dec.config.vocab_size, B = static_cast<int64_t>(prompts.size());
  size_t longest = 0;
  for (const auto& p : prompts) {
    MLM_CHECK(!p.empty(), ValueError, "[generate] a prompt is empty");
    longest = std::max(longest, p.size());
  }
  const int64_t T = static_cast<int64_t>(longest), limit = dec.config.max_positions;
  MLM_CHECK(T + o.max_new_tokens <= limit, ValueError, "[generate] the longest prompt (", T,
            " tokens) and ", o.max_new_tokens, " new ones exceed the decoder's ", limit,
            " positions (batched generation does not slide)");
  NoGradGuard ng;
  const nn::EvalModeGuard eval_mode(dec);
  // Left padding: every row's last prompt token is at column T - 1. Pads are never attended
  // as keys, and each row's positions count its own tokens from 0, so a row sees exactly what
  // it would alone.
  std::vector<int64_t> tokens(static_cast<size_t>(B * T)), positions(tokens.size(), 0);
  std::vector<uint8_t> padding(tokens.size(), 1);
  const int64_t pad = dec.config.padding_idx >= 0 ? dec.config.padding_idx : 0;
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[static_cast<size_t>(b)];
    const int64_t off = T - static_cast<int64_t>(p.size());
    for (int64_t t = 0; t < T; ++t) {
      const auto i = static_cast<size_t>(b * T + t);
      tokens[i] = t < off ? pad : p[static_cast<size_t>(t - off)];
      positions[i] = t < off ? 0 : t - off;
      padding[i] = t < off ? 1 : 0;
    }
  }
  models::IncrementalState state(dec, B, T + std::max<int64_t>(o.max_new_tokens, 1));
  models::StackInputs in;
  in.tokens = Tensor::from_vector<int64_t>({B, T}, tokens);
  in.positions = Tensor::from_vector<int64_t>({B, T}, positions);
  in.padding = Tensor::from_vector<uint8_t>({B, T}, padding);
  in.state = &state;
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(B));
  std::vector<char> done(static_cast<size_t>(B), 0);
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    const Tensor logits = dec.forward(in).logits;  // [B, t, V]
    const int64_t t = logits.size(1);
    const Tensor last = logits.slice(1, t - 1, t).contiguous();
    std::vector<int64_t> next(static_cast<size_t>(B), pad);
    int64_t running = 0;
    for (int64_t b = 0; b < B; ++b) {
      if (done[static_cast<size_t>(b)]) continue;
      const std::vector<float> row = adjusted_row(last.data<float>() + b * V, V, o, step);
      const int64_t id = pick_token(row.data(), V, o, static_cast<uint64_t>(step));
      out[static_cast<size_t>(b)].push_back(id);
      next[static_cast<size_t>(b)] = id;
      if (is_stop(o, id) || (o.stop_when && o.stop_when(out[static_cast<size_t>(b)])))
        done[static_cast<size_t>(b)] = 1;
      else
        ++running;
    }
    if (running == 0 || step + 1 == o.max_new_tokens) break;
    in = models::StackInputs();
    in.tokens = Tensor::from_vector<int64_t>({B, 1}, next);  // finished rows: ignored filler
    in.state = &state;
  }
  return out;
}

}  // namespace metalm::infer
