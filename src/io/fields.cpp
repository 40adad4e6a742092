// The non-template parts of the config tables: "did you mean" and the unknown-key message.
#include "metalm/io/fields.h"

#include <algorithm>

#include "metalm/core/error.h"

namespace metalm::io {
namespace {

constexpr size_t kMaxUnknownListed = 10;
constexpr size_t kMaxKeyForHint = 120;  // hostile keys: skip the quadratic edit distance

// Optimal string alignment distance: Levenshtein plus adjacent transpositions ("dropuot").
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t k = 0; k <= b.size(); ++k) d[0][k] = k;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t k = 1; k <= b.size(); ++k) {
      const size_t cost = a[i - 1] == b[k - 1] ? 0 : 1;
      d[i][k] = std::min({d[i - 1][k] + 1, d[i][k - 1] + 1, d[i - 1][k - 1] + cost});
      if (i > 1 && k > 1 && a[i - 1] == b[k - 2] && a[i - 2] == b[k - 1])
        d[i][k] = std::min(d[i][k], d[i - 2][k - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// A key as it reads in a message: control characters escaped, cut to 60 characters.
std::string printable(const std::string& key) {
  std::string s = Json(key).dump(-1, ' ', false, Json::error_handler_t::replace);
  s = s.substr(1, s.size() - 2);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

}  // namespace

std::vector<std::string> read_string_list(const Json& v, std::string_view field,
                                          const JsonWhere& where) {
  if (!v.is_array()) where.fail(field, "expected a list of strings, got " + describe(v));
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string())
      where.fail(field, detail::cat("element ", i, ": expected a string, got ", describe(v[i])));
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

std::string one_of(const std::vector<std::string>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) s += i + 1 == names.size() ? " or " : ", ";
    s += "\"" + names[i] + "\"";
  }
  return s;
}

std::string closest_name(const std::string& key, const std::vector<std::string>& names) {
  if (key.size() > kMaxKeyForHint) return "";
  // 3 edits turn any short word into any other: allow fewer for short keys.
  const size_t limit = key.size() >= 10 ? 3 : key.size() >= 5 ? 2 : 1;
  std::string best;
  size_t best_d = limit + 1;
  for (const auto& name : names) {
    const size_t dist = edit_distance(key, name);
    if (dist < best_d) best_d = dist, best = name;
  }
  return best;
}

void fail_unknown_keys(const std::vector<std::string>& unknown,
                       const std::vector<std::string>& names, const JsonWhere& where,
                       const std::function<std::string(const std::string&)>& hint) {
  std::string msg;
  for (size_t i = 0; i < unknown.size() && i < kMaxUnknownListed; ++i) {
    const std::string& key = unknown[i];
    std::string problem = hint ? hint(key) : std::string();
    if (problem.empty()) problem = "unknown field";
    const std::string suggestion = closest_name(key, names);
    if (!suggestion.empty()) problem += detail::cat(" (did you mean ", suggestion, "?)");
    const std::string shown = where.path.empty() ? printable(key) : where.path + "." + printable(key);
    msg += detail::cat(i ? "; " : "", shown, ": ", problem);
  }
  if (unknown.size() > kMaxUnknownListed)
    msg += detail::cat("; and ", unknown.size() - kMaxUnknownListed, " more unknown fields");
  throw ValueError(where.prefix() + msg);
}

}  // namespace metalm::io
