// Connectors that bring encoder outputs to the LM's width before docking (reference-spec 3.3,
// 4.3): none, simple (one Linear), complex (the MetaLM FFN connector) and the KOSMOS resampler
// (XConnector: latent queries cross-attending over [features; queries]).
// Names follow the released code (unilm kosmos-2 connector.py, and HF's Kosmos-2 port for the
// resampler): simple "dense"; complex "dense" (d_in -> d_in) and "predict" (d_in -> d_out);
// xconnector "dense", "latent_query", "x_attn.{q,k,v,out}_proj".
#pragma once
#include <memory>
#include <string>

#include "metalm/core/random.h"
#include "metalm/nn/attention.h"
#include "metalm/nn/layers.h"
#include "metalm/ops/activation.h"

namespace metalm::nn {

// Common interface. Token-wise connectors (none, simple, complex) map x: [..., d_in] to
// [..., d_out] (MetaLM's span features arrive as [N_tokens, d_in]); the resampler needs
// [B, N, d_in] and returns [B, Q, d_out].
class Connector : public Module {
 public:
  Connector(int64_t in, int64_t out) : d_in(in), d_out(out) {}
  virtual Tensor forward(const Tensor& x) = 0;
  virtual std::string kind() const = 0;  // the build_connector name

  const int64_t d_in, d_out;

 protected:
  void check_input(const Tensor& x) const;  // defined, at least 1-D, last dim d_in
};

// "none": the features are docked as they are; needs d_in == d_out. No parameters.
class IdentityConnector : public Connector {
 public:
  IdentityConnector(int64_t d_in, int64_t d_out);
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "none"; }
};

// "simple": dense = Linear(d_in, d_out).
class SimpleConnector : public Connector {
 public:
  SimpleConnector(int64_t d_in, int64_t d_out, Generator& gen);
  Tensor forward(const Tensor& x) override;  // [..., d_in] -> [..., d_out]
  std::string kind() const override { return "simple"; }
  std::shared_ptr<Linear> dense;
};

// "complex": predict(act(dense(x))), dense = Linear(d_in, d_in), predict = Linear(d_in, d_out),
// act by TorchScale name (default gelu with erf, the MetaLM FFN connector).
class ComplexConnector : public Connector {
 public:
  ComplexConnector(int64_t d_in, int64_t d_out, ops::Activation activation, Generator& gen);
  Tensor forward(const Tensor& x) override;  // [..., d_in] -> [..., d_out]
  std::string kind() const override { return "complex"; }
  ops::Activation activation;
  std::shared_ptr<Linear> dense, predict;
};

// "xconnector" (KOSMOS resampler, spec 4.3):
//   h   = dense(x)                        x: [B, N, d_in] -> [B, N, d_out]
//   q   = latent_query broadcast over B   [Q, d_out] -> [B, Q, d_out]
//   out = x_attn(query = q, key = value = concat([h, q], 1))   -> [B, Q, d_out]
// x_attn is a cross-attention MultiheadAttention with biases and no SubLN (scale head_dim^-0.5).
class XConnector : public Connector {
 public:
  // dense as torch.nn.Linear, latent_query N(0, 1), x_attn TorchScale init.
  XConnector(int64_t d_in, int64_t d_out, int64_t latent_query_num, int64_t num_heads,
             double attention_dropout, Generator& gen);
  Tensor forward(const Tensor& x) override;  // [B, N, d_in] -> [B, Q, d_out]
  std::string kind() const override { return "xconnector"; }
  int64_t latent_query_num() const { return latent_query.size(0); }

  std::shared_ptr<Linear> dense;
  Tensor latent_query;
  std::shared_ptr<MultiheadAttention> x_attn;
};

struct ConnectorOptions {
  ops::Activation activation = ops::Activation::gelu;  // complex
  int64_t latent_query_num = 64;    // xconnector (KOSMOS: --latent-query-num 64)
  int64_t num_heads = 0;            // xconnector; KOSMOS uses the LM's heads (32); must be > 0
  double attention_dropout = 0.0;   // xconnector (training with > 0 is not supported yet)
};

// kind: "none" | "simple" | "complex" | "xconnector"; throws ValueError naming a bad kind or size.
std::shared_ptr<Connector> build_connector(const std::string& kind, int64_t d_in, int64_t d_out,
                                           const ConnectorOptions& options, Generator& gen);

// [B, Q, d] -> [B * Q, d]: the resampler's vectors in row-major order, the layout docking
// (ops::masked_scatter_rows) consumes, as the released XConnector returns them.
Tensor flatten_tokens(const Tensor& x);

}  // namespace metalm::nn
