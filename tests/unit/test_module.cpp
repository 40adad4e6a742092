// Module tree: dotted names, state dicts with strict errors, freezing by pattern, train mode.
#include <gtest/gtest.h>

#include "common/test_util.h"
#include "metalm/nn/layers.h"
#include "metalm/ops/ops.h"

using namespace metalm;

namespace {

class Block : public nn::Module {
 public:
  explicit Block(Generator& gen) {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(4, 8, true, gen));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(8, 4, false, gen));
    norm = register_module("final_layer_norm", std::make_shared<nn::LayerNorm>(4));
    table = register_buffer("table", Tensor::arange(3, DType::f32));
  }
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::LayerNorm> norm;
  Tensor table;
};

class Stack : public nn::Module {
 public:
  explicit Stack(Generator& gen) {
    for (int i = 0; i < 2; ++i)
      blocks.push_back(register_module(std::to_string(i), std::make_shared<Block>(gen)));
  }
  std::vector<std::shared_ptr<Block>> blocks;
};

class Model : public nn::Module {
 public:
  explicit Model(Generator& gen) { layers = register_module("layers", std::make_shared<Stack>(gen)); }
  std::shared_ptr<Stack> layers;
};

}  // namespace

TEST(Module, NamesFollowStateDictKeys) {
  Generator gen(1);
  Model m(gen);
  std::vector<std::string> names;
  for (auto& [n, t] : m.named_parameters()) names.push_back(n);
  std::vector<std::string> expect = {  // by name (a TensorMap)
      "layers.0.fc1.bias", "layers.0.fc1.weight", "layers.0.fc2.weight",
      "layers.0.final_layer_norm.bias", "layers.0.final_layer_norm.weight",
      "layers.1.fc1.bias", "layers.1.fc1.weight", "layers.1.fc2.weight",
      "layers.1.final_layer_norm.bias", "layers.1.final_layer_norm.weight"};
  EXPECT_EQ(names, expect);
  // parameters() keeps registration order (layer 0's fc1 weight first, then its bias).
  ASSERT_EQ(m.parameters().size(), expect.size());
  EXPECT_EQ(m.parameters()[0].impl_ptr(), m.named_parameters().at("layers.0.fc1.weight").impl_ptr());
  EXPECT_EQ(m.parameters()[1].impl_ptr(), m.named_parameters().at("layers.0.fc1.bias").impl_ptr());
  EXPECT_EQ(m.parameter_count(), 2 * (32 + 8 + 32 + 4 + 4));
  auto sd = m.state_dict();
  EXPECT_EQ(sd.size(), expect.size() + 2);  // + two buffers
  EXPECT_TRUE(sd.count("layers.1.table"));
}

TEST(Module, LoadStateDictCopiesAndReportsEveryProblem) {
  Generator g1(1), g2(2);
  Model a(g1), b(g2);
  TensorMap sd = a.state_dict();
  b.load_state_dict(sd);
  for (auto& [n, t] : b.state_dict())
    EXPECT_TRUE(test::all_close(t, sd.at(n), 0, 0)) << n;
  // Loading copies: the tensors of b are still its own storage.
  EXPECT_NE(b.state_dict().at("layers.0.fc1.weight").raw_data(), sd.at("layers.0.fc1.weight").raw_data());

  TensorMap bad = sd;
  bad.erase("layers.0.fc2.weight");
  bad["layers.0.fc3.weight"] = Tensor::zeros({2});
  bad["layers.1.fc1.bias"] = Tensor::zeros({9});
  try {
    b.load_state_dict(bad);
    ADD_FAILURE() << "expected ValueError";
  } catch (const ValueError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("missing: layers.0.fc2.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected: layers.0.fc3.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("layers.1.fc1.bias (checkpoint [9], model [8])"), std::string::npos) << msg;
  }
  bad.erase("layers.1.fc1.bias");
  EXPECT_NO_THROW(b.load_state_dict(bad, /*strict=*/false));
}

TEST(Module, FreezeByPatternStopsGradients) {
  Generator gen(3);
  Model m(gen);
  EXPECT_EQ(m.freeze("layers.0.*"), 5);
  EXPECT_EQ(m.parameter_count(true), 80);
  EXPECT_EQ(m.trainable_parameters().size(), 5u);
  Tensor x = test::randn({2, 4}, 4);
  Tensor y = x;
  for (auto& blk : m.layers->blocks)
    y = blk->norm->forward(blk->fc2->forward(ops::relu(blk->fc1->forward(y))));
  ops::sum(y).backward();
  EXPECT_FALSE(m.layers->blocks[0]->fc1->weight.grad().defined());
  EXPECT_TRUE(m.layers->blocks[1]->fc1->weight.grad().defined());
  EXPECT_EQ(m.freeze("layers.0.*", false), 5);
  EXPECT_EQ(m.parameter_count(true), m.parameter_count());
  EXPECT_TRUE(nn::glob_match("a*c?e", "abbbcde"));
  EXPECT_FALSE(nn::glob_match("a*c?e", "abbbce"));
}

TEST(Module, TrainModeReachesChildren) {
  Generator gen(5);
  Model m(gen);
  m.eval();
  int n = 0;
  m.for_each_module([&](const std::string&, nn::Module& x) {
    EXPECT_FALSE(x.is_training());
    ++n;
  });
  EXPECT_EQ(n, 1 + 1 + 2 * 4);
}

TEST(Module, ToConvertsInPlaceKeepingLayerHandles) {
  Generator gen(6);
  Model m(gen);
  Tensor w32 = m.layers->blocks[0]->fc1->weight.clone();
  m.layers->blocks[0]->fc1->weight.impl().grad = Tensor::ones({8, 4}).impl_ptr();
  m.to(DType::f64);
  const Tensor& w = m.layers->blocks[0]->fc1->weight;  // the layer's own handle
  EXPECT_EQ(w.dtype(), DType::f64);
  EXPECT_TRUE(w.requires_grad());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_TRUE(test::all_close(w, w32.to(DType::f64), 0, 0));
  EXPECT_EQ(m.state_dict().at("layers.1.table").dtype(), DType::f64);  // float buffers too
  Tensor y = m.layers->blocks[0]->fc1->forward(test::randn({2, 4}, 7, DType::f64));
  EXPECT_EQ(y.dtype(), DType::f64);
  EXPECT_THROW(m.to(DType::bf16), DTypeError);
}
