// The one strict JSON reader. Every JSON the project reads comes through here: config files,
// safetensors headers, token files, and (later) JSONL corpora, task files and HTTP bodies.
// Strict means: a size cap and a depth cap checked before and while parsing, and a key given twice
// in one object rejected (nlohmann::json would silently keep the last one, and a config that says
// "decoder_layers" twice is ambiguous to whoever reads it). Errors name the operation, the source
// (file path) and, where there is one, the field: "[config] runs/gpt/config.json: dropout: must
// be in [0, 1), got 1.5".
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

namespace metalm::io {

using Json = nlohmann::json;

struct JsonLimits {
  uint64_t max_bytes = 1 << 20;  // text longer than this is refused before parsing
  int max_depth = 64;            // nesting deeper than this is refused while parsing
};

// Where a JSON value came from, for error messages: "[op] source: field: problem".
struct JsonWhere {
  JsonWhere(std::string op_, std::string source_ = "", std::string path_ = "")
      : op(std::move(op_)), source(std::move(source_)), path(std::move(path_)) {}
  std::string op;      // "config", "safetensors", "forward"
  std::string source;  // a file path, or "" for JSON built in memory
  std::string path;    // where a nested value sits ("encoders[0].config"), "" at the top

  std::string prefix() const;  // "[op] source: " or "[op] "
  // The same source, one level down: fields are then named "<path>.<sub>.<field>".
  JsonWhere nested(const std::string& sub) const;
  // Throws ValueError "[op] source: path.field: problem" (field may be empty).
  [[noreturn]] void fail(std::string_view field, const std::string& problem) const;
  // Throws FormatError "[op] source: problem".
  [[noreturn]] void format_error(const std::string& problem) const;
};

// Parses `text` (`what` names it in messages: "header", "config file"). FormatError for text
// over the size cap, invalid JSON ("<what> is not valid JSON: ..."), nesting over the depth cap,
// and a duplicate key ("duplicate key \"k\"", plus ` in "parent"` below the top level).
Json parse_json(std::string_view text, const JsonWhere& where, std::string_view what,
                const JsonLimits& limits = {});
// Reads the file (at most limits.max_bytes, core::read_file_bounded) and parses it; the file
// path becomes where.source.
Json load_json_file(const std::string& path, const std::string& op, std::string_view what,
                    const JsonLimits& limits = {});

// A string for a message: JSON-quoted (control characters escaped, invalid UTF-8 replaced) and
// cut to max_chars with "...", so that a message stays one line whatever the input holds.
std::string quote(std::string_view s, size_t max_chars = 60);
// A JSON value for a message: its type and a short rendering ("string \"x\"", "array (3
// elements)"); nested or long values are only counted.
std::string describe(const Json& v);
// Where two values first differ, for a message: "decoder.decoder_layers: 3 here, 2 there"
// (named by `here` and `there`), "encoders[0].name: missing there"; "" when they are equal.
std::string first_difference(const Json& a, const Json& b, std::string_view here = "here",
                             std::string_view there = "there");

// Typed field readers: "[op] source: field: expected an integer, got string \"8\"".
int64_t read_int(const Json& v, std::string_view field, const JsonWhere& where);
double read_number(const Json& v, std::string_view field, const JsonWhere& where);
bool read_bool(const Json& v, std::string_view field, const JsonWhere& where);
std::string read_string(const Json& v, std::string_view field, const JsonWhere& where);
// v must be an object (the whole document or a nested one).
void require_object(const Json& v, std::string_view field, const JsonWhere& where);

}  // namespace metalm::io
