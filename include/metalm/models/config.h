// What a model directory's config.json describes: one stack (model_type "encoder" or "decoder",
// the TorchScale fields at the top level, exactly as before), or a composite: a decoder (the
// universal task layer), zero or more docked encoders (text, vision, multiway), each with its
// connector and the kind of span it serves, and task heads. The form is documented with examples
// in configs/README.md. Every part declares an io::FieldTable; unknown keys, wrong types and
// inconsistent parts are errors naming the file and the field ("encoders[0].connector.kind").
#pragma once
#include <string>
#include <vector>

#include "metalm/io/json.h"
#include "metalm/nn/config.h"

namespace metalm::models {

// What a docked encoder encodes, and so where its vectors go in the decoder's sequence.
enum class SpanKind {
  text,        // spans of the LM's own tokens, re-encoded bidirectionally (MetaLM, 3.1-3.3)
  image,       // an image (a vision encoder: CLIP ViT / BEiT-3 vision, KOSMOS 4.1)
  image_text,  // an image-text pair (a multiway vision-language encoder, BEiT-3 / VLMo)
};
const char* span_kind_name(SpanKind kind);

// The connector from an encoder's width to the decoder's (nn::build_connector). The KOSMOS
// resampler is the connector of kind "xconnector" (latent queries attending over the features).
struct ConnectorConfig {
  std::string kind = "simple";  // none | simple | complex | xconnector
  ops::Activation activation = ops::Activation::gelu;  // complex
  int64_t latent_query_num = 64;                       // xconnector: vectors per input
  int64_t num_heads = 0;                               // xconnector; 0 = the decoder's heads
};

struct DockedEncoder {
  // Unique, [a-z0-9_]+; its parameters are "encoders.<name>.*" and "connectors.<name>.*".
  std::string name;
  SpanKind span = SpanKind::text;
  nn::EncoderConfig config;
  ConnectorConfig connector;
};

// A task head reading one stack's features.
struct HeadConfig {
  std::string name;                     // unique; parameters "heads.<name>.*"
  std::string kind = "classification";  // the only kind so far
  std::string input = "decoder";        // "decoder" or a docked encoder's name
  int64_t num_classes = 0;              // > 0
  std::string pooling = "cls";          // cls (first token) | mean | last (last token)
};

struct ModelConfig {
  // "encoder" | "decoder": one stack (below); "metalm": decoder + encoders (+ heads).
  std::string model_type = "decoder";
  nn::EncoderConfig encoder;  // model_type "encoder" only
  nn::DecoderConfig decoder;  // model_type "decoder" and the composites
  std::vector<DockedEncoder> encoders;
  std::vector<HeadConfig> heads;

  bool is_single_stack() const { return model_type == "encoder" || model_type == "decoder"; }
  static ModelConfig single(const nn::EncoderConfig& cfg);
  static ModelConfig single(const nn::DecoderConfig& cfg);
};

// The model types the factory knows (models/factory.h builds them).
const std::vector<std::string>& model_types();

// Parses a config.json document. Single stacks: every key but model_type is a field of that
// stack. Composites: "decoder" (an object of decoder fields), "encoders" (a list of
// {"name", "span", "config": {encoder fields}, "connector": {...}}), "heads" (a list).
// Runs the stacks' post-processing and every validation; throws ValueError / FormatError.
ModelConfig model_config_from_json(const io::Json& j, const io::JsonWhere& where = {"config", ""});
// The checks across parts: names unique and well-formed, connector sizes, a text encoder's
// vocabulary equal to the decoder's, heads reading an existing stack.
void validate(const ModelConfig& cfg, const io::JsonWhere& where = {"config", ""});
// Self-describing: every field of every part.
io::Json to_json(const ModelConfig& cfg);

// Files (at most 1 MiB, strict JSON): errors name the file.
ModelConfig load_model_config_file(const std::string& path);
ModelConfig parse_model_config(const std::string& text, const std::string& source);
// Validates, then writes to_json(cfg) indented, atomically (temporary file + rename).
void save_model_config(const std::string& path, const ModelConfig& cfg);

}  // namespace metalm::models
