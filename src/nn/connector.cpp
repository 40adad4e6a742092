// Connectors: plain compositions of Linear, activation, concat and MultiheadAttention, so their
// backward comes from those ops.
#include "metalm/nn/connector.h"

#include "metalm/ops/elementwise.h"
#include "metalm/ops/shape.h"

namespace metalm::nn {

void Connector::check_input(const Tensor& x) const {
  const std::string op = kind() == "xconnector" ? kind() : kind() + " connector";
  MLM_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == d_in, ShapeError, "[", op,
            "] expected [..., ", d_in, "], got ", x.defined() ? x.str() : "undefined");
}

// ------------------------------------------------------------------ none

IdentityConnector::IdentityConnector(int64_t in, int64_t out) : Connector(in, out) {
  MLM_CHECK(in > 0 && in == out, ValueError, "[none connector] docking features unchanged needs ",
            "the encoder width to equal the LM width, got ", in, " -> ", out);
}

Tensor IdentityConnector::forward(const Tensor& x) {
  check_input(x);
  return x;
}

// ------------------------------------------------------------------ simple

SimpleConnector::SimpleConnector(int64_t in, int64_t out, Generator& gen) : Connector(in, out) {
  dense = register_module("dense", std::make_shared<Linear>(in, out, true, gen));
}

// x: [..., d_in] -> [..., d_out]
Tensor SimpleConnector::forward(const Tensor& x) {
  check_input(x);
  return dense->forward(x);
}

// ------------------------------------------------------------------ complex

ComplexConnector::ComplexConnector(int64_t in, int64_t out, ops::Activation act, Generator& gen)
    : Connector(in, out), activation(act) {
  dense = register_module("dense", std::make_shared<Linear>(in, in, true, gen));
  predict = register_module("predict", std::make_shared<Linear>(in, out, true, gen));
}

// x: [..., d_in] -> [..., d_in] -> [..., d_out]
Tensor ComplexConnector::forward(const Tensor& x) {
  check_input(x);
  return predict->forward(ops::activation(dense->forward(x), activation));
}

// ------------------------------------------------------------------ xconnector

XConnector::XConnector(int64_t in, int64_t out, int64_t latent_query_num, int64_t num_heads,
                       double attention_dropout, Generator& gen)
    : Connector(in, out) {
  MLM_CHECK(latent_query_num > 0, ValueError, "[xconnector] latent_query_num must be positive, ",
            "got ", latent_query_num);
  MLM_CHECK(num_heads > 0 && out % num_heads == 0, ValueError, "[xconnector] d_out ", out,
            " must be a multiple of num_heads ", num_heads, " > 0");
  dense = register_module("dense", std::make_shared<Linear>(in, out, true, gen));
  latent_query = register_parameter("latent_query", gen.normal({latent_query_num, out}));
  MultiheadAttentionOptions mo;
  mo.embed_dim = out;
  mo.num_heads = num_heads;
  mo.kdim = out;
  mo.vdim = out;
  mo.self_attention = false;  // keys/values come from [h; q], not from the query alone
  mo.subln = false;
  mo.dropout = attention_dropout;
  x_attn = register_module("x_attn", std::make_shared<MultiheadAttention>(mo, gen));
}

// x: [B, N, d_in] -> [B, Q, d_out]
Tensor XConnector::forward(const Tensor& x) {
  check_input(x);
  MLM_CHECK(x.dim() == 3 && x.size(1) > 0, ShapeError, "[xconnector] expected [B, N, ", d_in,
            "] with N > 0, got ", x.str());
  const int64_t b = x.size(0), q = latent_query.size(0);
  Tensor h = dense->forward(x);                                      // [B, N, d_out]
  Tensor queries = latent_query.unsqueeze(0).expand({b, q, d_out});  // [B, Q, d_out] view
  // The queries are also keys/values, so each latent query attends to the image tokens and to
  // all latent queries (spec 4.3).
  Tensor kv = ops::concat({h, queries}, 1);  // [B, N + Q, d_out]
  return x_attn->forward(queries, kv, AttentionInputs{});
}

// ------------------------------------------------------------------ factory and helpers

std::shared_ptr<Connector> build_connector(const std::string& kind, int64_t d_in, int64_t d_out,
                                           const ConnectorOptions& o, Generator& gen) {
  MLM_CHECK(d_in > 0 && d_out > 0, ValueError, "[build_connector] sizes must be positive, got ",
            d_in, " -> ", d_out);
  if (kind == "none") return std::make_shared<IdentityConnector>(d_in, d_out);
  if (kind == "simple") return std::make_shared<SimpleConnector>(d_in, d_out, gen);
  if (kind == "complex") return std::make_shared<ComplexConnector>(d_in, d_out, o.activation, gen);
  if (kind == "xconnector")
    return std::make_shared<XConnector>(d_in, d_out, o.latent_query_num, o.num_heads,
                                        o.attention_dropout, gen);
  throw ValueError(detail::cat("[build_connector] unknown connector '", kind,
                               "' (expected none, simple, complex or xconnector)"));
}

// x: [B, Q, d] -> [B * Q, d]
Tensor flatten_tokens(const Tensor& x) {
  MLM_CHECK(x.defined() && x.dim() == 3, ShapeError, "[flatten_tokens] expected [B, Q, d], got ",
            x.defined() ? x.str() : "undefined");
  return x.reshape({x.size(0) * x.size(1), x.size(2)});
}

}  // namespace metalm::nn
