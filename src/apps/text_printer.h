// Streaming generated ids to a terminal as text (metalm generate, metalm chat).
#pragma once
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "metalm/data/tokenizer.h"

namespace metalm::apps {

// Prints ids as they come: pieces decoded together so spaces follow SentencePiece's rules,
// </line> as "\n" and </doc> as a blank line.
class TextPrinter {
 public:
  // line_so_far: the ids of the prompt's unfinished last line, already printed as text.
  TextPrinter(const data::Tokenizer& tok, std::vector<int32_t> line_so_far)
      : tok_(tok), run_(std::move(line_so_far)), printed_(tok.decode(run_).size()) {}
  void add(int64_t id) {
    if (id == tok_.spec().line_end_id || id == tok_.spec().doc_end_id) {
      flush();
      std::fputs(id == tok_.spec().doc_end_id ? "\n\n" : "\n", stdout);
    } else {
      run_.push_back(static_cast<int32_t>(id));
      // Decode the line so far and print what is new (a piece can change how the text before
      // it reads only by its leading space, which decode() handles).
      const std::string text = tok_.decode(run_);
      if (text.size() > printed_) std::fputs(text.c_str() + printed_, stdout);
      printed_ = text.size();
    }
    std::fflush(stdout);
  }
  void flush() {
    run_.clear();
    printed_ = 0;
  }

 private:
  const data::Tokenizer& tok_;
  std::vector<int32_t> run_;
  size_t printed_ = 0;
};

}  // namespace metalm::apps
