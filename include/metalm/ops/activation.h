// The activations, by one enum and one name table: configs, the FFN, connectors and the fused
// GEMM post-ops all read names through activation_names(), so a name accepted anywhere is
// accepted everywhere.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace metalm::ops {

enum class Activation {
  none,        // identity (a GEMM without a post-op)
  relu,
  gelu,        // exact, with erf (TorchScale's "gelu")
  gelu_tanh,   // tanh approximation
  silu,        // x sigmoid(x), TorchScale's "swish"
  quick_gelu,  // x sigmoid(1.702 x) (CLIP)
};

// Every accepted name; the first name of a value is its canonical one (TorchScale's where
// TorchScale has it, so written configs stay TorchScale kwargs): relu, gelu, gelu_tanh
// (alias gelu_fast), swish (alias silu), quick_gelu. "none" is not a layer activation.
const std::vector<std::pair<Activation, const char*>>& activation_names();
const char* activation_name(Activation activation);
// Throws ValueError "[activation] unknown activation 'x' (expected relu, gelu, ...)".
Activation parse_activation(const std::string& name);

}  // namespace metalm::ops
