// `metalm generate`: text from a model directory's decoder (a GPT, or the task layer of a
// MetaLM) and its tokenizer. A prompt's lines are encoded as the corpus pipeline encodes them
// (each line ends with </line>), so a model continues text the way it saw it in pretraining;
// </line> and </doc> print as a line break and a blank line.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "apps/common.h"
#include "metalm/data/tokenizer.h"
#include "metalm/infer/beam.h"
#include "metalm/infer/generate.h"
#include "metalm/models/metalm.h"
#include "metalm/models/model_dir.h"
#include "metalm/models/stack.h"

namespace metalm::apps {
namespace {

namespace fs = std::filesystem;

struct GenerateCliOptions {
  CommonOptions common;
  std::vector<std::string> stops;
  std::string model, prompt;
  int64_t max_new_tokens = 80, top_k = 0, samples = 1, beam = 0, no_repeat_ngram = 0;
  double temperature = 0.8, length_penalty = 1.0, top_p = 1.0;
  bool stop_at_doc = true;
};

// <s>, then the prompt's lines, each but an unfinished last one closed by </line>.
std::vector<int64_t> encode_prompt(const data::Tokenizer& tok, const std::string& prompt) {
  std::vector<int64_t> ids = {tok.bos_id()};
  const int64_t line_end = tok.spec().line_end_id;
  size_t begin = 0;
  while (begin <= prompt.size()) {
    const size_t nl = prompt.find('\n', begin);
    const std::string line = prompt.substr(begin, nl == std::string::npos ? nl : nl - begin);
    for (const int32_t id : tok.encode(line)) ids.push_back(id);
    if (nl == std::string::npos) break;
    if (line_end >= 0) ids.push_back(line_end);
    begin = nl + 1;
  }
  return ids;
}

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

int run_generate(const GenerateCliOptions& o) {
  const data::Tokenizer tok = data::Tokenizer::load(o.model);
  std::unique_ptr<models::Model> model = models::load_model(o.model, o.common.seed);
  model->compute = compute_mode(o.common);
  model->eval();
  models::Decoder* decoder = dynamic_cast<models::Decoder*>(model.get());
  if (auto* metalm = dynamic_cast<models::MetaLM*>(model.get())) decoder = &metalm->decoder();
  MLM_CHECK(decoder != nullptr, ValueError, "[generate] ", o.model, ": a model of type ",
            model->model_config().model_type, " has no decoder to generate with");
  MLM_CHECK(decoder->stack_config().vocab_size == tok.vocab_size(), ValueError, "[generate] ",
            o.model, ": the decoder has vocab_size ", decoder->stack_config().vocab_size,
            " but its tokenizer ", tok.vocab_size(), " ids");
  const std::vector<int64_t> prompt = encode_prompt(tok, o.prompt);
  MLM_CHECK(static_cast<int64_t>(prompt.size()) < decoder->stack_config().max_positions,
            ValueError, "[generate] the prompt is ", prompt.size(), " tokens; the model reads at "
            "most ", decoder->stack_config().max_positions);
  infer::GenerateOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.temperature = o.temperature;
  g.top_k = o.top_k;
  g.top_p = o.top_p;
  g.slide_keep = decoder->stack_config().max_positions / 2;
  g.stop_ids = {tok.eos_id()};
  if (o.stop_at_doc && tok.spec().doc_end_id >= 0) g.stop_ids.push_back(tok.spec().doc_end_id);
  // Ids that never belong in generated text: the unknown piece (printed as ⁇) and the markers
  // of other inputs.
  MLM_CHECK(o.stops.empty() || o.beam == 0, ValueError,
            "[generate] --stop works with greedy and sampled generation, not with --beam");
  for (const std::string& s : o.stops)
    MLM_CHECK(!s.empty(), ValueError, "[generate] --stop: an empty stop string");
  if (!o.stops.empty())
    g.stop_when = [&](const std::vector<int64_t>& ids) {
      const std::string text = tok.decode(std::vector<int32_t>(ids.begin(), ids.end()));
      for (const std::string& s : o.stops)
        if (text.find(s) != std::string::npos) return true;
      return false;
    };
  for (const int64_t id : {tok.spec().bos_id, tok.spec().pad_id, tok.spec().unk_id,
                           tok.spec().mask_id, tok.spec().image_id, tok.spec().image_end_id})
    if (id >= 0) g.banned_ids.push_back(id);
  std::vector<int32_t> prompt_line;  // the prompt's ids after its last </line> (not <s>)
  for (size_t i = prompt.size(); i-- > 1 && prompt[i] != tok.spec().line_end_id;)
    prompt_line.insert(prompt_line.begin(), static_cast<int32_t>(prompt[i]));
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
    const int64_t room = decoder->stack_config().max_positions -
                         static_cast<int64_t>(prompt.size()) - 1;
    b.max_new_tokens = std::min(o.max_new_tokens, room);
    if (b.max_new_tokens < o.max_new_tokens)
      std::fprintf(stderr, "[generate] --beam: at most %lld new tokens fit the context\n",
                   static_cast<long long>(b.max_new_tokens));
    const std::vector<infer::Hypothesis> hyps = infer::beam_search(*decoder, prompt, b);
    for (size_t h = 0; h < hyps.size(); ++h) {
      std::printf("--- beam %zu: score %.4f (log-prob %.4f over %zu tokens) ---\n", h + 1,
                  hyps[h].score, hyps[h].sum_logprob, hyps[h].tokens.size());
      std::fputs(o.prompt.c_str(), stdout);
      TextPrinter out(tok, prompt_line);
      for (const int64_t id : hyps[h].tokens)
        if (id != b.eos_id) out.add(id);
      std::printf("\n");
    }
    return 0;
  }
  for (int64_t s = 0; s < o.samples; ++s) {
    if (o.samples > 1) std::printf("--- sample %lld ---\n", static_cast<long long>(s + 1));
    std::fputs(o.prompt.c_str(), stdout);
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
      "Example: metalm generate --model runs/metalm --prompt 'And God said' --samples 3");
  add_common(cmd, o->common);
  add_precision(cmd, o->common);
  cmd->add_option("--model", o->model, "model directory (config, weights, tokenizer)")->required();
  cmd->add_option("--prompt", o->prompt, "text to continue (\\n for line breaks)")->capture_default_str();
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
