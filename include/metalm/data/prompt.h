// Prompts for the universal task layer, as token ids: plain tokens the decoder reads as they
// are, and docked segments that a bidirectional encoder reads first (MetaLM, reference-spec
// 3.3; infer/prompt.h runs the encoders). A docked
// segment's encoder input is [<s>] + its ids, exactly as semi-causal pretraining built spans;
// its outputs, after the connector, replace the decoder's token embeddings at its positions.
// This one form serves zero-shot prompts, k-shot in-context learning (each demonstration's input
// docked, its label as tokens, demonstrations separated by </s>) and the turns of a chat.
//
// Text markup (CLI, task templates): "{{...}}" docks its text through the model's encoder,
// everything else is plain; "\{{" is a literal "{{". Line breaks become </line> as in the corpus
// pipeline. JSON form: [{"text": "..."}, {"text": "...", "dock": true | "encoder name"}, ...].
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "metalm/io/json.h"

namespace metalm::data {

class Tokenizer;

struct Segment {
  std::vector<int64_t> ids;
  std::string encoder;  // empty: plain tokens; else the docked encoder's name
};

struct Prompt {
  std::vector<Segment> segments;

  Prompt& plain(std::vector<int64_t> ids);
  Prompt& docked(std::vector<int64_t> ids, std::string encoder);
  Prompt& append(const Prompt& other);
  int64_t size() const;              // tokens over all segments
  std::vector<int64_t> ids() const;  // every segment's ids in order
  bool has_docked() const;
};

// Text of one line or several to ids: each line's SentencePiece ids, lines joined by </line>
// (the corpus pipeline's form; a trailing unfinished line gets none).
std::vector<int64_t> encode_lines(const data::Tokenizer& tok, std::string_view text);

// The inverse: ids to text, </line> as a line break (each line's pieces decoded together so
// spaces follow SentencePiece's rules).
std::string decode_lines(const Tokenizer& tok, const std::vector<int64_t>& ids);
// The ids generated text never holds: <s>, <pad>, <unk> (printed as ⁇), <mask>, <image>,
// </image> (those the tokenizer has). Decoding bans them.
std::vector<int64_t> non_text_ids(const Tokenizer& tok);

// The markup to a prompt, docked segments through `encoder`. With `bos`, the prompt starts with
// <s> (a document's start, as in pretraining). Unbalanced braces are an error naming the offset.
Prompt parse_prompt(const data::Tokenizer& tok, std::string_view markup,
                    const std::string& encoder, bool bos = true);
// The JSON form (an array of segments, or a string holding markup); `where` names the source in
// errors. "dock": true docks through `encoder`; unknown fields are refused.
Prompt parse_prompt_json(const data::Tokenizer& tok, const io::Json& value,
                         const std::string& encoder, const io::JsonWhere& where, bool bos = true);

// A task's prompt form: `text` holds "{input}" once, where an example's input goes (docked
// through the encoder when dock_input and the model has one; else plain tokens); the answer
// follows the rendered text as plain tokens. Line breaks become </line>.
struct PromptTemplate {
  std::string text = "{input}";
  bool dock_input = true;
  int64_t max_input_tokens = 0;  // > 0: an input's ids are cut to this many (its beginning)
};

// The template with `input` in place (no <s>); `encoder` "" renders the input plain.
Prompt render_template(const data::Tokenizer& tok, const PromptTemplate& tmpl,
                       std::string_view input, const std::string& encoder);
// k-shot in-context learning (MetaLM's form): <s>, then every demonstration rendered with its
// output after it and </s>, then the query rendered (its answer is what the model produces).
Prompt few_shot_prompt(const data::Tokenizer& tok, const PromptTemplate& tmpl,
                       const std::vector<std::pair<std::string, std::string>>& demonstrations,
                       std::string_view query, const std::string& encoder);

}  // namespace metalm::data
