// Templates files and training sequences.
#include "metalm/data/instructions.h"

#include "metalm/core/error.h"
#include "metalm/data/prompt.h"
#include "metalm/data/tokenizer.h"
#include "metalm/io/fields.h"
#include "metalm/io/json.h"

namespace metalm::data {

std::map<std::string, TaskTemplates> read_templates(const std::string& path) {
  const io::Json j = io::load_json_file(path, "templates", "templates file");
  const io::JsonWhere where("templates", path);
  io::require_object(j, "", where);
  static const io::FieldTable<TaskTemplates> table(
      "a task's templates", {io::field("cluster", &TaskTemplates::cluster),
                             io::field("templates", &TaskTemplates::templates),
                             io::field("turned", &TaskTemplates::turned)});
  std::map<std::string, TaskTemplates> out;
  for (const auto& [task, value] : j.items()) {
    const io::JsonWhere at = where.nested(task);
    TaskTemplates t;
    t.cluster = task;
    table.read(value, t, at);
    if (t.templates.empty() && t.turned.empty()) at.fail("templates", "no templates");
    for (const std::string& s : t.templates)
      if (s.find("{input}") == std::string::npos || s.find("{input}") != s.rfind("{input}"))
        at.fail("templates", "\"" + s + "\" must hold {input} exactly once");
    for (const std::string& s : t.turned) {
      if (s.find("{output}") == std::string::npos || s.find("{output}") != s.rfind("{output}"))
        at.fail("turned", "\"" + s + "\" must hold {output} exactly once");
      if (s.find("{input}") != std::string::npos)
        at.fail("turned", "\"" + s + "\" holds {input}: a turned form asks for the input");
    }
    for (const std::string& s : t.templates)
      if (s.find("{output}") != std::string::npos)
        at.fail("templates", "\"" + s + "\" holds {output}: the output is what is asked for");
    out[task] = t;
  }
  return out;
}

TaskTemplates templates_of(const std::map<std::string, TaskTemplates>& all, const std::string& task) {
  auto it = all.find(task);
  if (it != all.end()) return it->second;
  TaskTemplates t;
  t.cluster = task;
  return t;
}

TrainingSequence render_training_example(const Tokenizer& tok, const std::string& form,
                                         bool turned, const TaskExample& ex,
                                         const RenderOptions& o) {
  std::string text = form;
  if (turned) {
    const size_t at = text.find("{output}");
    MLM_CHECK(at != std::string::npos, ValueError, "[finetune] the turned template \"", form,
              "\" has no {output}");
    text.replace(at, 8, "{input}");
  }
  PromptTemplate tmpl{text, o.dock_input, o.max_input_tokens};
  Prompt p;
  p.plain({tok.bos_id()});
  p.append(render_template(tok, tmpl, turned ? ex.output : ex.input, o.encoder));
  TrainingSequence s;
  for (const Segment& seg : p.segments) {
    s.ids.insert(s.ids.end(), seg.ids.begin(), seg.ids.end());
    s.docked.insert(s.docked.end(), seg.ids.size(), seg.encoder.empty() ? 0 : 1);
  }
  s.answer_begin = static_cast<int64_t>(s.ids.size());
  std::vector<int64_t> answer = encode_lines(tok, turned ? ex.input : ex.output);
  if (o.max_tokens > 0) {
    const int64_t room = o.max_tokens - s.answer_begin - 1;  // </s> always fits
    MLM_CHECK(room >= 1, ValueError, "[finetune] task ", ex.task, " line ", ex.line,
              ": the prompt alone has ", s.answer_begin, " tokens; a sequence holds ",
              o.max_tokens);
    if (static_cast<int64_t>(answer.size()) > room) answer.resize(static_cast<size_t>(room));
  }
  answer.push_back(tok.eos_id());
  s.ids.insert(s.ids.end(), answer.begin(), answer.end());
  s.docked.insert(s.docked.end(), answer.size(), 0);
  return s;
}

}  // namespace metalm::data
