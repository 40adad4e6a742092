// Task JSONL, through the strict JSONL reader and a field table.
#include "metalm/data/tasks.h"

#include <algorithm>
#include <filesystem>

#include "metalm/core/error.h"
#include "metalm/io/fields.h"
#include "metalm/io/jsonl.h"

namespace metalm::data {
namespace {

const io::FieldTable<TaskExample>& table() {
  static const io::FieldTable<TaskExample> t(
      "a task example",
      {io::field("task", &TaskExample::task), io::field("input", &TaskExample::input),
       io::field("output", &TaskExample::output), io::field("choices", &TaskExample::choices),
       io::field("answers", &TaskExample::answers)});
  return t;
}

}  // namespace

std::vector<TaskExample> read_task_file(const std::string& path, uint64_t max_bytes) {
  const std::filesystem::path file(path);
  std::string stem = file.stem().string();
  if (stem == "train" || stem == "valid" || stem == "dev" || stem == "test") {
    const std::string folder = std::filesystem::absolute(file).parent_path().filename().string();
    if (!folder.empty()) stem = folder;
  }
  std::vector<TaskExample> out;
  io::JsonlOptions o;
  o.max_file_bytes = max_bytes;
  io::for_each_jsonl(path, "task", o, [&](const io::Json& j, const io::JsonlLine& line) {
    TaskExample e;
    e.task = stem;
    e.line = line.number;
    table().read(j, e, line.where);
    for (const char* f : {"input", "output"})
      if (!j.contains(f)) line.where.fail(f, "missing (every example has an input and an output)");
    if (e.input.empty()) line.where.fail("input", "is empty");
    if (e.output.empty()) line.where.fail("output", "is empty");
    for (const std::string& c : e.choices)
      if (c.empty()) line.where.fail("choices", "a choice is empty");
    if (!e.choices.empty() &&
        std::find(e.choices.begin(), e.choices.end(), e.output) == e.choices.end())
      line.where.fail("output", "\"" + e.output + "\" is not one of the choices");
    auto at = std::find(e.answers.begin(), e.answers.end(), e.output);
    if (at != e.answers.end()) e.answers.erase(at);
    e.answers.insert(e.answers.begin(), e.output);
    out.push_back(std::move(e));
  });
  MLM_CHECK(!out.empty(), ValueError, "[task] ", path, ": no examples");
  return out;
}

}  // namespace metalm::data
