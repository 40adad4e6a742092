// VisionEmbedding, ClipVisionTower and the connectors against PyTorch
// (tests/reference/ref_vision_connectors.py, written from reference-spec 2.3, 3.3, 4.2, 4.3):
// weights loaded by their C++ state-dict names (strict), then the output and the gradients of
// every parameter and every float input, in f32 and f64.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "metalm/io/safetensors.h"
#include "metalm/nn/connector.h"
#include "metalm/nn/vision.h"
#include "metalm/ops/elementwise.h"

using namespace metalm;
using metalm::test::all_close;

namespace {

// Every test runs each case twice: f32 (the engine's working dtype) and f64 (the parameters
// converted in place after loading, to separate math errors from f32 rounding).
class VisionConnectorRef : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = metalm::test::reference_dir();
    if (!dir.empty()) file_ = io::load_safetensors(dir + "/vision_connectors.safetensors");
  }
  void SetUp() override {
    if (file_.tensors.empty()) GTEST_SKIP() << "METALM_REF_DIR not set (run through ctest)";
  }
  bool f64() const { return f64_; }
  DType dtype() const { return f64() ? DType::f64 : DType::f32; }

  static const Tensor& get(const std::string& key) {
    auto it = file_.tensors.find(key);
    if (it == file_.tensors.end()) throw std::runtime_error("missing reference tensor " + key);
    return it->second;
  }
  static int64_t meta(const std::string& c, const std::string& field) {
    auto it = file_.metadata.find(c + "." + field);
    if (it == file_.metadata.end())
      throw std::runtime_error("missing reference metadata " + c + "." + field);
    return std::stoll(it->second);
  }
  // "<case>.param.<name>" -> {"<name>": tensor}
  static TensorMap state_of(const std::string& c) {
    TensorMap sd;
    const std::string prefix = c + ".param.";
    for (const auto& [k, t] : file_.tensors)
      if (k.rfind(prefix, 0) == 0) sd[k.substr(prefix.size())] = t;
    return sd;
  }
  // A float input as a fresh leaf in the test dtype.
  Tensor input(const std::string& c, const std::string& name) const {
    return get(c + ".in." + name).to(dtype()).clone().set_requires_grad();
  }

  // Loads the case's weights (strict), runs fn, backpropagates gout, and compares the output and
  // every parameter and input gradient with PyTorch's.
  void check(const std::string& c, nn::Module& m,
             const std::vector<std::pair<std::string, Tensor>>& inputs,
             const std::function<Tensor()>& fn) {
    SCOPED_TRACE(c + (f64() ? " (f64)" : " (f32)"));
    // The reference values are exact (f64 math on the stored f32 inputs). f32: per-element
    // rounding of O(1) values through short sums, so 1e-5 relative with an absolute floor of
    // 2e-6 for entries near zero; f64: agreement to rounding.
    const double rtol = f64() ? 1e-10 : 1e-5, atol = f64() ? 1e-12 : 2e-6;
    Tensor out = fn();
    EXPECT_EQ(out.dtype(), dtype());
    EXPECT_TRUE(all_close(out, get(c + ".out"), rtol, atol)) << "out";
    out.backward(get(c + ".gout").to(dtype()));
    for (const auto& [name, p] : m.named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << "no gradient for " << name;
      EXPECT_TRUE(all_close(p.grad(), get(c + ".grad.param." + name), rtol, atol))
          << "grad " << name;
    }
    for (const auto& [name, x] : inputs)
      EXPECT_TRUE(all_close(x.grad(), get(c + ".grad.in." + name), rtol, atol))
          << "grad input " << name;
  }

  void load(const std::string& c, nn::Module& m) const {
    m.load_state_dict(state_of(c), /*strict=*/true);
    if (f64()) m.to(DType::f64);
  }

  static io::SafetensorsFile file_;
  bool f64_ = false;
};

io::SafetensorsFile VisionConnectorRef::file_;

// gtest names that the filters 'Vision*' and 'Connector*' select.
class VisionRef : public VisionConnectorRef {};
class ConnectorRef : public VisionConnectorRef {};

TEST_F(VisionRef, VisionEmbedding) {
  for (bool use_f64 : {false, true})
    for (const std::string c : {"vision_embed", "vision_embed_mask"}) {
      f64_ = use_f64;
      nn::VisionEmbeddingOptions o;
      o.img_size = meta(c, "img_size");
      o.patch_size = meta(c, "patch_size");
      o.in_chans = meta(c, "in_chans");
      o.embed_dim = meta(c, "embed_dim");
      o.mask_token = meta(c, "mask_token") != 0;
      o.any_image_size = meta(c, "any_image_size") != 0;
      Generator gen(1);
      nn::VisionEmbedding m(o, gen);
      load(c, m);
      Tensor images = input(c, "images");
      Tensor mask = o.mask_token ? get(c + ".const.masked_positions") : Tensor();
      check(c, m, {{"images", images}}, [&] { return m.forward(images, mask); });
    }
}

TEST_F(VisionRef, ClipVisionTower) {
  for (bool use_f64 : {false, true})
    for (const std::string c : {"clip", "clip_plain"}) {
      f64_ = use_f64;
      nn::ClipVisionOptions o;
      o.image_size = meta(c, "image_size");
      o.patch_size = meta(c, "patch_size");
      o.in_chans = meta(c, "in_chans");
      o.width = meta(c, "width");
      o.l2_normalize = meta(c, "l2_normalize") != 0;
      Generator gen(2);
      nn::ClipVisionTower m(o, gen);
      load(c, m);
      Tensor images = input(c, "images");
      // The reference's parameter-free stand-in for the residual blocks.
      std::function<Tensor(const Tensor&)> blocks;
      if (meta(c, "blocks")) blocks = [](const Tensor& x) { return x + 0.5 * ops::tanh(x); };
      check(c, m, {{"images", images}}, [&] { return m.forward(images, blocks); });
    }
}

TEST_F(ConnectorRef, SimpleAndComplex) {
  for (bool use_f64 : {false, true})
    for (const std::string c : {"simple", "complex"}) {
      f64_ = use_f64;
      Generator gen(3);
      auto m = nn::build_connector(c, meta(c, "d_in"), meta(c, "d_out"), {}, gen);
      EXPECT_EQ(m->kind(), c);
      load(c, *m);
      Tensor x = input(c, "x");
      check(c, *m, {{"x", x}}, [&] { return m->forward(x); });
    }
}

TEST_F(ConnectorRef, XConnector) {
  for (bool use_f64 : {false, true}) {
    f64_ = use_f64;
    const std::string c = "xconnector";
    nn::ConnectorOptions o;
    o.num_heads = meta(c, "num_heads");
    o.latent_query_num = meta(c, "latent_query_num");
    Generator gen(4);
    auto m = nn::build_connector(c, meta(c, "d_in"), meta(c, "d_out"), o, gen);
    load(c, *m);
    Tensor x = input(c, "x");
    check(c, *m, {{"x", x}}, [&] { return m->forward(x); });
  }
}

}  // namespace
