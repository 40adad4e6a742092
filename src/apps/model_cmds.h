// `metalm init`, `metalm forward` and `metalm info`: model directories from configs, and running
// them on token ids so any implementation can be compared with metalm on the same weights.
#pragma once
#include <cstdint>
#include <string>

namespace metalm::apps {

struct InitOptions {
  std::string config;
  std::string out;
  uint64_t seed = 1;
};
int run_init(const InitOptions& options);

struct ForwardOptions {
  std::string model;
  std::string tokens;  // JSON list of lists of token ids (equal lengths)
  std::string out;
  int64_t split = -1;  // multiway split position for encoders (TorchScale default: -1, all A)
};
int run_forward(const ForwardOptions& options);

int run_info(const std::string& dir);

}  // namespace metalm::apps
