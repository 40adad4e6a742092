// `metalm generate`: text from a model directory's decoder (a GPT, or the task layer of a
// MetaLM) and its tokenizer. A prompt's lines are encoded as the corpus pipeline encodes them
// (each line ends with </line>), so a model continues text the way it saw it in pretraining;
// </line> and </doc> print as a line break and a blank line. "{{...}}" in the prompt (or
// "dock" segments of --prompt-json) pass through MetaLM's encoder (infer/prompt.h).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "apps/common.h"
#include "apps/text_printer.h"
#include "metalm/data/tokenizer.h"
#include "metalm/infer/beam.h"
#include "metalm/infer/generate.h"
#include "metalm/infer/prompt.h"
#include "metalm/io/json.h"
#include "metalm/models/metalm.h"
#include "metalm/models/model_dir.h"
#include "metalm/models/stack.h"

namespace metalm::apps {
namespace {

namespace fs = std::filesystem;

struct GenerateCliOptions {
  CommonOptions common;
  std::vector<std::string> stops;
  std::string model, prompt, prompt_json;
  int64_t max_new_tokens = 80, top_k = 0, samples = 1, beam = 0, no_repeat_ngram = 0;
  double temperature = 0.8, length_penalty = 1.0, top_p = 1.0;
  bool stop_at_doc = true;
};

int run_generate(const GenerateCliOptions& o) {
  const data::Tokenizer tok = data::Tokenizer::load(o.model);
  std::unique_ptr<models::Model> model = models::load_model(o.model, o.common.seed);
  prepare_for_inference(*model, o.common);
  models::Decoder* decoder = &infer::task_decoder(*model);
  MLM_CHECK(decoder->stack_config().vocab_size == tok.vocab_size(), ValueError, "[generate] ",
            o.model, ": the decoder has vocab_size ", decoder->stack_config().vocab_size,
            " but its tokenizer ", tok.vocab_size(), " ids");
  const std::string encoder = infer::default_encoder(*model);
  const io::Json json_prompt =
      o.prompt_json.empty() ? io::Json() : io::load_json_file(o.prompt_json, "generate", "prompt");
  const infer::Prompt parsed =
      o.prompt_json.empty() ? infer::parse_prompt(tok, o.prompt, encoder)
                            : infer::parse_prompt_json(tok, json_prompt, encoder,
                                                       io::JsonWhere("generate", o.prompt_json));
  const infer::DecoderPrompt prompt = infer::prepare_prompt(*model, parsed, tok.bos_id());
  MLM_CHECK(prompt.size() < decoder->stack_config().max_positions ||
                (!prompt.docked() && o.beam == 0),
            ValueError, "[generate] the prompt is ", prompt.size(), " tokens; the model reads at "
            "most ", decoder->stack_config().max_positions);
  // What the prompt prints as: the markup as given, or the JSON's texts (docked ones in braces).
  std::string shown = o.prompt;
  if (!o.prompt_json.empty()) {
    const io::Json& j = json_prompt;
    shown = j.is_string() ? j.get<std::string>() : "";
    if (j.is_array())
      for (const io::Json& seg : j) {
        const bool docked = seg.contains("dock") && seg["dock"] != false;
        const std::string text = seg["text"].get<std::string>();
        shown += docked ? "{{" + text + "}}" : text;
      }
  }
  infer::GenerateOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.temperature = o.temperature;
  g.top_k = o.top_k;
  g.top_p = o.top_p;
  g.slide_keep = decoder->stack_config().max_positions / 2;
  g.stop_ids = {tok.eos_id()};
  if (o.stop_at_doc && tok.spec().doc_end_id >= 0) g.stop_ids.push_back(tok.spec().doc_end_id);
  MLM_CHECK(o.stops.empty() || o.beam == 0, ValueError,
            "[generate] --stop works with greedy and sampled generation, not with --beam");
  for (const std::string& s : o.stops)
    MLM_CHECK(!s.empty(), ValueError, "[generate] --stop: an empty stop string");
  if (!o.stops.empty())
    g.stop_when = [&](const std::vector<int64_t>& ids) {
      const std::string text = infer::decode_lines(tok, ids);
      for (const std::string& s : o.stops)
        if (text.find(s) != std::string::npos) return true;
      return false;
    };
  g.banned_ids = infer::non_text_ids(tok);  // never in generated text (<unk> prints as ⁇)
  std::vector<int32_t> prompt_line;  // the prompt's ids after its last </line> (not <s>)
  for (size_t i = prompt.tokens.size(); i-- > 1 && prompt.tokens[i] != tok.spec().line_end_id;)
    prompt_line.insert(prompt_line.begin(), static_cast<int32_t>(prompt.tokens[i]));
  if (o.beam > 0) {
    infer::BeamOptions b;
    b.beam = o.beam;
    b.length_penalty = o.length_penalty;
    b.no_repeat_ngram = o.no_repeat_ngram;
    // Documents of our corpora end with </doc> (the LM has not seen </s> end one).
    const int64_t doc = tok.spec().doc_end_id;
    b.eos_id = o.stop_at_doc && doc >= 0 ? doc : tok.eos_id();
    for (const int64_t id : g.banned_ids)
      if (id != b.eos_id) b.banned_ids.push_back(id);
    const int64_t room = decoder->stack_config().max_positions - prompt.size() - 1;
    MLM_CHECK(room >= 1, ValueError, "[generate] the prompt is ", prompt.size(), " tokens: no "
              "room for --beam in the model's ", decoder->stack_config().max_positions, " positions");
    b.max_new_tokens = std::min(o.max_new_tokens, room);
    if (b.max_new_tokens < o.max_new_tokens)
      std::fprintf(stderr, "[generate] --beam: at most %lld new tokens fit the context\n",
                   static_cast<long long>(b.max_new_tokens));
    const std::vector<infer::Hypothesis> hyps = infer::beam_search(*decoder, prompt, b);
    for (size_t h = 0; h < hyps.size(); ++h) {
      std::printf("--- beam %zu: score %.4f (log-prob %.4f over %zu tokens) ---\n", h + 1,
                  hyps[h].score, hyps[h].sum_logprob, hyps[h].tokens.size());
      std::fputs(shown.c_str(), stdout);
      TextPrinter out(tok, prompt_line);
      for (const int64_t id : hyps[h].tokens)
        if (id != b.eos_id) out.add(id);
      std::printf("\n");
    }
    return 0;
  }
  for (int64_t s = 0; s < o.samples; ++s) {
    if (o.samples > 1) std::printf("--- sample %lld ---\n", static_cast<long long>(s + 1));
    std::fputs(shown.c_str(), stdout);
    TextPrinter out(tok, prompt_line);
    g.seed = o.common.seed + static_cast<uint64_t>(s);
    infer::generate(*decoder, prompt, g, [&](int64_t id) { out.add(id); });
    std::printf("\n");
  }
  return 0;
}

}  // namespace

Command add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "generate",
      "Continue a prompt with a model directory's decoder (a GPT or a MetaLM) and tokenizer.\n"
      "Example: metalm generate --model runs/metalm --prompt 'And God said' --samples 3\n"
      "         metalm generate --model runs/metalm --prompt '{{In the beginning}} And God said'");
  add_common(cmd, o->common);
  add_precision(cmd, o->common);
  add_weights_dtype(cmd, o->common);
  cmd->add_option("--model", o->model, "model directory (config, weights, tokenizer)")->required();
  cmd->add_option("--prompt", o->prompt, "text to continue (\\n for line breaks); with a MetaLM, {{text}} passes through its encoder")->capture_default_str();
  cmd->add_option("--prompt-json", o->prompt_json, "the prompt as a JSON file: [{\"text\": ...}, {\"text\": ..., \"dock\": true}, ...] (instead of --prompt)")->check(CLI::ExistingFile);
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "tokens to add")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temperature", o->temperature, "0: greedy; else sample from softmax(logits / t)")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", o->top_k, "sample among the k most likely (0: all)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", o->top_p, "sample among the most likely ids whose probabilities reach p (1: all)")->capture_default_str()->check(CLI::Range(1e-6, 1.0));
  cmd->add_option("--samples", o->samples, "how many continuations")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--stop", o->stops, "end a continuation once its text contains this string (repeat for several; not with --beam)");
  cmd->add_option("--beam", o->beam, "beam search with this many beams (fairseq's rules), printing every finished hypothesis best first; 0: greedy or sampling")->capture_default_str()->check(CLI::Range(0, 64));
  cmd->add_option("--length-penalty", o->length_penalty, "with --beam: a hypothesis scores log-prob / length^this")->capture_default_str()->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--no-repeat-ngram", o->no_repeat_ngram, "with --beam: no n-gram of this size twice in the output (0: off)")->capture_default_str()->check(CLI::Range(0, 16));
  cmd->add_flag("!--no-stop-at-doc", o->stop_at_doc, "go on past </doc> (a document's end)");
  return {cmd, &o->common, [o] { return run_generate(*o); }};
}

}  // namespace metalm::apps
