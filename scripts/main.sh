#!/usr/bin/env bash
# The main job, end to end on built-in defaults: install, build, fetch the real English corpora,
# train a tokenizer, pretrain the text encoder by masked LM, MetaLM by semi-causal LM with that
# encoder docked, and a GPT baseline (the same decoder, the same data, steps and seed), then
# print their validation perplexities side by side and samples from each.
#
# Stages reuse what an earlier run made (runs/main/...): the tokenizer and the token cache are
# kept, a finished model is not trained again, and an interrupted one resumes from its last
# checkpoint. Delete runs/main to start over. Environment overrides: STEPS (default 600 per
# model), THREADS (default: all cores), PRECISION (default auto: bf16 GEMMs where the host's
# bf16 is fast, else f32).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/install_deps.sh"
bash "$root/scripts/build.sh" "$root/build"
bash "$root/scripts/fetch_data.sh" kjv moby-dick
cd "$root"
bin=./build/metalm
out=runs/main
steps="${STEPS:-600}"
threads="${THREADS:-$(nproc)}"
precision="${PRECISION:-auto}"
data=(data/text/kjv.txt data/text/moby-dick.txt)
mkdir -p "$out"

if [ ! -e "$out/tok/tokenizer.json" ]; then
  "$bin" tokenizer train --input "${data[@]}" --vocab-size 4096 --out "$out/tok" --threads "$threads"
fi

# Every run reads the same packed sequences (256 tokens), the same validation batches and seed.
common=(--tokenizer "$out/tok" --data "${data[@]}" --cache "$out/corpus-cache"
        --tokens-per-sample 256 --batch 8 --steps "$steps" --warmup $((steps / 10))
        --lr 1e-3 --eval-every $((steps / 4)) --eval-batches 8 --checkpoint-every $((steps / 4))
        --threads "$threads" --matmul-precision "$precision" --seed 1 --resume)
pretrain() {  # NAME ARGS...: trains runs/main/NAME unless it is finished
  local name="$1"; shift
  if [ -e "$out/$name/model.safetensors" ]; then
    echo "== $name: done earlier ($out/$name)"
    return
  fi
  echo "== $name"
  "$bin" pretrain --out "$out/$name" "${common[@]}" "$@"
}
pretrain mlm --config configs/mlm-small.json --objective mlm
pretrain metalm --config configs/metalm-small.json --objective semi-causal --span-length 32 \
  --init-encoder "$out/mlm"
pretrain gpt --config configs/gpt-small.json --objective causal --span-length 32

"$bin" plot "$out/mlm/log.jsonl" "$out/metalm/log.jsonl" "$out/gpt/log.jsonl" \
  --out "$out/loss.png" >/dev/null

# The last validation of each run (log.jsonl records of "val_loss").
last() { grep "\"$2\"" "$out/$1/log.jsonl" | tail -1 | sed "s/.*\"$2\":\([0-9.e+-]*\).*/\1/"; }
ppl() { awk -v l="$1" 'BEGIN { printf "%9.2f", exp(l) }'; }
echo
echo "Validation after $steps steps of 8 x 255 tokens (held-out documents of ${data[*]}):"
printf "  %-56s %9s %9s\n" "" "loss" "ppl"
row() { printf "  %-56s %9.4f %s\n" "$1" "$2" "$(ppl "$2")"; }
row "MLM encoder, masked tokens (15%)" "$(last mlm val_loss)"
row "GPT, every token" "$(last gpt val_loss)"
row "GPT, the tokens MetaLM scores (spans' targets skipped)" "$(last gpt val_loss_semi_causal_targets)"
row "MetaLM (semi-causal), the tokens it scores" "$(last metalm val_loss)"
echo "Loss curves: $out/loss.png"

for name in gpt metalm; do
  echo
  echo "== samples from $name (temperature 0.8, top-k 40)"
  "$bin" generate --model "$out/$name" --prompt $'And God said' --max-new-tokens 40 \
    --temperature 0.8 --top-k 40 --samples 2 --threads "$threads"
  "$bin" generate --model "$out/$name" --prompt $'Call me Ishmael.' --max-new-tokens 40 \
    --temperature 0.8 --top-k 40 --samples 1 --seed 5 --threads "$threads"
done
