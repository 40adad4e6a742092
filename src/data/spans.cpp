// The semi-causal span sampler and loss mask.
#include "metalm/data/spans.h"

#include <algorithm>

#include "metalm/core/error.h"
#include "metalm/core/random.h"

namespace metalm::data {

std::vector<Span> sample_spans(const int32_t* ids, int64_t n, const SpanOptions& o,
                               uint64_t seed) {
  MLM_CHECK(o.length >= 2, ValueError, "[spans] length must be >= 2, got ", o.length);
  MLM_CHECK(o.proportion >= 0 && o.proportion < 1, ValueError,
            "[spans] proportion must be in [0, 1), got ", o.proportion);
  std::vector<Span> spans;
  const int64_t L = o.length;
  if (o.proportion == 0 || 2 * n <= 5 * L + 2) return spans;  // n <= 2.5 L + 1
  std::vector<int64_t> starts;
  for (int64_t s = 1; 2 * s < 2 * n - 3 * L; s += L) starts.push_back(s);  // s < n - 1.5 L
  Generator gen(seed);
  for (size_t i = starts.size(); i > 1; --i)  // Fisher-Yates with the seeded generator
    std::swap(starts[i - 1], starts[static_cast<size_t>(gen.randint(0, static_cast<int64_t>(i)))]);
  const double budget = static_cast<double>(n - 1) * o.proportion;
  int64_t covered = 0;
  for (int64_t s : starts) {
    int64_t boundaries = 0, at = -1;
    for (int64_t j = 0; j < L; ++j)
      if (ids[s + j] == o.boundary_id) ++boundaries, at = j;
    Span sp;
    if (boundaries >= 2) continue;
    if (boundaries == 1) {
      if (L - at < o.min_after_boundary) continue;
      sp = {s + at + 1, s + L};
    } else {
      const int64_t c = gen.randint(0, L);  // inclusive 0 .. L-1
      sp = 2 * c >= L ? Span{s, s + c + 1} : Span{s + c, s + L};
    }
    if (sp.size() <= 0) continue;
    spans.push_back(sp);
    covered += sp.size();
    if (static_cast<double>(covered) > budget) break;
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  return spans;
}

void apply_spans(const std::vector<Span>& spans, int64_t T, SpanLoss mode, uint8_t* dock,
                 float* loss) {
  for (const Span& sp : spans) {
    MLM_CHECK(sp.begin >= 1 && sp.begin < sp.end && sp.end <= T, ValueError, "[spans] span [",
              sp.begin, ", ", sp.end, ") does not fit an input of ", T, " positions after <s>");
    for (int64_t t = sp.begin; t < sp.end; ++t) dock[t] = 1;
    // Position t predicts token t + 1. exact: t in [a, e-1) saw its target through the span;
    // reference: the released code drops targets a .. e-2, i.e. positions a-1 .. e-3.
    const int64_t lo = mode == SpanLoss::exact ? sp.begin : sp.begin - 1;
    const int64_t hi = mode == SpanLoss::exact ? sp.end - 1 : sp.end - 2;
    for (int64_t t = lo; t < hi; ++t) loss[t] = 0.f;
  }
}

}  // namespace metalm::data
