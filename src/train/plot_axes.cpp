// The numbers of a plot (train/plot.h): nice ticks, their labels, EMA smoothing, run colours.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "metalm/train/plot.h"

namespace metalm::train {
namespace {

// The nice number (1, 2, 5 x 10^k) at or above x > 0 (Heckbert, Graphics Gems I).
double nice_at_least(double x) {
  const double e = std::pow(10.0, std::floor(std::log10(x)));
  const double f = x / e;
  return (f <= 1 + 1e-9 ? 1 : f <= 2 + 1e-9 ? 2 : f <= 5 + 1e-9 ? 5 : 10) * e;
}

// The nice number below a nice step: 10 -> 5 -> 2.5 -> 2 -> 1.
double nice_below(double step) {
  const double e = std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  const double m = step / e;
  return (m > 4 ? 2.5 : m > 2.2 ? 2 : m > 1.5 ? 1 : 0.5) * e;
}

std::vector<double> linear_ticks(double lo, double hi, int max_ticks) {
  if (!(hi > lo) || max_ticks < 2) return {};
  const auto first = [&](double step) { return std::ceil(lo / step - 1e-9); };
  const auto count = [&](double step) { return std::floor(hi / step + 1e-9) - first(step) + 1; };
  // A step of at least range / (max_ticks - 1) gives at most max_ticks ticks; where that
  // leaves fewer than three (-3.7..-0.4 by 2s: only -2), a finer step that still fits, and
  // never a lone tick (0.013..0.913 in at most 3: 0.25, 0.5, 0.75 rather than 0.5 alone).
  double step = nice_at_least((hi - lo) / (max_ticks - 1));
  while (count(step) < std::min(3, max_ticks) && count(nice_below(step)) <= max_ticks)
    step = nice_below(step);
  while (count(step) < 2) step = nice_below(step);
  std::vector<double> ticks;
  for (double k = first(step), n = count(step); n-- > 0; ++k) ticks.push_back(k == 0 ? 0.0 : k * step);
  return ticks;
}

std::vector<double> log_ticks(double lo, double hi, int max_ticks) {
  if (!(lo > 0) || !(hi > lo)) return {};
  const double e0 = std::floor(std::log10(lo)), e1 = std::floor(std::log10(hi));
  // Whole decades, every stride-th, when there are three or more of them.
  std::vector<double> decades;
  for (double e = e0; e <= e1; ++e)
    if (std::pow(10.0, e) >= lo * (1 - 1e-12)) decades.push_back(e);
  if (decades.size() >= 3) {
    const auto stride = static_cast<int64_t>(
        std::ceil(static_cast<double>(decades.size()) / std::max(max_ticks, 1)));
    std::vector<double> ticks;
    for (double e : decades)
      if (static_cast<int64_t>(e) % stride == 0) ticks.push_back(std::pow(10.0, e));
    return ticks;
  }
  // Within a decade or two: 1-2-5 per decade, then every integer mantissa.
  for (const std::vector<double>& mantissas :
       {std::vector<double>{1, 2, 5}, std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9}}) {
    std::vector<double> ticks;
    for (double e = e0; e <= e1; ++e)
      for (double m : mantissas) {
        const double v = m * std::pow(10.0, e);
        if (v >= lo * (1 - 1e-12) && v <= hi * (1 + 1e-12)) ticks.push_back(v);
      }
    if (ticks.size() >= 3 && static_cast<int>(ticks.size()) <= max_ticks) return ticks;
  }
  return linear_ticks(lo, hi, max_ticks);  // a range too narrow for mantissas
}

// The fewest decimals (at most 10) that print v exactly enough.
int decimals_of(double v) {
  for (int d = 0; d < 10; ++d) {
    const double p = std::pow(10.0, d);
    if (std::fabs(std::round(v * p) / p - v) <= 1e-9 * std::max(1.0, std::fabs(v))) return d;
  }
  return 10;
}

std::string fixed(double v, int decimals, const char* suffix) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f%s", decimals, v, suffix);
  return buf;
}

// Large numbers read as "20k" and "1.5M": the divisor and its suffix for magnitude m.
std::pair<double, const char*> scale_of(double m) {
  if (m >= 1e6) return {1e6, "M"};
  if (m >= 1e4) return {1e3, "k"};
  return {1.0, ""};
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, bool log, int max_ticks) {
  return log ? log_ticks(lo, hi, max_ticks) : linear_ticks(lo, hi, max_ticks);
}

std::vector<std::string> tick_labels(const std::vector<double>& ticks, bool log) {
  std::vector<std::string> labels;
  if (log) {  // each its own: 0.5, 1, 2, 5, 10
    for (double v : ticks) {
      if (v < 1e-3) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3g", v);
        labels.push_back(buf);
        continue;
      }
      const auto [div, suffix] = scale_of(v);
      labels.push_back(fixed(v / div, decimals_of(v / div), suffix));
    }
    return labels;
  }
  double m = 0;  // a linear axis shares one scale and one number of decimals: 1.0, 1.5, 2.0
  for (double v : ticks) m = std::max(m, std::fabs(v));
  const auto [div, suffix] = scale_of(m);
  int decimals = 0;
  for (double v : ticks) decimals = std::max(decimals, decimals_of(v / div));
  for (double v : ticks) labels.push_back(v == 0 ? "0" : fixed(v / div, decimals, suffix));
  return labels;
}

std::vector<double> ema(const std::vector<double>& values, double weight) {
  std::vector<double> out(values.size());
  double s = 0, w_pow = 1;
  for (size_t i = 0; i < values.size(); ++i) {
    s = weight * s + (1 - weight) * values[i];
    w_pow *= weight;
    out[i] = s / (1 - w_pow);
  }
  return out;
}

Rgb run_colour(size_t i) {
  static constexpr Rgb palette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                                    {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127},
                                    {188, 189, 34},  {23, 190, 207}};
  return palette[i % std::size(palette)];
}

}  // namespace metalm::train
