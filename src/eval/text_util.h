// Byte-level text helpers the metrics share, matching what their Python references do on ASCII:
// str.split() whitespace, str.strip(), string.punctuation, and \w (bytes >= 0x80 count as word
// characters, as the letters of UTF-8 text do for Python's re).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace metalm::eval {

// Python's str.split() whitespace in the ASCII range: \t \n \v \f \r, \x1c-\x1f and space.
inline bool is_py_space(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == ' ' || (u >= 0x09 && u <= 0x0d) || (u >= 0x1c && u <= 0x1f);
}
inline bool is_ascii_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_ascii_alnum(char c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
// Python's string.punctuation: every printable ASCII character that is not alphanumeric.
inline bool is_ascii_punct(char c) { return c > ' ' && c < 0x7f && !is_ascii_alnum(c); }
inline bool is_word_byte(char c) {
  return is_ascii_alnum(c) || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}
inline char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

inline std::vector<std::string> split_whitespace(std::string_view s) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_py_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_py_space(s[j])) ++j;
    if (j > i) words.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return words;
}

inline std::string join(const std::vector<std::string>& words, char sep) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i) out += sep;
    out += words[i];
  }
  return out;
}

inline std::string_view strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_py_space(s[b])) ++b;
  while (e > b && is_py_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

}  // namespace metalm::eval
