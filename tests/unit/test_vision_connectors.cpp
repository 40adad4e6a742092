// nn::VisionEmbedding, nn::ClipVisionTower and the connectors on tiny hand-checkable cases: exact
// values, state-dict names, invariants (mask replacement, CLS first, unit-norm tokens, latent
// queries over identical keys), f64 finite-difference gradients and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "metalm/autograd/autograd.h"
#include "metalm/nn/connector.h"
#include "metalm/nn/vision.h"
#include "metalm/ops/ops.h"

using namespace metalm;
using metalm::test::all_close;
using metalm::test::gradcheck;
using metalm::test::randn;

using metalm::test::throws_with;

namespace {

void set(const Tensor& t, const std::vector<double>& v) {
  NoGradGuard ng;
  copy_into(t.detach(), Tensor::from_vector(t.shape(), v));
}

std::set<std::string> names_of(const nn::Module& m) {
  std::set<std::string> s;
  for (const auto& [k, t] : m.state_dict()) s.insert(k);
  return s;
}

std::vector<Tensor> params_and(const nn::Module& m, const std::vector<Tensor>& extra) {
  std::vector<Tensor> v = m.parameters();
  v.insert(v.end(), extra.begin(), extra.end());
  return v;
}

Tensor u8(const Shape& s, const std::vector<uint8_t>& v) {
  return Tensor::from_vector(s, v);
}

// ------------------------------------------------------------------ VisionEmbedding

// One channel, 4x4 image, 2x2 patches -> N = 4, d = 2. Patch k (row-major over the 2x2 grid)
// holds the constant value k + 1; proj sums the patch (channel 0) and takes minus the patch
// (channel 1), plus bias (0.5, -0.5).
struct TinyVision {
  nn::VisionEmbeddingOptions o;
  Generator gen{7};
  std::shared_ptr<nn::VisionEmbedding> m;
  Tensor images;
  explicit TinyVision(bool mask_token, bool any_size = false) {
    o.img_size = 4;
    o.patch_size = 2;
    o.in_chans = 1;
    o.embed_dim = 2;
    o.mask_token = mask_token;
    o.any_image_size = any_size;
    m = std::make_shared<nn::VisionEmbedding>(o, gen);
    set(m->proj_weight, {1, 1, 1, 1, -1, -1, -1, -1});
    set(m->proj_bias, {0.5, -0.5});
    set(m->cls_token, {10, 20});
    if (mask_token) set(m->mask_token, {-7, 7});
    std::vector<double> px(16);
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) px[y * 4 + x] = (y / 2) * 2 + (x / 2) + 1;
    images = Tensor::from_vector(Shape{1, 1, 4, 4}, px).to(DType::f32).set_requires_grad();
  }
};

TEST(VisionEmbedding, ClsFirstThenPatchesInRowMajorOrder) {
  TinyVision t(false);
  Tensor out = t.m->forward(t.images);
  ASSERT_EQ(out.shape(), (Shape{1, 5, 2}));
  // patch k sums to 4 (k + 1): (4(k + 1) + 0.5, -4(k + 1) - 0.5)
  EXPECT_EQ(out.to_vector<float>(),
            (std::vector<float>{10, 20, 4.5, -4.5, 8.5, -8.5, 12.5, -12.5, 16.5, -16.5}));
  EXPECT_EQ(t.m->num_patches(), 4);
  EXPECT_EQ(t.m->num_position_embeddings(), 5);
  EXPECT_EQ(names_of(*t.m), (std::set<std::string>{"proj.weight", "proj.bias", "cls_token"}));
}

TEST(VisionEmbedding, MaskTokenReplacesExactlyTheMaskedPatches) {
  TinyVision t(true);
  EXPECT_EQ(names_of(*t.m),
            (std::set<std::string>{"proj.weight", "proj.bias", "cls_token", "mask_token"}));
  // Any nonzero byte masks (2 behaves as 1, not as a blend weight of 2).
  Tensor mask = u8({1, 4}, {0, 1, 0, 2});
  Tensor out = t.m->forward(t.images, mask);
  EXPECT_EQ(out.to_vector<float>(),
            (std::vector<float>{10, 20, 4.5, -4.5, -7, 7, 12.5, -12.5, -7, 7}));
  // Without a mask the module acts as the plain embedding.
  EXPECT_EQ(t.m->forward(t.images).to_vector<float>()[4], 8.5f);

  // Masked patches give their pixels and the projection nothing; the mask token collects the
  // upstream gradient of the masked rows, the CLS token that of row 0.
  Tensor g = Tensor::from_vector(Shape{1, 5, 2}, std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  out.backward(g);
  EXPECT_EQ(t.m->cls_token.grad().to_vector<float>(), (std::vector<float>{1, 2}));
  EXPECT_EQ(t.m->mask_token.grad().to_vector<float>(), (std::vector<float>{5 + 9, 6 + 10}));
  EXPECT_EQ(t.m->proj_bias.grad().to_vector<float>(), (std::vector<float>{3 + 7, 4 + 8}));
  std::vector<float> gi = t.images.grad().to_vector<float>();
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      const int patch = (y / 2) * 2 + x / 2;
      const float expect = (patch == 1 || patch == 3) ? 0.f : (patch == 0 ? 3 - 4 : 7 - 8);
      EXPECT_EQ(gi[y * 4 + x], expect) << "pixel " << y << "," << x;
    }
}

TEST(VisionEmbedding, AnyImageSizeAllowsOtherMultiplesOfThePatch) {
  TinyVision t(false, true);
  Tensor img = randn({2, 1, 4, 6}, 3);
  EXPECT_EQ(t.m->forward(img).shape(), (Shape{2, 1 + 2 * 3, 2}));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        t.m->forward(randn({1, 1, 4, 5}, 3));
      },
      {"[VisionEmbedding]", "4x5", "patch size 2"}));
}

TEST(VisionEmbedding, GradcheckF64WithMask) {
  TinyVision t(true);
  t.m->to(DType::f64);
  Tensor img = randn({2, 1, 4, 4}, 11, DType::f64).set_requires_grad();
  Tensor mask = u8({2, 4}, {1, 0, 0, 1, 0, 1, 0, 0});
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return t.m->forward(img, mask); },
                        params_and(*t.m, {img})));
}

TEST(VisionEmbedding, ArgumentErrors) {
  TinyVision plain(false), masked(true);
  Tensor img = randn({1, 1, 4, 4}, 1);
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        plain.m->forward(randn({1, 1, 8, 8}, 1));
      },
      {"[VisionEmbedding]", "4x4", "8x8"}));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        plain.m->forward(randn({1, 3, 4, 4}, 1));
      },
      {"[VisionEmbedding]", "[B, 1, H, W]", "[1, 3, 4, 4]"}));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        plain.m->forward(randn({4, 4}, 1));
      },
      {"[VisionEmbedding]", "[4, 4]"}));
  EXPECT_TRUE(throws_with<ValueError>(
      [&] {
        plain.m->forward(img, u8({1, 4}, {0, 1, 0, 0}));
      },
      {"[VisionEmbedding]", "no mask_token"}));
  EXPECT_TRUE(throws_with<DTypeError>(
      [&] {
        masked.m->forward(img, Tensor::zeros({1, 4}));
      },
      {"[VisionEmbedding]", "u8"}));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        masked.m->forward(img, u8({1, 3}, {0, 1, 0}));
      },
      {"[VisionEmbedding]", "[1, 4]", "[1, 3]"}));
  Generator gen(1);
  nn::VisionEmbeddingOptions o;
  o.img_size = 10;
  o.patch_size = 4;
  EXPECT_TRUE(throws_with<ValueError>([&] { nn::VisionEmbedding bad(o, gen); },
                                      {"[VisionEmbedding]", "10", "4"}));
  o.img_size = 8;
  o.embed_dim = 0;
  EXPECT_TRUE(throws_with<ValueError>([&] { nn::VisionEmbedding bad(o, gen); },
                                      {"[VisionEmbedding]", "embed_dim 0"}));
}

// ------------------------------------------------------------------ ClipVisionTower

nn::ClipVisionOptions tiny_clip(bool l2) {
  nn::ClipVisionOptions o;
  o.image_size = 6;
  o.patch_size = 3;
  o.in_chans = 2;
  o.width = 5;
  o.l2_normalize = l2;
  return o;
}

TEST(ClipVisionTower, OpenClipNamesAndShapes) {
  Generator gen(3);
  nn::ClipVisionTower m(tiny_clip(false), gen);
  EXPECT_EQ(names_of(m), (std::set<std::string>{"conv1.weight", "class_embedding",
                                                "positional_embedding", "ln_pre.weight",
                                                "ln_pre.bias", "ln_post.weight", "ln_post.bias"}));
  EXPECT_EQ(m.conv1_weight.shape(), (Shape{5, 2, 3, 3}));
  EXPECT_EQ(m.class_embedding.shape(), (Shape{5}));
  EXPECT_EQ(m.positional_embedding.shape(), (Shape{5, 5}));  // 1 + 2*2 rows, no offset
  EXPECT_EQ(m.embed(randn({3, 2, 6, 6}, 1)).shape(), (Shape{3, 5, 5}));
}

TEST(ClipVisionTower, ClassTokenRowIsClassEmbeddingPlusPositionZero) {
  // Row 0 of the front does not depend on the image: ln_pre(class_embedding + pos[0]). With
  // width 2 and LN weight 1, bias 0 a row (a, b) normalises to (-1, 1) sign(b - a) (up to eps).
  nn::ClipVisionOptions o = tiny_clip(false);
  o.width = 2;
  Generator gen(3);
  nn::ClipVisionTower m(o, gen);
  set(m.class_embedding, {1, 2});
  set(m.positional_embedding, {2, 0, 0, 0, 0, 0, 0, 0, 0, 0});  // row 0: (3, 2) -> (1, -1)
  Tensor a = m.embed(randn({1, 2, 6, 6}, 1)), b = m.embed(randn({1, 2, 6, 6}, 2));
  EXPECT_TRUE(all_close(a.slice(1, 0, 1),
                        Tensor::from_vector(Shape{1, 1, 2}, std::vector<float>{1, -1}), 1e-5,
                        1e-4));
  EXPECT_TRUE(all_close(a.slice(1, 0, 1), b.slice(1, 0, 1), 0, 0));
  EXPECT_FALSE(all_close(a.slice(1, 1, 5), b.slice(1, 1, 5), 1e-3, 1e-3));
}

TEST(ClipVisionTower, PostNormalisesEveryTokenAndL2) {
  Generator gen(4);
  nn::ClipVisionTower plain(tiny_clip(false), gen), l2(tiny_clip(true), gen);
  Tensor x = ops::mul(randn({2, 5, 5}, 9), 3.0);
  // ln_post on all 1 + N tokens (not only the class token): each row has mean 0, variance 1.
  Tensor y = plain.post(x);
  std::vector<float> v = y.to_vector<float>();
  for (int r = 0; r < 10; ++r) {
    double mean = 0, var = 0;
    for (int c = 0; c < 5; ++c) mean += v[r * 5 + c] / 5.0;
    for (int c = 0; c < 5; ++c) var += (v[r * 5 + c] - mean) * (v[r * 5 + c] - mean) / 5.0;
    EXPECT_NEAR(mean, 0.0, 1e-6) << "row " << r;
    EXPECT_NEAR(var, 1.0, 1e-4) << "row " << r;
  }
  // With L2: every token has unit norm and points along ln_post's output (here with LN weight 1
  // and bias 0, the norm of an LN output is sqrt(C) up to eps).
  Tensor z = l2.post(x);
  std::vector<float> w = z.to_vector<float>();
  for (int r = 0; r < 10; ++r) {
    double n2 = 0;
    for (int c = 0; c < 5; ++c) n2 += w[r * 5 + c] * w[r * 5 + c];
    EXPECT_NEAR(n2, 1.0, 1e-5) << "row " << r;
  }
  EXPECT_TRUE(all_close(z, ops::mul(y, 1.0 / std::sqrt(5.0)), 1e-4, 1e-5));
}

TEST(ClipVisionTower, ForwardRunsBlocksBetweenFrontAndBack) {
  Generator gen(5);
  nn::ClipVisionTower m(tiny_clip(true), gen);
  Tensor img = randn({2, 2, 6, 6}, 4);
  Shape seen;
  auto blocks = [&](const Tensor& x) {
    seen = x.shape();
    return ops::mul(x, 2.0);
  };
  Tensor out = m.forward(img, blocks);
  EXPECT_EQ(seen, (Shape{2, 5, 5}));
  EXPECT_TRUE(all_close(out, m.post(ops::mul(m.embed(img), 2.0)), 0, 0));
  // No blocks: post(embed(x)).
  EXPECT_TRUE(all_close(m.forward(img, nullptr), m.post(m.embed(img)), 0, 0));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] { m.forward(img, [](const Tensor& x) { return x.slice(1, 0, 2); }); },
      {"[ClipVisionTower]", "[2, 5, 5]", "[2, 2, 5]"}));
}

TEST(ClipVisionTower, GradcheckF64) {
  Generator gen(6);
  nn::ClipVisionOptions o = tiny_clip(true);
  o.image_size = 3;  // one patch: keeps the finite-difference loop short
  nn::ClipVisionTower m(o, gen);
  m.to(DType::f64);
  // LN affine away from 1 / 0 so their gradients are not the trivial ones.
  set(m.ln_pre->weight, {1.2, 0.7, 1.1, 0.9, 1.3});
  set(m.ln_post->bias, {0.1, -0.2, 0.3, 0.0, 0.2});
  Tensor img = randn({2, 2, 3, 3}, 8, DType::f64).set_requires_grad();
  auto blocks = [](const Tensor& x) { return x + 0.5 * ops::tanh(x); };
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return m.forward(img, blocks); },
                        params_and(m, {img}), 1e-6, 1e-5, 1e-7));
}

TEST(ClipVisionTower, ArgumentErrors) {
  Generator gen(7);
  nn::ClipVisionTower m(tiny_clip(false), gen);
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        m.embed(randn({1, 2, 9, 9}, 1));
      },
      {"[ClipVisionTower]", "[B, 2, 6, 6]", "[1, 2, 9, 9]"}));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        m.post(randn({1, 5, 4}, 1));
      },
      {"[ClipVisionTower]", "[B, T, 5]", "[1, 5, 4]"}));
  nn::ClipVisionOptions o = tiny_clip(false);
  o.image_size = 7;
  EXPECT_TRUE(throws_with<ValueError>([&] { nn::ClipVisionTower bad(o, gen); },
                                      {"[ClipVisionTower]", "7", "3"}));
}

// ------------------------------------------------------------------ connectors

TEST(Connector, NamesAndKinds) {
  Generator gen(1);
  nn::ConnectorOptions o;
  o.num_heads = 2;
  o.latent_query_num = 3;
  auto none = nn::build_connector("none", 4, 4, o, gen);
  auto simple = nn::build_connector("simple", 4, 6, o, gen);
  auto complex = nn::build_connector("complex", 4, 6, o, gen);
  auto x = nn::build_connector("xconnector", 4, 6, o, gen);
  EXPECT_EQ(none->kind(), "none");
  EXPECT_TRUE(names_of(*none).empty());
  EXPECT_EQ(names_of(*simple), (std::set<std::string>{"dense.weight", "dense.bias"}));
  EXPECT_EQ(names_of(*complex), (std::set<std::string>{"dense.weight", "dense.bias",
                                                       "predict.weight", "predict.bias"}));
  std::set<std::string> xn = {"dense.weight", "dense.bias", "latent_query"};
  for (const char* p : {"q_proj", "k_proj", "v_proj", "out_proj"})
    for (const char* w : {".weight", ".bias"}) xn.insert(std::string("x_attn.") + p + w);
  EXPECT_EQ(names_of(*x), xn);
  auto* xc = dynamic_cast<nn::XConnector*>(x.get());
  ASSERT_NE(xc, nullptr);
  EXPECT_EQ(xc->latent_query.shape(), (Shape{3, 6}));
  EXPECT_EQ(xc->dense->weight.shape(), (Shape{6, 4}));
  EXPECT_EQ(dynamic_cast<nn::ComplexConnector*>(complex.get())->dense->weight.shape(),
            (Shape{4, 4}));
}

TEST(Connector, TokenWiseValues) {
  Generator gen(2);
  // Complex with dense = I, bias (-1, 0, 1) and predict = [[1, 1, 1]], bias 0.5:
  // out = 0.5 + sum_i gelu(x_i + b_i). Inputs chosen so gelu is known: gelu(0) = 0, gelu(v) for
  // large |v| is v (v > 0) or 0 (v < 0) to within 1e-20.
  nn::ComplexConnector c(3, 1, ops::Activation::gelu, gen);
  set(c.dense->weight, {1, 0, 0, 0, 1, 0, 0, 0, 1});
  set(c.dense->bias, {-1, 0, 1});
  set(c.predict->weight, {1, 1, 1});
  set(c.predict->bias, {0.5});
  Tensor x = Tensor::from_vector(Shape{2, 3}, std::vector<float>{1, 12, -30, -20, 0, 9});
  // row 0: gelu(0) + gelu(12) + gelu(-29) = 12; row 1: gelu(-21) + gelu(0) + gelu(10) = 10
  EXPECT_TRUE(all_close(
      c.forward(x), Tensor::from_vector(Shape{2, 1}, std::vector<float>{12.5, 10.5}), 1e-6, 1e-6));
  // The activation is a parameter: relu gives the same here.
  nn::ComplexConnector r(3, 1, ops::Activation::relu, gen);
  r.load_state_dict(c.state_dict());
  EXPECT_TRUE(all_close(r.forward(x), c.forward(x), 1e-6, 1e-6));

  nn::SimpleConnector s(2, 3, gen);
  set(s.dense->weight, {1, 0, 0, 1, 1, -1});
  set(s.dense->bias, {0, 10, 0});
  Tensor y = s.forward(Tensor::from_vector(Shape{1, 1, 2}, std::vector<float>{2, 5}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{2, 15, -3}));
  // Any leading shape: MetaLM's span features arrive as [N_tokens, d_in].
  EXPECT_EQ(s.forward(randn({7, 2}, 1)).shape(), (Shape{7, 3}));
  Tensor f = randn({2, 4}, 1);
  auto none = nn::build_connector("none", 4, 4, {}, gen);
  EXPECT_EQ(none->forward(f).impl_ptr(), f.impl_ptr());
}

TEST(Connector, GradcheckF64SimpleComplex) {
  Generator gen(3);
  for (const std::string kind : {"simple", "complex"}) {
    SCOPED_TRACE(kind);
    auto m = nn::build_connector(kind, 3, 4, {}, gen);
    m->to(DType::f64);
    Tensor x = randn({2, 3, 3}, 5, DType::f64).set_requires_grad();
    EXPECT_TRUE(
        gradcheck([&](const std::vector<Tensor>&) { return m->forward(x); }, params_and(*m, {x})));
  }
}

std::shared_ptr<nn::XConnector> tiny_x(int64_t d_in, int64_t d_out, int64_t q, int64_t heads,
                                       uint64_t seed) {
  Generator gen(seed);
  return std::make_shared<nn::XConnector>(d_in, d_out, q, heads, 0.0, gen);
}

TEST(Connector, XConnectorOverIdenticalKeysAveragesToValueOfQuery) {
  // dense = 0 with bias = the single latent query: every key/value row equals the query, so the
  // softmax is uniform and the output is out_proj(v_proj(latent_query)) whatever q/k are.
  auto m = tiny_x(3, 4, 1, 2, 4);
  set(m->dense->weight, std::vector<double>(12, 0.0));
  NoGradGuard ng;
  copy_into(m->dense->bias, m->latent_query.reshape({4}));
  Tensor out = m->forward(randn({2, 5, 3}, 6));
  ASSERT_EQ(out.shape(), (Shape{2, 1, 4}));
  Tensor expect = m->x_attn->out_proj.only().forward(
      m->x_attn->v_proj.only().forward(m->latent_query));  // [1, 4]
  EXPECT_TRUE(all_close(out.slice(0, 0, 1).reshape({1, 4}), expect, 1e-5, 1e-6));
  EXPECT_TRUE(all_close(out.slice(0, 1, 2).reshape({1, 4}), expect, 1e-5, 1e-6));
}

TEST(Connector, XConnectorIsPerImageAndIgnoresFeatureOrder) {
  auto m = tiny_x(3, 8, 4, 2, 5);
  Tensor x = randn({3, 6, 3}, 7);
  Tensor out = m->forward(x);
  ASSERT_EQ(out.shape(), (Shape{3, 4, 8}));
  // Image b's vectors depend only on image b.
  for (int64_t b = 0; b < 3; ++b)
    EXPECT_TRUE(all_close(m->forward(x.slice(0, b, b + 1)), out.slice(0, b, b + 1), 1e-5, 1e-6))
        << "image " << b;
  // No positions inside the resampler: permuting the features leaves the output unchanged.
  Tensor rev = ops::concat({x.slice(1, 3, 6), x.slice(1, 0, 3)}, 1);
  EXPECT_TRUE(all_close(m->forward(rev), out, 1e-5, 1e-6));
  // Docking layout: [B * Q, d] rows in image-major order.
  Tensor flat = nn::flatten_tokens(out);
  ASSERT_EQ(flat.shape(), (Shape{12, 8}));
  EXPECT_TRUE(all_close(flat.slice(0, 4, 8), out.slice(0, 1, 2).reshape({4, 8}), 0, 0));
}

TEST(Connector, GradcheckF64XConnector) {
  auto m = tiny_x(3, 4, 2, 2, 6);
  m->to(DType::f64);
  Tensor x = randn({2, 3, 3}, 9, DType::f64).set_requires_grad();
  EXPECT_TRUE(
      gradcheck([&](const std::vector<Tensor>&) { return m->forward(x); }, params_and(*m, {x})));
}

TEST(Connector, ArgumentErrors) {
  Generator gen(8);
  nn::ConnectorOptions o;
  EXPECT_TRUE(throws_with<ValueError>([&] { nn::build_connector("mlp", 4, 4, o, gen); },
                                      {"[build_connector]", "'mlp'", "xconnector"}));
  EXPECT_TRUE(throws_with<ValueError>([&] { nn::build_connector("none", 4, 6, o, gen); },
                                      {"[none connector]", "4 -> 6"}));
  EXPECT_TRUE(throws_with<ValueError>([&] { nn::build_connector("simple", 0, 6, o, gen); },
                                      {"[build_connector]", "0 -> 6"}));
  EXPECT_TRUE(throws_with<ValueError>([&] { nn::build_connector("xconnector", 4, 6, o, gen); },
                                      {"[xconnector]", "num_heads 0"}));
  o.num_heads = 4;
  EXPECT_TRUE(throws_with<ValueError>([&] { nn::build_connector("xconnector", 4, 6, o, gen); },
                                      {"[xconnector]", "d_out 6", "num_heads 4"}));
  o.num_heads = 2;
  o.latent_query_num = 0;
  EXPECT_TRUE(throws_with<ValueError>([&] { nn::build_connector("xconnector", 4, 6, o, gen); },
                                      {"[xconnector]", "latent_query_num"}));
  o.latent_query_num = 2;

  auto s = nn::build_connector("simple", 4, 6, o, gen);
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        s->forward(randn({2, 5}, 1));
      },
      {"[simple connector]", "[..., 4]", "[2, 5]"}));
  auto x = nn::build_connector("xconnector", 4, 6, o, gen);
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        x->forward(randn({5, 4}, 1));
      },
      {"[xconnector]", "[B, N, 4]", "[5, 4]"}));
  EXPECT_TRUE(throws_with<ShapeError>(
      [&] {
        nn::flatten_tokens(randn({5, 4}, 1));
      },
      {"[flatten_tokens]", "[5, 4]"}));
}

}  // namespace
