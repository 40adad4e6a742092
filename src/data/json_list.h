// Internal to data: a FieldTable field holding a list of structs, each read and written by its
// own table (the manifest's files and shards, the loader state's sources).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "metalm/io/fields.h"

namespace metalm::data {

template <typename C, typename E>
io::Field<C> list_field(const char* name, std::vector<E> C::*m,
                        const io::FieldTable<E>& (*table)()) {
  return {name,
          [=](C& c, const io::Json& v, const io::JsonWhere& w) {
            if (!v.is_array()) w.fail(name, "expected an array, got " + io::describe(v));
            std::vector<E> out;
            out.reserve(v.size());
            for (size_t i = 0; i < v.size(); ++i) {
              E e;
              table().read(v[i], e, w.nested(std::string(name) + "[" + std::to_string(i) + "]"));
              out.push_back(std::move(e));
            }
            c.*m = std::move(out);
          },
          [=](const C& c) {
            io::Json a = io::Json::array();
            for (const E& e : c.*m) a.push_back(table().write(e));
            return a;
          }};
}

}  // namespace metalm::data
