// Image fronts of the vision encoders: BEiT-3's VisionEmbedding (patchify + CLS + optional MIM
// mask token, reference-spec 2.3) and the CLIP ViT tower's own parameters (conv1, class token,
// positions, ln_pre, ln_post, optional per-token L2 normalisation; reference-spec 4.2).
#pragma once
#include <functional>
#include <memory>

#include "metalm/core/random.h"
#include "metalm/nn/layers.h"

namespace metalm::nn {

struct VisionEmbeddingOptions {
  int64_t img_size = 224;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  int64_t embed_dim = 768;
  bool mask_token = false;  // BEiT-3 pretraining (masked image modeling) adds "mask_token"
  // false (default): images must be img_size x img_size, because the encoder's vision position
  // table has exactly num_patches() + 1 (+ 2 fairseq offset) rows. true: any H, W divisible by
  // the patch size, for callers that interpolate the position table themselves (spec 2.3,
  // load_model_and_may_interpolate).
  bool any_image_size = false;
};

// BEiT-3 / TorchScale VisionEmbedding. Names: "proj.weight" [d, C, P, P] and "proj.bias" [d] (the
// Conv2d(kernel = stride = P), run as ops::patchify), "cls_token" [1, 1, d], "mask_token"
// [1, 1, d] (only with options.mask_token). Positions are not added here: BEiT-3 keeps them in
// the encoder ("encoder.embed_positions.A"), indexed from row 2.
class VisionEmbedding : public Module {
 public:
  // Init: proj as torch.nn.Conv2d (uniform +-1/sqrt(C P P) for weight and bias); cls_token and
  // mask_token trunc_normal(std 0.02), as BEiT-3's fine-tuning wrapper does.
  VisionEmbedding(const VisionEmbeddingOptions& options, Generator& gen);

  // images: [B, C, H, W]; masked_positions: optional u8 [B, N] (1 = replace this patch by the
  // mask token) -> [B, 1 + N, d] with the CLS token first. N = (H / P) * (W / P).
  // Masking is the blend x (1 - m) + mask_token m of the reference, so a masked patch's own
  // projection gets exactly zero gradient.
  Tensor forward(const Tensor& images, const Tensor& masked_positions = Tensor()) const;

  int64_t num_patches() const;  // at img_size: (img_size / P)^2
  // Rows a BEiT-3 vision position table needs: CLS + patches (the encoder adds its 2-row offset).
  int64_t num_position_embeddings() const { return num_patches() + 1; }

  VisionEmbeddingOptions options;
  Tensor proj_weight, proj_bias, cls_token, mask_token;  // mask_token undefined unless enabled
};

struct ClipVisionOptions {
  int64_t image_size = 224;
  int64_t patch_size = 14;
  int64_t in_chans = 3;
  int64_t width = 1024;
  double layernorm_eps = 1e-5;
  // KOSMOS-2 (ClipVisualOnly): every output token divided by its L2 norm after ln_post.
  bool l2_normalize = false;
};

// The parameters a CLIP ViT visual tower owns outside its residual blocks, with open_clip's
// state-dict names so a visual tower's weights load directly: "conv1.weight" [w, C, P, P] (no
// bias), "class_embedding" [w], "positional_embedding" [1 + N, w] (no fairseq offset: row 0 is
// the class token), "ln_pre.{weight,bias}", "ln_post.{weight,bias}". The block stack (open_clip
// "transformer.resblocks.i", KOSMOS-2 "...ts_attn" names) is built elsewhere from the encoder
// layers (Pre-LN, quick_gelu, no SubLN) and may be registered under this module as
// "transformer" (register_module is public) to reproduce open_clip's full key set.
// Only the KOSMOS-2 sequence form is covered: ln_post on all 1 + N tokens, no pooling and no
// "proj" (open_clip's contrastive head).
class ClipVisionTower : public Module {
 public:
  // Init as open_clip: conv1 as torch.nn.Conv2d without bias; class_embedding and
  // positional_embedding N(0, 1) * width^-0.5; LayerNorms 1 / 0.
  ClipVisionTower(const ClipVisionOptions& options, Generator& gen);

  // The front. images: [B, C, image_size, image_size] (exactly: the position table is fixed)
  // -> [B, 1 + N, w] = ln_pre(concat(class_embedding, conv1(images)) + positional_embedding).
  Tensor embed(const Tensor& images) const;
  // The back. x: [B, T, w] -> [B, T, w] = ln_post(x), then L2-normalised per token if enabled.
  Tensor post(const Tensor& x) const;
  // post(blocks(embed(images))): blocks maps [B, 1 + N, w] to the same shape.
  Tensor forward(const Tensor& images, const std::function<Tensor(const Tensor&)>& blocks) const;

  int64_t num_patches() const;  // (image_size / patch_size)^2

  ClipVisionOptions options;
  Tensor conv1_weight, class_embedding, positional_embedding;
  std::shared_ptr<LayerNorm> ln_pre, ln_post;
};

}  // namespace metalm::nn
