// `metalm pretrain`: a model from a config (or a checkpoint to resume), a tokenized corpus, an
// objective (causal, mlm, semi-causal), and the trainer's loop. The output directory is a model
// directory (config, weights, tokenizer) with the run's log and checkpoints.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "apps/common.h"
#include "metalm/autograd/autograd.h"
#include "metalm/data/corpus.h"
#include "metalm/data/packing.h"
#include "metalm/data/split.h"
#include "metalm/data/tokenizer.h"
#include "metalm/models/factory.h"
#include "metalm/models/metalm.h"
#include "metalm/models/model_dir.h"
#include "metalm/models/stack.h"
#include "metalm/train/corpus_batches.h"
#include "metalm/train/trainer.h"

namespace metalm::apps {
namespace {

namespace fs = std::filesystem;

struct PretrainOptions {
  CommonOptions common;
  std::string config, tokenizer, out, cache, objective = "causal", init_encoder;
  std::vector<std::string> data;
  std::string doc_split = "paragraph";
  TrainingCliOptions t;  // pretrain's defaults: TrainingCliOptions' own
  int64_t tokens_per_sample = 256, batch = 8;
  double valid_fraction = 0.02;
  // semi-causal
  std::string encoder = "text", span_loss = "exact";
  int64_t span_length = 64, encoder_train_layers = 1;
  double span_proportion = 0.25;
  std::vector<std::string> freeze, unfreeze;
};

// "path[:weight]" -> a corpus source named after the file.
data::SourceConfig source_of(const std::string& spec, const std::string& split) {
  data::SourceConfig s;
  std::string path = spec;
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos && colon + 1 < spec.size() &&
      spec.find_first_not_of("0123456789.", colon + 1) == std::string::npos) {
    path = spec.substr(0, colon);
    s.weight = std::stod(spec.substr(colon + 1));
  }
  MLM_CHECK(fs::exists(path), IoError, "[pretrain] --data ", path, ": no such file or directory");
  s.paths = {path};
  std::string name = fs::path(path).filename().string();
  for (char& c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')) c = '_';
  s.name = name.substr(0, 64);
  s.documents.format = data::format_of_path(path);
  for (const auto& [value, n] : data::doc_split_names())
    if (split == n) s.documents.split = value;
  return s;
}

// Every stack that reads the tokenizer's ids must have its vocabulary.
void check_vocab(const models::ModelConfig& cfg, int64_t vocab, const std::string& tokenizer) {
  auto check = [&](const nn::StackConfig& c, const std::string& what) {
    MLM_CHECK(c.vocab_size == vocab, ValueError, "[pretrain] ", what, " has vocab_size ",
              c.vocab_size, " but the tokenizer ", tokenizer, " has ", vocab,
              " ids: set vocab_size to ", vocab, " in the config");
  };
  if (cfg.model_type == "encoder") return check(cfg.encoder, "the encoder");
  check(cfg.decoder, "the decoder");
  for (const auto& e : cfg.encoders)
    if (e.span == models::SpanKind::text) check(e.config, "encoder " + e.name);
}

int run_pretrain(const PretrainOptions& o) {
  const models::ModelConfig cfg = models::load_model_config_file(o.config);
  const data::Tokenizer tok = data::Tokenizer::load(o.tokenizer);
  check_vocab(cfg, tok.vocab_size(), o.tokenizer);
  const data::TokenizerSpec& ids = tok.spec();
  // Sequences of at most 2.5 x span length + 1 tokens get no spans (reference-spec: _mlm_cut).
  const bool spans_fit = o.tokens_per_sample > (5 * o.span_length + 2) / 2;
  MLM_CHECK(o.objective != "semi-causal" || spans_fit, ValueError, "[pretrain] --span-length ",
            o.span_length, " needs --tokens-per-sample > 2.5 x span length + 1 (sequences shorter "
            "than that get no spans), got ", o.tokens_per_sample);

  const std::string latest = train::latest_checkpoint(o.out);  // "" when --out holds no run
  const bool resuming = o.t.resume && !latest.empty();
  MLM_CHECK(o.t.resume || latest.empty(), ValueError, "[pretrain] --out ", o.out,
            " holds a run already (", latest, "): add --resume to continue it, or give another --out");

  // The corpus: tokenized once into a cache shared by runs with the same tokenizer.
  data::CorpusConfig cc;
  for (const std::string& d : o.data) cc.sources.push_back(source_of(d, o.doc_split));
  MLM_CHECK(!cc.sources.empty(), ValueError, "[pretrain] give the corpus with --data FILE...");
  cc.cache_dir = o.cache.empty() ? (fs::path(o.out).parent_path() / "corpus-cache").string() : o.cache;
  if (cc.cache_dir.empty()) cc.cache_dir = "corpus-cache";
  cc.vocab = {tok.vocab_hash(), static_cast<uint64_t>(tok.vocab_size())};
  cc.special.bos = static_cast<int32_t>(ids.bos_id);
  cc.special.pad = static_cast<int32_t>(ids.pad_id);
  cc.special.eos = static_cast<int32_t>(ids.eos_id);
  cc.special.line = static_cast<int32_t>(ids.line_end_id);
  cc.special.doc = static_cast<int32_t>(ids.doc_end_id);
  const data::Corpus corpus = data::build_corpus(
      cc, [&](std::string_view text, std::vector<int32_t>& out) {
        const std::vector<int32_t> v = tok.encode(text);
        out.insert(out.end(), v.begin(), v.end());
      });
  data::PackOptions pack;
  pack.tokens_per_sample = o.tokens_per_sample;
  std::vector<data::PackedSource> train_packed, valid_packed;
  train_packed.reserve(corpus.sources.size());
  valid_packed.reserve(corpus.sources.size());
  uint64_t train_tokens = 0;
  for (const data::TokenizedSource& s : corpus.sources) {
    const data::DocumentSplit split =
        data::split_documents(s.docs(), s.name(), {o.valid_fraction, -1, o.common.seed});
    train_packed.emplace_back(s, split.train, pack, cc.special);
    valid_packed.emplace_back(s, split.valid, pack, cc.special);
    train_tokens += train_packed.back().packed_tokens();
    std::printf("corpus %s: %llu documents, %llu tokens (%llu documents held out for "
                "validation), %llu lines longer than a sample split across samples%s\n",
                s.name().c_str(), static_cast<unsigned long long>(s.docs()),
                static_cast<unsigned long long>(s.tokens()),
                static_cast<unsigned long long>(split.valid.size()),
                static_cast<unsigned long long>(train_packed.back().cut_lines() +
                                                valid_packed.back().cut_lines()),
                s.reused() ? ", tokenized earlier" : "");
  }
  std::vector<const data::PackedSource*> train_src, valid_src;
  for (auto& p : train_packed) train_src.push_back(&p);
  for (auto& p : valid_packed)
    if (p.size() > 0) valid_src.push_back(&p);
  data::LoaderOptions lo;
  lo.batch_size = o.batch;
  lo.seed = o.common.seed;
  train::CorpusBatches batches(train_src, lo);
  std::unique_ptr<train::FixedBatches> valid;
  if (!valid_src.empty())
    valid = std::make_unique<train::FixedBatches>(
        train::first_batches(valid_src, o.batch, o.t.eval_batches, o.common.seed + 1));

  // The model: fresh, or built empty for the checkpoint to fill.
  std::unique_ptr<models::Model> model = models::build_model(cfg, {o.common.seed, !resuming});
  model->compute = compute_mode(o.common);
  auto* metalm = dynamic_cast<models::MetaLM*>(model.get());
  if (!o.init_encoder.empty() && !resuming) {
    MLM_CHECK(metalm, ValueError, "[pretrain] --init-encoder docks an encoder: the config must "
              "be a metalm model");
    const models::ModelConfig enc_cfg = models::load_model_config(o.init_encoder);
    models::Encoder& enc = metalm->encoder(o.encoder);
    MLM_CHECK(enc_cfg.model_type == "encoder", ValueError, "[pretrain] --init-encoder ",
              o.init_encoder, ": a model of type ", enc_cfg.model_type, ", not an encoder");
    // The shapes must agree; the dropout rates are the docked encoder's own (its config's).
    auto shape = [](const models::ModelConfig& c) {
      io::Json j = models::to_json(c);
      for (const char* k : {"dropout", "attention_dropout", "activation_dropout", "drop_path_rate"})
        j.erase(k);
      return j;
    };
    const std::string differs =
        io::first_difference(shape(enc.model_config()), shape(enc_cfg),
                             "in encoder " + o.encoder + " of " + o.config, "in " + o.init_encoder);
    MLM_CHECK(differs.empty(), ValueError, "[pretrain] --init-encoder ", o.init_encoder,
              ": not the shape of the docked encoder: ", differs);
    models::load_weights(enc, (fs::path(o.init_encoder) / "model.safetensors").string());
    std::printf("encoder %s initialised from %s\n", o.encoder.c_str(), o.init_encoder.c_str());
  }
  // The docked encoder mostly frozen: its top layers (and the connector) train.
  if (metalm) metalm->freeze_encoder(o.encoder, o.encoder_train_layers);
  for (const std::string& g : o.freeze)
    MLM_CHECK(model->freeze(g) > 0, ValueError, "[pretrain] --freeze ", g, " matches no parameter");
  for (const std::string& g : o.unfreeze)
    MLM_CHECK(model->freeze(g, false) > 0, ValueError, "[pretrain] --unfreeze ", g,
              " matches no parameter");

  train::ObjectiveOptions obj;
  obj.kind = o.objective;
  obj.pad_id = static_cast<int32_t>(ids.pad_id);
  obj.mlm.vocab_size = tok.vocab_size();
  obj.mlm.mask_id = static_cast<int32_t>(ids.mask_id);
  obj.mlm.pad_id = static_cast<int32_t>(ids.pad_id);
  train::SemiCausalOptions& sc = obj.semi_causal;
  sc.encoder = o.encoder;
  sc.spans.length = o.span_length;
  sc.spans.proportion = o.span_proportion;
  sc.spans.boundary_id = static_cast<int32_t>(ids.line_end_id);
  sc.span_loss = o.span_loss == "reference" ? data::SpanLoss::reference : data::SpanLoss::exact;
  sc.bos_id = static_cast<int32_t>(ids.bos_id);
  sc.pad_id = obj.pad_id;
  const std::unique_ptr<train::Objective> objective = train::make_objective(obj);

  const train::TrainerOptions to = trainer_options(o.t, o.out);
  train::Trainer trainer(*model, *objective, batches, valid.get(), to);
  // A GPT is also scored on exactly the targets a MetaLM run scores (same validation batches,
  // same seeds, so the same spans): the like-with-like comparison of the main job.
  train::SemiCausalObjective positions(sc);
  train::CausalObjective causal(obj.pad_id);
  if (o.objective == "causal" && valid && o.span_proportion > 0 && spans_fit)
    trainer.extra_eval = [&] {
      NoGradGuard ng;
      model->eval();
      valid->rewind();
      double sum = 0, scored = 0;
      for (size_t i = 0; i < std::min<size_t>(valid->size(), static_cast<size_t>(o.t.eval_batches)); ++i) {
        const train::SequenceBatch b = valid->next();
        const train::LossOutput l = causal.loss_on(*model, b, positions.prepare(b).score);
        sum += l.loss.item<double>() * l.scored;
        scored += l.scored;
      }
      model->train();
      return io::Json{{"val_loss_semi_causal_targets", sum / scored}};
    };
  if (resuming) {
    trainer.resume(o.out);
    std::printf("resumed from %s at step %lld\n", latest.c_str(),
                static_cast<long long>(trainer.step_count()));
  }
  std::printf("%s: %s, %.2fM parameters (%.2fM trained), objective %s, %llu training tokens, "
              "%lld steps of %lld x %lld tokens\n",
              o.out.c_str(), cfg.model_type.c_str(),
              static_cast<double>(model->parameter_count()) / 1e6,
              static_cast<double>(model->parameter_count(true)) / 1e6, o.objective.c_str(),
              static_cast<unsigned long long>(train_tokens), static_cast<long long>(o.t.steps),
              static_cast<long long>(o.batch * o.t.accumulation),
              static_cast<long long>(o.tokens_per_sample - 1));
  std::fflush(stdout);
  const int rc = trainer.run();
  // A model directory carries its tokenizer (DESIGN section 4).
  tok.save(o.out);
  return rc;
}

}  // namespace

Command add_pretrain_command(CLI::App& app) {
  auto o = std::make_shared<PretrainOptions>();
  CLI::App* cmd = app.add_subcommand(
      "pretrain",
      "Pretrain a model on a text corpus: causal LM (a decoder), masked LM (a text encoder) or\n"
      "MetaLM's semi-causal LM (a decoder with a docked text encoder). Checkpoints, a JSONL log\n"
      "and the final model (with its tokenizer) go to --out; --resume continues exactly.\n"
      "Example: metalm pretrain --config configs/metalm-small.json --tokenizer runs/tok \\\n"
      "  --data data/text/kjv.txt --out runs/metalm --objective semi-causal \\\n"
      "  --init-encoder runs/mlm --steps 500 --span-length 32");
  add_common(cmd, o->common);
  add_precision(cmd, o->common);
  cmd->add_option("--config", o->config, "model config (JSON)")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer directory (metalm tokenizer train)")->required();
  cmd->add_option("--data", o->data, "corpus files or directories, PATH[:WEIGHT] (.jsonl: {\"text\"} lines)")->required();
  cmd->add_option("--out", o->out, "output directory: checkpoints, log.jsonl, the final model")->required();
  cmd->add_option("--objective", o->objective, "causal | mlm | semi-causal")->capture_default_str()
      ->check(CLI::IsMember({"causal", "mlm", "semi-causal"}));
  cmd->add_option("--cache", o->cache, "tokenized corpus cache (default: corpus-cache beside --out)");
  cmd->add_option("--doc-split", o->doc_split, "documents of plain text: paragraph | file | line")
      ->capture_default_str()->check(CLI::IsMember({"paragraph", "file", "line"}));
  cmd->add_option("--tokens-per-sample", o->tokens_per_sample, "packed sequence length (with <s>)")
      ->capture_default_str()->check(CLI::Range(3, 1 << 20));
  cmd->add_option("--batch", o->batch, "sequences per batch")->capture_default_str()->check(CLI::PositiveNumber);
  add_training_options(cmd, o->t);
  cmd->add_option("--valid-fraction", o->valid_fraction, "documents held out per source")->capture_default_str()->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--init-encoder", o->init_encoder, "semi-causal: an MLM-pretrained encoder model directory to dock");
  cmd->add_option("--encoder", o->encoder, "semi-causal: the docked encoder's name")->capture_default_str();
  cmd->add_option("--encoder-train-layers", o->encoder_train_layers, "semi-causal: top encoder layers that train (the rest is frozen)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--span-length", o->span_length, "spans of about L/2 .. L tokens")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--span-proportion", o->span_proportion, "share of the tokens in spans")->capture_default_str()->check(CLI::Range(0.0, 0.95));
  cmd->add_option("--span-loss", o->span_loss, "exact (DESIGN D4) | reference (the released code's one-token leak)")
      ->capture_default_str()->check(CLI::IsMember({"exact", "reference"}));
  cmd->add_option("--freeze", o->freeze, "freeze parameters matching this glob (repeatable)");
  cmd->add_option("--unfreeze", o->unfreeze, "unfreeze parameters matching this glob (repeatable)");
  return {cmd, &o->common, [o] { return run_pretrain(*o); }};
}

}  // namespace metalm::apps
