// Task files (DESIGN section 4): JSONL, one example per line, read by `metalm eval` and
// `metalm finetune`:
//   {"input": "...", "output": "...", "choices": [...]?, "answers": [...]?, "task": "..."?}
// input and output are required and non-empty. choices: the candidates of a multiple-choice
// task, output among them (scored by log-likelihood, reported as accuracy). answers: every
// acceptable output (output included or added), for exact match, F1 and the caption metrics.
// task: the task's name, for multitask files (default: the file's stem, or for a split file
// named train, valid, dev or test, its folder's name: data/tasks/spam/test.jsonl is task
// "spam"). Unknown fields are refused, naming the line, so a typo never silently drops a field.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace metalm::data {

struct TaskExample {
  std::string task, input, output;
  std::vector<std::string> choices, answers;  // answers always holds output (first) after reading
  int64_t line = 0;                           // 1-based line in its file
};

// Every example of `path` (a file of at most max_bytes); an empty file is an error.
std::vector<TaskExample> read_task_file(const std::string& path, uint64_t max_bytes = 1ull << 30);

}  // namespace metalm::data
