// `metalm chat`: a conversation in the terminal with a model directory's decoder. The history
// stays in one KV cache (infer::ChatSession): each turn costs only its own tokens. On a terminal
// the input line has editing and history (libedit); piped input is read line by line, so the
// command also scripts. Replies stream as they are generated.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <editline/readline.h>

#include "apps/common.h"
#include "apps/text_printer.h"
#include "metalm/core/error.h"
#include "metalm/data/tokenizer.h"
#include "metalm/infer/chat.h"
#include "metalm/infer/prompt.h"
#include "metalm/models/model_dir.h"

namespace metalm::apps {
namespace {

struct ChatCliOptions {
  CommonOptions common;
  std::string model, system, user_prefix = "User: ", assistant_prefix = "Assistant:";
  int64_t max_new_tokens = 64, top_k = 0;
  double temperature = 0.7, top_p = 0.9;
  bool multiline = false;
};

// One input line: from libedit on a terminal (with history), else from stdin.
bool read_line(bool tty, std::string& line) {
  if (!tty) return static_cast<bool>(std::getline(std::cin, line));
  char* raw = readline("> ");
  if (raw == nullptr) return false;  // Ctrl-D
  line = raw;
  std::free(raw);
  if (!line.empty()) add_history(line.c_str());
  return true;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

int run_chat(const ChatCliOptions& o) {
  const data::Tokenizer tok = data::Tokenizer::load(o.model);
  std::unique_ptr<models::Model> model = models::load_model(o.model, o.common.seed);
  prepare_for_inference(*model, o.common);
  infer::ChatSession chat(*model, tok.bos_id());
  const std::string encoder = infer::default_encoder(*model);
  infer::GenerateOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.temperature = o.temperature;
  g.top_k = o.top_k;
  g.top_p = o.top_p;
  const auto& sp = tok.spec();
  g.stop_ids = {tok.eos_id()};
  if (sp.doc_end_id >= 0) g.stop_ids.push_back(sp.doc_end_id);
  if (!o.multiline && sp.line_end_id >= 0) g.stop_ids.push_back(sp.line_end_id);
  g.banned_ids = infer::non_text_ids(tok);
  const bool tty = ::isatty(0) == 1 && ::isatty(1) == 1;
  if (tty)
    std::printf("metalm chat with %s (%s, %lld positions). /reset starts over, /exit or Ctrl-D "
                "quits.%s\n",
                o.model.c_str(), model->model_config().model_type.c_str(),
                static_cast<long long>(chat.room()),
                encoder.empty() ? "" : " {{text}} passes text through the encoder.");
  bool line_start = true;  // the history is empty or ends with a line break
  uint64_t turns = 0;
  std::string line;
  while (read_line(tty, line)) {
    line = trim(line);
    if (line.empty()) continue;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      chat.reset();
      line_start = true;
      std::printf("(conversation reset)\n");
      continue;
    }
    if (line[0] == '/') {
      std::printf("(unknown command %s: /reset or /exit)\n", line.c_str());
      continue;
    }
    g.seed = o.common.seed + turns++;
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool first = chat.history().empty();
      std::string text = first && !o.system.empty() ? o.system + "\n" : "";
      if (!line_start && !first) text += "\n";
      text += o.user_prefix + line + "\n" + o.assistant_prefix;
      try {
        const infer::Prompt p = infer::parse_prompt(tok, text, encoder, first);
        // The reply's first piece loses its leading space when decoded: the label keeps one.
        if (tty) std::printf("%s ", o.assistant_prefix.c_str());
        TextPrinter out(tok, {});
        const std::vector<int64_t> reply = chat.turn(p, g, [&](int64_t id) {
          if (id != tok.eos_id()) out.add(id);
        });
        line_start = !reply.empty() && reply.back() == sp.line_end_id;
        if (!line_start) std::printf("\n");
        std::fflush(stdout);
        break;
      } catch (const ValueError& e) {
        const std::string msg = e.what();
        if (attempt == 0 && !first && msg.find("reset") != std::string::npos) {
          std::printf("(the conversation filled the model's context: starting over)\n");
          chat.reset();
          line_start = true;
          continue;
        }
        std::printf("(error: %s)\n", msg.c_str());  // a bad turn does not end the session
        break;
      }
    }
  }
  return 0;
}

}  // namespace

Command add_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "chat",
      "Talk with a model directory's decoder in the terminal; the history stays in one cache.\n"
      "Each turn is '<user prefix><your line>\\n<assistant prefix>'; the reply streams until\n"
      "the end of its line. With a MetaLM, {{text}} in a line passes through its encoder.\n"
      "Example: metalm chat --model runs/metalm --temperature 0.7");
  add_common(cmd, o->common);
  add_precision(cmd, o->common);
  add_weights_dtype(cmd, o->common);
  cmd->add_option("--model", o->model, "model directory (config, weights, tokenizer)")->required();
  cmd->add_option("--system", o->system, "text read before the first turn");
  cmd->add_option("--user-prefix", o->user_prefix, "what each of your lines starts with")->capture_default_str();
  cmd->add_option("--assistant-prefix", o->assistant_prefix, "what each reply follows")->capture_default_str();
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "longest reply")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--temperature", o->temperature, "0: greedy; else sample from softmax(logits / t)")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", o->top_k, "sample among the k most likely (0: all)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", o->top_p, "sample among the most likely ids whose probabilities reach p")->capture_default_str()->check(CLI::Range(1e-6, 1.0));
  cmd->add_flag("--multiline", o->multiline, "replies go on past a line break (until </s> or the length limit)");
  return {cmd, &o->common, [o] { return run_chat(*o); }};
}

}  // namespace metalm::apps
