// The strict JSON reader: nlohmann's parser with a callback that tracks the keys of every open
// object (to refuse duplicates) and the depth (to refuse absurd nesting).
#include "metalm/io/json.h"

#include <algorithm>
#include <limits>
#include <unordered_set>
#include <utility>
#include <vector>

#include "metalm/core/error.h"
#include "metalm/core/file.h"

namespace metalm::io {

std::string JsonWhere::prefix() const {
  return source.empty() ? detail::cat("[", op, "] ") : detail::cat("[", op, "] ", source, ": ");
}

JsonWhere JsonWhere::nested(const std::string& sub) const {
  return {op, source, path.empty() ? sub : path + (sub.front() == '[' ? "" : ".") + sub};
}

void JsonWhere::fail(std::string_view field, const std::string& problem) const {
  std::string name = path;
  if (!field.empty()) name += (name.empty() ? "" : ".") + std::string(field);
  if (name.empty()) throw ValueError(prefix() + problem);
  throw ValueError(detail::cat(prefix(), name, ": ", problem));
}

void JsonWhere::format_error(const std::string& problem) const {
  throw FormatError(prefix() + problem);
}

std::string quote(std::string_view s, size_t max_chars) {
  const bool cut = s.size() > max_chars;
  const std::string q = Json(std::string(cut ? s.substr(0, max_chars) : s))
                            .dump(-1, ' ', false, Json::error_handler_t::replace);
  return cut ? q + "..." : q;
}

namespace {
void first_difference_at(const Json& a, const Json& b, const std::string& path,
                         std::string_view here, std::string_view there, std::string& out) {
  auto at = [&](const std::string& key) { return path.empty() ? key : path + "." + key; };
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end() && out.empty(); ++it) {
      if (!b.contains(it.key())) {
        out = detail::cat(at(it.key()), ": ", describe(it.value()), " ", here, ", missing ", there);
        return;
      }
      first_difference_at(it.value(), b[it.key()], at(it.key()), here, there, out);
    }
    for (auto it = b.begin(); it != b.end() && out.empty(); ++it)
      if (!a.contains(it.key()))
        out = detail::cat(at(it.key()), ": missing ", here, ", ", describe(it.value()), " ", there);
    return;
  }
  if (a.is_array() && b.is_array() && a.size() == b.size()) {
    for (size_t i = 0; i < a.size() && out.empty(); ++i)
      first_difference_at(a[i], b[i], detail::cat(path, "[", i, "]"), here, there, out);
    return;
  }
  if (a != b)
    out = detail::cat(path.empty() ? "the value" : path, ": ", describe(a), " ", here, ", ",
                      describe(b), " ", there);
}
}  // namespace

std::string first_difference(const Json& a, const Json& b, std::string_view here,
                             std::string_view there) {
  std::string out;
  first_difference_at(a, b, "", here, there, out);
  return out;
}

std::string describe(const Json& v) {
  if (v.is_null()) return "null";
  if (v.is_structured()) {
    const bool flat = v.size() <= 8 && std::none_of(v.begin(), v.end(), [](const Json& e) {
                        return e.is_structured();
                      });
    if (!flat)
      return detail::cat(v.type_name(), " (", v.size(), v.is_array() ? " element" : " key",
                         v.size() == 1 ? "" : "s", ")");
  }
  std::string d = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (d.size() > 60) d = d.substr(0, 57) + "...";
  return detail::cat(v.type_name(), " ", d);
}

Json parse_json(std::string_view text, const JsonWhere& where, std::string_view what,
                const JsonLimits& limits) {
  if (text.size() > limits.max_bytes)
    where.format_error(detail::cat(text.size(), " bytes is too large for a ", what, " (limit ",
                                   limits.max_bytes, ")"));
  struct Open {
    std::unordered_set<std::string> keys;
    std::string name;  // the key this object is the value of ("" at the top level or in arrays)
  };
  std::vector<Open> open;
  std::string last_key;
  const Json::parser_callback_t on_event = [&](int depth, Json::parse_event_t event,
                                               Json& parsed) {
    if (depth > limits.max_depth)
      where.format_error(detail::cat(what, " nests deeper than ", limits.max_depth, " levels"));
    switch (event) {
      case Json::parse_event_t::object_start:
        open.push_back({{}, std::exchange(last_key, std::string())});
        break;
      case Json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      case Json::parse_event_t::array_start:
        last_key.clear();
        break;
      case Json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!open.empty() && !open.back().keys.insert(key).second)
          where.format_error(detail::cat("duplicate key ", quote(key),
                                         open.size() > 1 && !open.back().name.empty()
                                             ? " in " + quote(open.back().name)
                                             : std::string()));
        last_key = key;
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), on_event);
  } catch (const Json::exception& e) {
    // nlohmann quotes the token it failed on, which can be as long as the input.
    std::string m = e.what();
    if (m.size() > 240) m = m.substr(0, 240) + "...";
    where.format_error(detail::cat(what, " is not valid JSON: ", m));
  }
}

Json load_json_file(const std::string& path, const std::string& op, std::string_view what,
                    const JsonLimits& limits) {
  const std::string text = read_file_bounded(path, limits.max_bytes, op, detail::cat("a ", what));
  return parse_json(text, JsonWhere{op, path}, what, limits);
}

int64_t read_int(const Json& v, std::string_view field, const JsonWhere& where) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      where.fail(field, detail::cat("integer out of range, got ", u));
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  where.fail(field, "expected an integer, got " + describe(v));
}

double read_number(const Json& v, std::string_view field, const JsonWhere& where) {
  if (!v.is_number()) where.fail(field, "expected a number, got " + describe(v));
  return v.get<double>();
}

bool read_bool(const Json& v, std::string_view field, const JsonWhere& where) {
  if (!v.is_boolean()) where.fail(field, "expected true or false, got " + describe(v));
  return v.get<bool>();
}

std::string read_string(const Json& v, std::string_view field, const JsonWhere& where) {
  if (!v.is_string()) where.fail(field, "expected a string, got " + describe(v));
  return v.get<std::string>();
}

void require_object(const Json& v, std::string_view field, const JsonWhere& where) {
  if (!v.is_object()) where.fail(field, "expected a JSON object, got " + describe(v));
}

}  // namespace metalm::io
