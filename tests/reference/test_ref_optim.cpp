// AdamW, SGD and clip_grad_norm against torch.optim on a 10-step trajectory.
#include <gtest/gtest.h>

#include "common/reference_file.h"
#include "common/test_util.h"
#include "metalm/train/optim.h"

using namespace metalm;
using metalm::test::all_close;

namespace {

class OptimRef : public test::ReferenceTest<> {
 protected:
  OptimRef() : ReferenceTest("optim") {}
  void run_trajectory(const std::string& name) const;
};

void set_grad(const Tensor& p, const Tensor& g) { p.impl().grad = g.clone().impl_ptr(); }

void OptimRef::run_trajectory(const std::string& name) const {
  Tensor w = get(name + ".init.w").clone().set_requires_grad();
  Tensor b = get(name + ".init.b").clone().set_requires_grad();
  std::vector<train::ParamGroup> groups(2);
  groups[0].params = {w};
  groups[0].weight_decay = 0.1;
  groups[1].params = {b};
  std::unique_ptr<train::Optimizer> opt;
  if (name == "adamw")
    opt = std::make_unique<train::AdamW>(groups, train::AdamWOptions{1e-2, 0.9, 0.95, 1e-8});
  else
    opt = std::make_unique<train::SGD>(groups, train::SGDOptions{5e-2, 0.9});
  for (int step = 0; step < 10; ++step) {
    std::string s = name + ".step" + std::to_string(step);
    set_grad(w, get(s + ".gw"));
    set_grad(b, get(s + ".gb"));
    opt->step();
    EXPECT_TRUE(all_close(w, get(s + ".w"), 1e-5, 1e-6)) << s;
    EXPECT_TRUE(all_close(b, get(s + ".b"), 1e-5, 1e-6)) << s;
  }
}

}  // namespace

TEST_F(OptimRef, AdamWTrajectoryMatchesTorch) {
  run_trajectory("adamw");
}

TEST_F(OptimRef, SgdMomentumTrajectoryMatchesTorch) {
  run_trajectory("sgd");
}

TEST_F(OptimRef, ClipGradNormMatchesTorch) {
  Tensor p0 = Tensor::zeros({5, 4}).set_requires_grad(), p1 = Tensor::zeros({7}).set_requires_grad();
  set_grad(p0, get("clip.grad0"));
  set_grad(p1, get("clip.grad1"));
  double norm = train::clip_grad_norm({p0, p1}, 1.5);
  EXPECT_NEAR(norm, get("clip.norm").item<double>(), 1e-5 * norm);
  EXPECT_TRUE(all_close(p0.grad(), get("clip.clipped0"), 1e-5, 1e-7));
  EXPECT_TRUE(all_close(p1.grad(), get("clip.clipped1"), 1e-5, 1e-7));
}
