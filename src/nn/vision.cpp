// VisionEmbedding (BEiT-3) and ClipVisionTower (CLIP ViT front and back), built from
// differentiable ops (patchify, concat, elementwise, layer_norm, l2_normalize), so every
// parameter gets its gradient from those ops' backward.
#include "metalm/nn/vision.h"

#include <cmath>
#include <string>
#include <vector>

#include "metalm/ops/elementwise.h"
#include "metalm/ops/norm.h"
#include "metalm/ops/shape.h"
#include "metalm/ops/vision.h"

namespace metalm::nn {

namespace {

// A parameter container for a sublayer that has no class of its own (a Conv2d used only as
// patchify), so its tensors get torch's dotted names ("proj.weight").
struct ParameterGroup : Module {
  Tensor add(const std::string& name, Tensor value) { return register_parameter(name, value); }
};

// torch.nn.Conv2d's default init bound: kaiming_uniform(a = sqrt(5)) gives 1/sqrt(fan_in) for
// the weight, and the bias uses the same bound.
double conv_bound(int64_t in_chans, int64_t patch) {
  return 1.0 / std::sqrt(static_cast<double>(in_chans * patch * patch));
}

// cls: [1, 1, d] (or [d]) -> [B, 1, d] broadcast view, prepended to x: [B, N, d] -> [B, 1 + N, d].
Tensor prepend_token(const Tensor& token, const Tensor& x) {
  const int64_t b = x.size(0), d = x.size(2);
  return ops::concat({token.reshape({1, 1, d}).expand({b, 1, d}), x}, 1);
}

}  // namespace

// ------------------------------------------------------------------ VisionEmbedding

VisionEmbedding::VisionEmbedding(const VisionEmbeddingOptions& o, Generator& gen) : options(o) {
  MLM_CHECK(o.img_size > 0 && o.patch_size > 0 && o.in_chans > 0 && o.embed_dim > 0, ValueError,
            "[VisionEmbedding] sizes must be positive: img_size ", o.img_size, ", patch_size ",
            o.patch_size, ", in_chans ", o.in_chans, ", embed_dim ", o.embed_dim);
  MLM_CHECK(o.img_size % o.patch_size == 0, ValueError, "[VisionEmbedding] img_size ", o.img_size,
            " is not divisible by patch_size ", o.patch_size);
  const int64_t d = o.embed_dim, c = o.in_chans, p = o.patch_size;
  const double bound = conv_bound(c, p);
  auto proj = register_module("proj", std::make_shared<ParameterGroup>());
  proj_weight = proj->add("weight", gen.uniform({d, c, p, p}, -bound, bound));
  proj_bias = proj->add("bias", gen.uniform({d}, -bound, bound));
  if (o.mask_token)
    mask_token = register_parameter("mask_token", gen.trunc_normal({1, 1, d}, 0.02));
  cls_token = register_parameter("cls_token", gen.trunc_normal({1, 1, d}, 0.02));
}

int64_t VisionEmbedding::num_patches() const {
  const int64_t g = options.img_size / options.patch_size;
  return g * g;
}

// images: [B, C, H, W], masked_positions: u8 [B, N] -> [B, 1 + N, d]
Tensor VisionEmbedding::forward(const Tensor& images, const Tensor& masked_positions) const {
  const auto& o = options;
  MLM_CHECK(images.defined() && images.dim() == 4 && images.size(1) == o.in_chans, ShapeError,
            "[VisionEmbedding] images must be [B, ", o.in_chans, ", H, W], got ", images.str());
  const int64_t h = images.size(2), w = images.size(3);
  if (o.any_image_size) {
    MLM_CHECK(h % o.patch_size == 0 && w % o.patch_size == 0 && h > 0 && w > 0, ShapeError,
              "[VisionEmbedding] image size ", h, "x", w, " is not a positive multiple of the ",
              "patch size ", o.patch_size);
  } else {
    MLM_CHECK(h == o.img_size && w == o.img_size, ShapeError, "[VisionEmbedding] expected ",
              o.img_size, "x", o.img_size, " images (the position table is sized for them), got ",
              h, "x", w, "; set any_image_size to interpolate positions yourself");
  }
  Tensor x = ops::patchify(images, proj_weight, proj_bias, o.patch_size);  // [B, N, d]
  const int64_t b = x.size(0), n = x.size(1), d = x.size(2);
  if (masked_positions.defined()) {
    MLM_CHECK(mask_token.defined(), ValueError,
              "[VisionEmbedding] masked_positions given but the module has no mask_token");
    MLM_CHECK(masked_positions.dtype() == DType::u8, DTypeError,
              "[VisionEmbedding] masked_positions must be u8, got ", masked_positions.str());
    MLM_CHECK(masked_positions.shape() == (Shape{b, n}), ShapeError,
              "[VisionEmbedding] masked_positions must be [", b, ", ", n, "], got ",
              masked_positions.str());
    // 0/1 weights [B, N, 1] in x's dtype; any nonzero byte counts as 1, so the blend below is an
    // exact replacement (a plain u8 -> float cast would turn a 2 into a weight of 2).
    std::vector<uint8_t> mv = masked_positions.contiguous().to_vector<uint8_t>();
    std::vector<double> m01(mv.size());
    for (size_t i = 0; i < mv.size(); ++i) m01[i] = mv[i] != 0 ? 1.0 : 0.0;
    const Tensor m = Tensor::from_vector(Shape{b, n, 1}, m01).to(x.dtype());
    // x (1 - m) + mask_token m: [B, N, d] * [B, N, 1] + [1, 1, d] * [B, N, 1]
    x = ops::add(ops::mul(x, ops::add(ops::neg(m), 1.0)),
                 ops::mul(mask_token.reshape({1, 1, d}), m));
  }
  return prepend_token(cls_token, x);
}

// ------------------------------------------------------------------ ClipVisionTower

ClipVisionTower::ClipVisionTower(const ClipVisionOptions& o, Generator& gen) : options(o) {
  MLM_CHECK(o.image_size > 0 && o.patch_size > 0 && o.in_chans > 0 && o.width > 0, ValueError,
            "[ClipVisionTower] sizes must be positive: image_size ", o.image_size, ", patch_size ",
            o.patch_size, ", in_chans ", o.in_chans, ", width ", o.width);
  MLM_CHECK(o.image_size % o.patch_size == 0, ValueError, "[ClipVisionTower] image_size ",
            o.image_size, " is not divisible by patch_size ", o.patch_size);
  const int64_t w = o.width, c = o.in_chans, p = o.patch_size;
  const double bound = conv_bound(c, p), scale = 1.0 / std::sqrt(static_cast<double>(w));
  auto conv1 = register_module("conv1", std::make_shared<ParameterGroup>());
  conv1_weight = conv1->add("weight", gen.uniform({w, c, p, p}, -bound, bound));
  class_embedding = register_parameter("class_embedding", gen.normal({w}, 0.0, scale));
  positional_embedding =
      register_parameter("positional_embedding", gen.normal({num_patches() + 1, w}, 0.0, scale));
  ln_pre = register_module("ln_pre", std::make_shared<LayerNorm>(w, o.layernorm_eps));
  ln_post = register_module("ln_post", std::make_shared<LayerNorm>(w, o.layernorm_eps));
}

int64_t ClipVisionTower::num_patches() const {
  const int64_t g = options.image_size / options.patch_size;
  return g * g;
}

// images: [B, C, S, S] -> [B, 1 + N, w]
Tensor ClipVisionTower::embed(const Tensor& images) const {
  const auto& o = options;
  MLM_CHECK(images.defined() && images.dim() == 4 && images.size(1) == o.in_chans &&
                images.size(2) == o.image_size && images.size(3) == o.image_size,
            ShapeError, "[ClipVisionTower] images must be [B, ", o.in_chans, ", ", o.image_size,
            ", ", o.image_size, "] (the position table is sized for them), got ", images.str());
  Tensor x = ops::patchify(images, conv1_weight, Tensor(), o.patch_size);  // [B, N, w]
  x = prepend_token(class_embedding, x);                                   // [B, 1 + N, w]
  x = ops::add(x, positional_embedding);  // [1 + N, w] broadcast over B
  return ln_pre->forward(x);
}

// x: [B, T, w] -> [B, T, w]
Tensor ClipVisionTower::post(const Tensor& x) const {
  MLM_CHECK(x.defined() && x.dim() == 3 && x.size(2) == options.width, ShapeError,
            "[ClipVisionTower] post expects [B, T, ", options.width, "], got ", x.str());
  Tensor y = ln_post->forward(x);
  // torch.nn.functional.normalize's eps (1e-12): only an all-zero token would reach it.
  return options.l2_normalize ? ops::l2_normalize(y) : y;
}

Tensor ClipVisionTower::forward(const Tensor& images,
                                const std::function<Tensor(const Tensor&)>& blocks) const {
  Tensor x = embed(images);
  if (blocks) {
    const Shape in_shape = x.shape();
    x = blocks(x);
    MLM_CHECK(x.defined() && x.shape() == in_shape, ShapeError,
              "[ClipVisionTower] the block stack must keep the shape ", shape_str(in_shape),
              ", got ", x.defined() ? x.str() : std::string("an undefined tensor"));
  }
  return post(x);
}

}  // namespace metalm::nn
