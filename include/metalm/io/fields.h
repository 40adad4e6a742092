// Declarative config tables: a config struct lists its fields once (JSON name, member, and how
// to read and write it), and the reader, the writer, the unknown-key check with its "did you
// mean" hint come from that list. Every config (the TorchScale stacks, the composite models,
// training and data settings) declares a table instead of writing a parser.
//
//   const io::FieldTable<Sched>& table() {
//     static const io::FieldTable<Sched> t("a schedule", {
//         io::field("warmup", &Sched::warmup), io::field("kind", &Sched::kind, kKindNames)});
//     return t;
//   }
//   Sched s;  table().read(json, s, where);   json = table().write(s);
//
// Defaults are the struct's member initialisers; cross-field validation stays with the struct.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "metalm/io/json.h"

namespace metalm::io {

// Names of an enum's values; the first name listed for a value is the one written.
template <typename E>
using EnumNames = std::vector<std::pair<E, const char*>>;

template <typename C>
struct Field {
  std::string name;
  std::function<void(C&, const Json&, const JsonWhere&)> read;  // throws naming `name`
  std::function<Json(const C&)> write;
};

template <typename C>
Field<C> field(const char* name, int64_t C::*m) {
  return {name, [=](C& c, const Json& v, const JsonWhere& w) { c.*m = read_int(v, name, w); },
          [=](const C& c) { return Json(c.*m); }};
}
template <typename C>
Field<C> field(const char* name, bool C::*m) {
  return {name, [=](C& c, const Json& v, const JsonWhere& w) { c.*m = read_bool(v, name, w); },
          [=](const C& c) { return Json(c.*m); }};
}
template <typename C>
Field<C> field(const char* name, double C::*m) {
  return {name, [=](C& c, const Json& v, const JsonWhere& w) { c.*m = read_number(v, name, w); },
          [=](const C& c) { return Json(c.*m); }};
}
template <typename C>
Field<C> field(const char* name, std::string C::*m) {
  return {name, [=](C& c, const Json& v, const JsonWhere& w) { c.*m = read_string(v, name, w); },
          [=](const C& c) { return Json(c.*m); }};
}

// A list of strings ("choices": ["yes", "no"]).
std::vector<std::string> read_string_list(const Json& v, std::string_view field,
                                          const JsonWhere& where);
template <typename C>
Field<C> field(const char* name, std::vector<std::string> C::*m) {
  return {name,
          [=](C& c, const Json& v, const JsonWhere& w) { c.*m = read_string_list(v, name, w); },
          [=](const C& c) { return Json(c.*m); }};
}

// "expected \"a\", \"b\" or \"c\"" for a message.
std::string one_of(const std::vector<std::string>& names);

// An enum read from and written as one of its names (E is deduced from the names, so a member
// of a base of C converts).
template <typename C, typename E>
Field<C> field(const char* name, std::type_identity_t<E C::*> m, const EnumNames<E>& names) {
  return {name,
          [=](C& c, const Json& v, const JsonWhere& w) {
            const std::string s = read_string(v, name, w);
            std::vector<std::string> all;
            for (const auto& [value, n] : names) {
              if (s == n) {
                c.*m = value;
                return;
              }
              all.emplace_back(n);
            }
            w.fail(name, "expected " + one_of(all) + ", got " + quote(s));
          },
          [=](const C& c) {
            for (const auto& [value, n] : names)
              if (value == c.*m) return Json(n);
            return Json(nullptr);
          }};
}

// The name closest to `key` among `names` if it is a plausible typo (up to 3 edits for long
// names, fewer for short ones), else "".
std::string closest_name(const std::string& key, const std::vector<std::string>& names);

template <typename C>
class FieldTable {
 public:
  // kind names the config in messages ("a decoder config").
  FieldTable(std::string kind, std::vector<Field<C>> fields)
      : kind_(std::move(kind)), fields_(std::move(fields)) {}

  const std::string& kind() const { return kind_; }
  const std::vector<Field<C>>& fields() const { return fields_; }
  const Field<C>* find(std::string_view name) const {
    for (const auto& f : fields_)
      if (f.name == name) return &f;
    return nullptr;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto& f : fields_) n.push_back(f.name);
    return n;
  }

  // Sets the fields of `cfg` that j (an object) gives. Keys in `reserved` are the caller's
  // (e.g. "model_type") and skipped. Unknown keys fail together, each with its closest name;
  // hint(key) may add a sentence for a key known elsewhere ("a decoder field, not valid in ...").
  void read(const Json& j, C& cfg, const JsonWhere& where,
            const std::vector<std::string>& reserved = {},
            const std::function<std::string(const std::string&)>& hint = {}) const {
    require_object(j, "", where);
    check_unknown(j, where, reserved, hint);
    for (const auto& [key, value] : j.items())
      if (const Field<C>* f = find(key)) f->read(cfg, value, where);
  }

  // Every field, in table order.
  Json write(const C& cfg) const {
    Json j = Json::object();
    for (const auto& f : fields_) j[f.name] = f.write(cfg);
    return j;
  }

 private:
  void check_unknown(const Json& j, const JsonWhere& where, const std::vector<std::string>& reserved,
                     const std::function<std::string(const std::string&)>& hint) const;

  std::string kind_;
  std::vector<Field<C>> fields_;
};

// The unknown-key message, out of line: "a: unknown field (did you mean b?); c: ...".
void fail_unknown_keys(const std::vector<std::string>& unknown, const std::vector<std::string>& names,
                       const JsonWhere& where,
                       const std::function<std::string(const std::string&)>& hint);

template <typename C>
void FieldTable<C>::check_unknown(const Json& j, const JsonWhere& where,
                                  const std::vector<std::string>& reserved,
                                  const std::function<std::string(const std::string&)>& hint) const {
  std::vector<std::string> unknown;
  for (const auto& [key, value] : j.items()) {
    if (find(key) != nullptr) continue;
    bool is_reserved = false;
    for (const auto& r : reserved) is_reserved = is_reserved || r == key;
    if (!is_reserved) unknown.push_back(key);
  }
  if (unknown.empty()) return;
  std::vector<std::string> candidates = names();
  candidates.insert(candidates.end(), reserved.begin(), reserved.end());
  fail_unknown_keys(unknown, candidates, where, hint);
}

}  // namespace metalm::io
