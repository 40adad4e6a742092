// Weights stored as bf16 for inference (nn::store_weights, ops::linear's bf16-weight path, the
// bf16 embedding table). The oracle: the same op on the weight widened to f32 (exact), run by
// the plain f64 reference. A bf16 weight is exact in f32, so the only difference left is the
// order of the f32 sums; a test against the unrounded weight at bf16 tolerance would also pass
// for a wrong widening (a byte swap, a dropped lane) as long as it stayed near.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/test_util.h"
#include "common/tiny_stacks.h"
#include "common/tiny_task_model.h"
#include "metalm/autograd/autograd.h"
#include "metalm/infer/generate.h"
#include "metalm/infer/prompt.h"
#include "metalm/nn/layers.h"
#include "metalm/ops/ops.h"

using namespace metalm;

namespace {

// f64 reference product of x and the exact f32 value of the bf16 weight.
Tensor reference_linear(const Tensor& x, const Tensor& wb, const Tensor& b) {
  Tensor y = ops::matmul(x.to(DType::f64), wb.to(DType::f32).to(DType::f64), false, true);
  if (b.defined()) y = ops::add(y, b.to(DType::f64));
  return y.to(DType::f32);
}

}  // namespace

// Every row count of the GEMV (1..8) and the GEMM forms above it; input widths that are a
// whole number of vectors, less than one, and neither; output counts odd (the tile's last
// single output) and spread over the threads (parallel split); with and without bias; on one
// thread and two, under both matmul precisions.
TEST(Bf16Weights, LinearEqualsTheProductWithTheWidenedWeight) {
  test::ThreadCountGuard threads;
  struct Case { int64_t in, out; };
  const Case cases[] = {{32, 3}, {5, 17}, {37, 40}, {384, 257}, {200, 1}};
  uint64_t seed = 10;
  for (int nt : {1, 2}) {
    set_num_threads(nt);
    for (const Case& c : cases)
      for (int64_t rows : {1, 2, 3, 4, 5, 6, 7, 8, 9, 33})
        for (bool with_bias : {false, true}) {
          const Tensor x = test::randn({rows, c.in}, ++seed);
          const Tensor wb = test::randn({c.out, c.in}, ++seed).to(DType::bf16);
          const Tensor b = with_bias ? test::randn({c.out}, ++seed) : Tensor();
          SCOPED_TRACE("threads " + std::to_string(nt) + " rows " + std::to_string(rows) +
                       " in " + std::to_string(c.in) + " out " + std::to_string(c.out));
          // f32 sums of `in` products of N(0, 1) values: errors grow with in (sgemm's too).
          const double atol = 4e-7 * static_cast<double>(c.in);
          EXPECT_TRUE(test::all_close(ops::linear(x, wb, b), reference_linear(x, wb, b), 1e-5,
                                      atol));
          // Under bf16 precision the GEMV keeps x as it is; the bf16 GEMM above it rounds x.
          const ops::MatmulPrecisionGuard bf16(ops::MatmulPrecision::bf16);
          const Tensor xr = rows <= 8 ? x : x.to(DType::bf16).to(DType::f32);
          EXPECT_TRUE(test::all_close(ops::linear(x, wb, b), reference_linear(xr, wb, b), 1e-5,
                                      atol));
        }
  }
}

// A [2, 3, in] input (rows 6 through the GEMV, leading dims kept) and the fused forms: linears,
// linear_activation and mlp give way to the GEMV for few rows and fuse above.
TEST(Bf16Weights, BatchedShapesAndTheFusedFormsAgree) {
  const Tensor w1 = test::randn({48, 32}, 1).to(DType::bf16);
  const Tensor w2 = test::randn({32, 48}, 2).to(DType::bf16);
  const Tensor b1 = test::randn({48}, 3), b2 = test::randn({32}, 4);
  for (const ops::MatmulPrecision p : {ops::MatmulPrecision::f32, ops::MatmulPrecision::bf16})
    for (int64_t t : {3, 20}) {
      const ops::MatmulPrecisionGuard guard(p);
      const Tensor x = test::randn({2, t, 32}, 5 + t);
      // The bf16 GEMM (above the GEMV's rows) rounds x, and mlp's fused form its hidden layer.
      const bool rounds = p == ops::MatmulPrecision::bf16 && 2 * t > 8;
      const Tensor xr = rounds ? x.to(DType::bf16).to(DType::f32) : x;
      const double tol = 2e-5, mlp_tol = rounds ? 1e-2 : tol;
      const Tensor want1 = reference_linear(xr.reshape({2 * t, 32}), w1, b1).reshape({2, t, 48});
      const Tensor y = ops::linear(x, w1, b1);
      ASSERT_EQ(y.shape(), (Shape{2, t, 48}));
      EXPECT_TRUE(test::all_close(y, want1, tol, tol));
      const std::vector<Tensor> ys = ops::linears(x, {w1, w1}, {b1, Tensor()});
      EXPECT_TRUE(test::all_close(ys[0], want1, tol, tol));
      EXPECT_TRUE(test::all_close(ys[1], ops::sub(want1, b1), tol, tol));
      const Tensor relu1 = ops::activation(want1, ops::Activation::relu);
      EXPECT_TRUE(test::all_close(
          ops::linear_activation(x, w1, b1, ops::Activation::relu), relu1, tol, tol));
      // (a hidden value next to a bf16 rounding boundary may round the other way: 2^-8 of it)
      const Tensor h = rounds ? relu1.to(DType::bf16).to(DType::f32) : relu1;
      const Tensor want2 = reference_linear(h.reshape({2 * t, 48}), w2, b2).reshape({2, t, 32});
      EXPECT_TRUE(test::all_close(ops::mlp(x, w1, b1, ops::Activation::relu, w2, b2), want2,
                                  mlp_tol, mlp_tol));
    }
}

// Gradients reach x and the bias through a bf16 weight (as through its widened f32 copy); the
// weight gets none and cannot ask for one; a dtype that is not f32 next to it is an error.
TEST(Bf16Weights, GradientsReachTheInputAndBiasOnly) {
  const Tensor wb = test::randn({7, 19}, 1).to(DType::bf16);
  const Tensor wf = wb.to(DType::f32);
  for (int64_t rows : {2, 12}) {
    Tensor x1 = test::randn({rows, 19}, 2).set_requires_grad();
    Tensor x2 = x1.detach().clone().set_requires_grad();
    Tensor b1 = test::randn({7}, 3).set_requires_grad();
    Tensor b2 = b1.detach().clone().set_requires_grad();
    const Tensor r = test::randn({rows, 7}, 4);
    ops::sum(ops::mul(ops::linear(x1, wb, b1), r)).backward();
    ops::sum(ops::mul(ops::linear(x2, wf, b2), r)).backward();
    EXPECT_TRUE(test::all_close(x1.grad(), x2.grad(), 1e-5, 1e-6));
    EXPECT_TRUE(test::all_close(b1.grad(), b2.grad(), 1e-5, 1e-6));
    EXPECT_FALSE(wb.grad().defined());
  }
  Tensor w = wb;
  EXPECT_TRUE(test::throws_with<DTypeError>([&] { w.set_requires_grad(); }, "f32 and f64"));
  EXPECT_TRUE(test::throws_with<DTypeError>(
      [&] { ops::linear(test::randn({2, 19}, 5, DType::f64), wb); }, "dtypes differ"));
  EXPECT_TRUE(test::throws_with<DTypeError>(
      [&] { ops::linear(test::randn({2, 19}, 5), wb, test::randn({7}, 6, DType::f64)); },
      "dtypes differ"));
}

TEST(Bf16Weights, EmbeddingRowsAreTheWidenedTable) {
  const Tensor table = test::randn({11, 24}, 1).to(DType::bf16);
  const Tensor ids = Tensor::from_vector<int64_t>({2, 3}, {0, 4, 10, 4, 7, 1});
  const Tensor rows = ops::embedding(table, ids, 7);
  ASSERT_EQ(rows.dtype(), DType::f32);
  EXPECT_TRUE(test::all_close(rows, ops::embedding(table.to(DType::f32), ids, 7), 0, 0));
}

// A decoder whose matrices are stored as bf16 computes what the same decoder computes with
// those matrices widened back to f32 (store_weights there and back: exact), both in one full
// forward and through the KV cache (a prompt above the GEMV's rows, then one-row steps); and it
// differs from the unrounded model by about the rounding (so the conversion happened).
TEST(Bf16Weights, StoredDecoderEqualsItsWidenedTwin) {
  Generator g1(2), g2(2), g3(2);
  models::Decoder stored(test::tiny_decoder(), g1), widened(test::tiny_decoder(), g2),
      original(test::tiny_decoder(), g3);
  for (models::Decoder* d : {&stored, &widened, &original}) {
    test::randomise(*d, 3);
    d->eval();
  }
  // The matrices by name: per layer q, k, v, out, fc1, fc2; the token embedding and the
  // output projection (not tied here). The learned position table is not an Embedding: it stays.
  int64_t expected = 0, elements = 0;
  for (const auto& [name, t] : stored.named_parameters())
    for (const char* suffix : {"_proj.weight", "fc1.weight", "fc2.weight", "embed_tokens.weight",
                               "output_projection.weight"}) {
      const std::string sfx = suffix;
      if (name.size() >= sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0) {
        ++expected;
        elements += t.numel();
      }
    }
  EXPECT_EQ(expected, 2 * 6 + 2);
  const int64_t before = stored.state_bytes();
  const int64_t matrices = nn::store_weights(stored, DType::bf16);
  EXPECT_EQ(matrices, expected);
  EXPECT_EQ(stored.state_bytes(), before - 2 * elements);
  EXPECT_TRUE(stored.trainable_parameters().size() < original.trainable_parameters().size());
  EXPECT_EQ(nn::store_weights(widened, DType::bf16), matrices);
  EXPECT_EQ(nn::store_weights(widened, DType::f32), matrices);
  EXPECT_EQ(nn::store_weights(stored, DType::bf16), 0);  // already stored so

  NoGradGuard ng;
  models::StackInputs in;
  in.tokens = test::random_tokens(2, 13, 50, 4);
  const Tensor got = stored.forward(in).logits;
  EXPECT_TRUE(test::all_close(got, widened.forward(in).logits, 1e-5, 1e-5));
  const double moved = test::closeness(got, original.forward(in).logits, 0, 1e-4);
  EXPECT_GT(moved, 1.0) << "the bf16 model computes the f32 one's logits exactly";
  EXPECT_TRUE(test::all_close(got, original.forward(in).logits, 5e-2, 5e-2));

  infer::GenerateOptions o;
  o.max_new_tokens = 20;
  const std::vector<int64_t> prompt = {5, 9, 17, 3, 22, 8, 41, 12, 6, 30, 2, 11};
  EXPECT_EQ(infer::generate(stored, prompt, o), infer::generate(widened, prompt, o));
}

// The whole of a MetaLM (decoder, docked encoder, connector) converts, and a docked prompt
// decodes as on its widened twin.
TEST(Bf16Weights, StoredMetaLMDecodesADockedPromptAsItsWidenedTwin) {
  auto stored = test::tiny_metalm(5), widened = test::tiny_metalm(5);
  stored->eval();
  widened->eval();
  const int64_t matrices = nn::store_weights(*stored, DType::bf16);
  EXPECT_GT(matrices, 2 * 6 + 1);  // the encoder's and the connector's too
  nn::store_weights(*widened, DType::bf16);
  nn::store_weights(*widened, DType::f32);
  const data::Tokenizer& tok = test::tiny_tokenizer();
  const infer::Prompt p = infer::parse_prompt(tok, "review: {{the film was great}} answer:", "text");
  infer::GenerateOptions o;
  o.max_new_tokens = 10;
  const auto run = [&](models::Model& m) {
    return infer::generate(infer::task_decoder(m), infer::prepare_prompt(m, p, tok.bos_id()), o);
  };
  EXPECT_EQ(run(*stored), run(*widened));
  EXPECT_TRUE(test::throws_with<DTypeError>(
      [&] { nn::store_weights(*stored, DType::f64); }, "bf16 or f32"));
}
