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

#include "common/reference_file.h"
#include "metalm/nn/connector.h"
#include "metalm/nn/vision.h"
#include "metalm/ops/elementwise.h"

using namespace metalm;

namespace {

// Every test runs each case twice: f32 (the engine's working dtype) and f64 (the parameters
// converted in place after loading, to separate math errors from f32 rounding).
class VisionConnectorRef : public test::ReferenceTest<> {
 protected:
  VisionConnectorRef() : ReferenceTest("vision_connectors") {}
  bool f64() const { return f64_; }
  DType dtype() const { return f64() ? DType::f64 : DType::f32; }

  // Runs fn on the case's float inputs (fresh leaves in the test dtype), backpropagates gout,
  // and compares the output and every parameter and input gradient with PyTorch's.
  void check(const std::string& c, const nn::Module& m, const std::vector<std::string>& inputs,
             const test::OpFn& fn) const {
    SCOPED_TRACE(c + (f64() ? " (f64)" : " (f32)"));
    // The reference values are exact (f64 math on the stored f32 inputs). f32: per-element
    // rounding of O(1) values through short sums, so 1e-5 relative with an absolute floor of
    // 2e-6 for entries near zero; f64: agreement to rounding.
    test::OpCheck how = f64() ? test::OpCheck(1e-10, 1e-12) : test::OpCheck(1e-5, 2e-6);
    how.dtype = dtype();
    how.module = &m;
    how.input_grad_prefix = "grad.in.";
    ReferenceTest::check(c, inputs, fn, how);
  }

  // Loads the case's weights "<case>.param.<name>" (strict), in the test dtype.
  void load(const std::string& c, nn::Module& m) const {
    m.load_state_dict(with_prefix(c + ".param."), /*strict=*/true);
    if (f64()) m.to(DType::f64);
  }

  bool f64_ = false;
};

// gtest names that the filters 'Vision*' and 'Connector*' select.
class VisionRef : public VisionConnectorRef {};
class ConnectorRef : public VisionConnectorRef {};

TEST_F(VisionRef, VisionEmbedding) {
  for (bool use_f64 : {false, true})
    for (const std::string c : {"vision_embed", "vision_embed_mask"}) {
      f64_ = use_f64;
      nn::VisionEmbeddingOptions o;
      o.img_size = meta_int(c + ".img_size");
      o.patch_size = meta_int(c + ".patch_size");
      o.in_chans = meta_int(c + ".in_chans");
      o.embed_dim = meta_int(c + ".embed_dim");
      o.mask_token = meta_int(c + ".mask_token") != 0;
      o.any_image_size = meta_int(c + ".any_image_size") != 0;
      Generator gen(1);
      nn::VisionEmbedding m(o, gen);
      load(c, m);
      Tensor mask = o.mask_token ? get(c + ".const.masked_positions") : Tensor();
      check(c, m, {"images"}, [&](auto& in) { return m.forward(in[0], mask); });
    }
}

TEST_F(VisionRef, ClipVisionTower) {
  for (bool use_f64 : {false, true})
    for (const std::string c : {"clip", "clip_plain"}) {
      f64_ = use_f64;
      nn::ClipVisionOptions o;
      o.image_size = meta_int(c + ".image_size");
      o.patch_size = meta_int(c + ".patch_size");
      o.in_chans = meta_int(c + ".in_chans");
      o.width = meta_int(c + ".width");
      o.l2_normalize = meta_int(c + ".l2_normalize") != 0;
      Generator gen(2);
      nn::ClipVisionTower m(o, gen);
      load(c, m);
      // The reference's parameter-free stand-in for the residual blocks.
      std::function<Tensor(const Tensor&)> blocks;
      if (meta_int(c + ".blocks")) blocks = [](const Tensor& x) { return x + 0.5 * ops::tanh(x); };
      check(c, m, {"images"}, [&](auto& in) { return m.forward(in[0], blocks); });
    }
}

TEST_F(ConnectorRef, SimpleAndComplex) {
  for (bool use_f64 : {false, true})
    for (const std::string c : {"simple", "complex"}) {
      f64_ = use_f64;
      Generator gen(3);
      auto m = nn::build_connector(c, meta_int(c + ".d_in"), meta_int(c + ".d_out"), {}, gen);
      EXPECT_EQ(m->kind(), c);
      load(c, *m);
      check(c, *m, {"x"}, [&](auto& in) { return m->forward(in[0]); });
    }
}

TEST_F(ConnectorRef, XConnector) {
  for (bool use_f64 : {false, true}) {
    f64_ = use_f64;
    const std::string c = "xconnector";
    nn::ConnectorOptions o;
    o.num_heads = meta_int(c + ".num_heads");
    o.latent_query_num = meta_int(c + ".latent_query_num");
    Generator gen(4);
    auto m = nn::build_connector(c, meta_int(c + ".d_in"), meta_int(c + ".d_out"), o, gen);
    load(c, *m);
    check(c, *m, {"x"}, [&](auto& in) { return m->forward(in[0]); });
  }
}

}  // namespace
