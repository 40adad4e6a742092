// MetaLM (reference-spec 3.3, DESIGN D4): a causal decoder, the universal task layer, with
// bidirectional encoders docked into it through connectors. Spans of the input are encoded
// bidirectionally, projected to the decoder's width, and written over the decoder's token
// embeddings at the span positions (before embed_scale and positions, as the released code
// does); the decoder then reads the whole sequence left to right with a plain causal mask.
//
// Names: "decoder.*", "encoders.<name>.*", "connectors.<name>.*" (models::ModelConfig), so a
// TorchScale checkpoint of either stack loads under its prefix. Several encoders dock at once,
// one per span kind; the spans of one call are given per encoder (SpanInputs), so the
// vision-language encoder of a later model slots in as another entry.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "metalm/models/stack.h"
#include "metalm/nn/connector.h"

namespace metalm::models {

class MetaLM : public Model {
 public:
  MetaLM(const ModelConfig& config, Generator& init_gen);

  // in.tokens: the decoder's [B, T] (placeholder ids at docked positions are embedded and then
  // overwritten); in.spans: what each encoder encodes and where it docks. Every docked position
  // gets exactly one vector: the targets of different encoders must not overlap.
  StackOutput run(const StackInputs& in) override;
  ModelConfig model_config() const override { return config_; }

  Decoder& decoder() { return *decoder_; }
  Encoder& encoder(const std::string& name);
  nn::Connector& connector(const std::string& name);
  // The encoder outputs of one SpanInputs after the connector: [count(select), d_decoder].
  Tensor span_features(const SpanInputs& spans);
  // Freezes the docked encoder `name` except its top `train_layers` layers (its embeddings and
  // final LayerNorm too; the connector is left alone): `metalm pretrain --encoder-train-layers`.
  // Returns how many of its parameters still train.
  int64_t freeze_encoder(const std::string& name, int64_t train_layers);

 private:
  ModelConfig config_;
  std::shared_ptr<Decoder> decoder_;
  std::vector<std::pair<std::string, std::shared_ptr<Encoder>>> encoders_;
  std::vector<std::pair<std::string, std::shared_ptr<nn::Connector>>> connectors_;
};

// The SpanInputs of docked segments: row s is [<s>] + segments[s], right-padded with pad_id,
// every token but <s> selected; `target` (u8 [B, T] with as many ones as the segments have ids,
// in row-major order, or undefined for span_features alone) is where they dock.
SpanInputs make_span_inputs(const std::string& encoder,
                            const std::vector<std::vector<int64_t>>& segments, Tensor target,
                            int64_t bos_id, int64_t pad_id);

}  // namespace metalm::models
