// Optimizer behaviour that needs no reference: groups, skipping, argument checks, minimisation.
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "metalm/ops/ops.h"
#include "metalm/train/optim.h"

using namespace metalm;

TEST(Optim, ParamGroupsExcludeNormsAndBiases) {
  TensorMap named = {{"layers.0.fc1.weight", Tensor::ones({4, 3}).set_requires_grad()},
                               {"layers.0.fc1.bias", Tensor::ones({4}).set_requires_grad()},
                               {"embed_positions.weight", Tensor::ones({8, 3}).set_requires_grad()}};
  auto groups = train::make_param_groups(named, 0.01, {"embed_positions"});
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].weight_decay, 0.01);
  EXPECT_EQ(groups[0].params.size(), 1u);
  EXPECT_EQ(groups[1].weight_decay, 0.0);
  EXPECT_EQ(groups[1].params.size(), 2u);
}

TEST(Optim, AdamWMinimisesAQuadraticAndSkipsParamsWithoutGrad) {
  Tensor x = Tensor::full({3}, 5.0).set_requires_grad();
  Tensor untouched = Tensor::full({2}, 7.0).set_requires_grad();
  train::ParamGroup g;
  g.params = {x, untouched};
  train::AdamW opt({g}, {0.1, 0.9, 0.999, 1e-8});
  for (int i = 0; i < 300; ++i) {
    Tensor loss = ops::sum(ops::square(ops::add(x, -1.0)));
    loss.backward();
    opt.step();
    opt.zero_grad();
  }
  for (float v : x.to_vector<float>()) EXPECT_NEAR(v, 1.0f, 1e-2);
  EXPECT_EQ(untouched.to_vector<float>(), (std::vector<float>{7, 7}));
  EXPECT_EQ(opt.step_count(), 300);
}

TEST(Optim, RejectsBadArguments) {
  Tensor x = Tensor::ones({3}).set_requires_grad();
  train::ParamGroup g;
  g.params = {x};
  EXPECT_THROW(train::AdamW({g}, {0.1, 1.0, 0.999, 1e-8}), ValueError);
  EXPECT_THROW(train::SGD({g}, {-1.0, 0.0}), ValueError);
  train::ParamGroup bad;
  bad.params = {Tensor::ones({3})};  // does not require grad
  EXPECT_THROW(train::AdamW({bad}, {}), ValueError);
  EXPECT_THROW(train::clip_grad_norm({x}, 0.0), ValueError);
}
