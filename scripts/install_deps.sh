#!/usr/bin/env bash
# Installs the Debian 12 packages metalm needs to build, test and run its main job (as root).
# Skips apt entirely when everything is already installed.
set -euo pipefail
packages=(
  g++ cmake ninja-build pkg-config          # toolchain
  libdnnl-dev                               # oneDNN: GEMM and primitives (DESIGN D1)
  nlohmann-json3-dev libcli11-dev           # JSON, command line
  libcairo2-dev fonts-dejavu-core           # loss plots: cairo, and the font of their labels
  libsentencepiece-dev                      # tokenizer and its trainer (DESIGN D1)
  libedit-dev                               # line editing and history in metalm chat
  libgtest-dev libbenchmark-dev             # tests, microbenchmarks
  python3-torch python3-numpy               # PyTorch reference for tests and bench only
  python3-sentencepiece                     # tokenizer reference for tests and bench only
  python3-nltk                              # a second BLEU reference for the metric tests only
  libopenblas0-pthread                      # the BLAS PyTorch uses in baselines.md (else netlib)
  bible-kjv                                 # real English text for the main job (data/kjv.txt)
)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
