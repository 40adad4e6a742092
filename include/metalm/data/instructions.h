// Instruction templates for fine-tuning (FLAN-style, issue 9 item 4): per task several prompt
// forms, one drawn per example, and "turned around" forms that ask for the input given the
// label. A templates file (JSON), every field optional:
//   {"spam": {"cluster": "classification",
//             "templates": ["Message: {input}\nSpam or ham?", "{input}\nIs this message spam?"],
//             "turned": ["Write a message that is {output}:"]},
//    "austen": {...}}
// templates hold "{input}" once, turned forms "{output}" once. A task the file does not name
// uses "{input}" and its own name as its cluster; clusters are what instruction tuning holds out.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "metalm/data/tasks.h"

namespace metalm::data {

class Tokenizer;

struct TaskTemplates {
  std::string cluster;
  std::vector<std::string> templates = {"{input}"}, turned;
};

// The file's tasks; errors name the file and the field.
std::map<std::string, TaskTemplates> read_templates(const std::string& path);
// The templates of `task` (the default when the map has none).
TaskTemplates templates_of(const std::map<std::string, TaskTemplates>& all, const std::string& task);

// One example as a training sequence: <s> + prompt + answer + </s>. docked[i]: ids[i] passes
// through `encoder` (the rendered input when dock_input and encoder is set). The loss scores the
// answer and </s>: the targets ids[answer_begin ..].
struct TrainingSequence {
  std::vector<int64_t> ids;
  std::vector<uint8_t> docked;
  int64_t answer_begin = 0;
};

struct RenderOptions {
  std::string encoder;           // "" (a GPT): inputs are plain tokens
  bool dock_input = true;
  int64_t max_input_tokens = 0;  // > 0: the input's ids are cut to this many
  int64_t max_tokens = 0;        // > 0: the answer is cut (keeping </s>) so the whole fits
};

// `form` holds "{input}"; turned: it holds "{output}" instead, and the roles swap (the label is
// rendered, the input is the answer).
TrainingSequence render_training_example(const Tokenizer& tok, const std::string& form,
                                         bool turned, const TaskExample& example,
                                         const RenderOptions& options);

}  // namespace metalm::data
