// Index, shape and vision ops against PyTorch (tests/reference/ref_index_shape_vision.py):
// values and the gradients of every float input, f32.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "common/reference_file.h"
#include "metalm/ops/ops.h"

using namespace metalm;

namespace {

class IndexShapeVisionRef : public test::ReferenceTest<> {
 protected:
  IndexShapeVisionRef() : ReferenceTest("index_shape_vision") {}
};

}  // namespace

TEST_F(IndexShapeVisionRef, EmbeddingWithPaddingIdx) {
  const Tensor& ids = get("emb_pad.const.ids");
  check("emb_pad", {"weight"}, [&](auto& in) { return ops::embedding(in[0], ids, 0); });
  // Large enough for the parallel, row-bucketed scatter-add in the backward.
  const Tensor& big = get("emb_big.const.ids");
  check("emb_big", {"weight"}, [&](auto& in) { return ops::embedding(in[0], big, 4); });
  const Tensor& index = get("gather.const.index");
  check("gather", {"x"}, [&](auto& in) { return ops::gather_rows(in[0], index); });
}

TEST_F(IndexShapeVisionRef, DockingMaskedScatter) {
  const Tensor& mask = get("dock.const.mask");
  check("dock", {"x", "src"},
        [&](auto& in) { return ops::masked_scatter_rows(in[0], mask, in[1]); });
}

TEST_F(IndexShapeVisionRef, ConcatStackSplit) {
  check("concat1", {"a", "b", "c"}, [](auto& in) { return ops::concat({in[0], in[1], in[2]}, 1); });
  check("concat_last", {"a", "b"}, [](auto& in) { return ops::concat({in[0], in[1], in[0]}, -1); });
  check("stack1", {"a", "b", "c"}, [](auto& in) { return ops::stack({in[0], in[1], in[2]}, 1); });
  check("split", {"x"}, [](auto& in) {
    std::vector<Tensor> p = ops::split(in[0], {2, 3, 4}, 1);
    return ops::concat({ops::mul(p[2], 2.0), ops::exp(p[0])}, 1);
  });
}

// Sums of 192 (P = 8) and 768 (P = 16) products per output, and of B * N rows for the weight
// gradient: f32 GEMM (oneDNN vs MKL-DNN in torch) differs in summation order.
TEST_F(IndexShapeVisionRef, PatchifyMatchesConv2d) {
  check("patch8", {"images", "weight", "bias"},
        [](auto& in) { return ops::patchify(in[0], in[1], in[2], 8); }, {1e-5, 1e-5});
  check("patch16_nobias", {"images", "weight"},
        [](auto& in) { return ops::patchify(in[0], in[1], Tensor(), 16); }, {1e-5, 1e-5});
}

TEST_F(IndexShapeVisionRef, MeanPoolWithMask) {
  const Tensor& mask = get("pool_mask.const.mask");
  check("pool_mask", {"x"}, [&](auto& in) { return ops::mean_pool(in[0], mask); });
  check("pool_all", {"x"}, [](auto& in) { return ops::mean_pool(in[0]); });
}
