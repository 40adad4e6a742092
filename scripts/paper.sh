#!/usr/bin/env bash
# The MetaLM paper in miniature (issue 9 item 8): a small MetaLM and a same-size GPT pretrained on
# the same data and budget (the main job's runs/main/{metalm,gpt}, trained first if absent), then
# on the real tasks of scripts/make_tasks.sh:
#   1. in-context learning at k = 0, 1, 4 (MetaLM: each demonstration's input docked through its
#      encoder; GPT: the same prompt as tokens);
#   2. single-task fine-tuning: MetaLM with its LM frozen (--train encoder) against the GPT
#      fully fine-tuned (--train all);
#   3. multitask fine-tuning of both (--train all) on every task at once;
#   4. instruction tuning with templates (configs/tasks/templates.json) and the "sentiment"
#      cluster held out, then zero-shot on it.
# Every score is on the task's test split with a 95% bootstrap interval (metalm eval). The table,
# the command and the time it took go to docs/results.md (scripts/paper_table.py).
#
# Usage: scripts/paper.sh [--quick]. Environment: FT_STEPS (default 150 per single-task run,
# twice that for the multitask and instruction runs), N_EVAL (test examples per task, default
# 300), THREADS. --quick: FT_STEPS=10, N_EVAL=24, a 40-step main job in runs/paper-quick (checks
# that the pipeline runs; its numbers mean nothing). Stages reuse what an earlier run finished.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
start=$(date +%s)
threads="${THREADS:-$(nproc)}"
if [ "$quick" = 1 ]; then
  ft_steps="${FT_STEPS:-10}"; n_eval="${N_EVAL:-24}"; out=runs/paper-quick; base=runs/paper-quick/main
else
  ft_steps="${FT_STEPS:-150}"; n_eval="${N_EVAL:-300}"; out=runs/paper; base=runs/main
fi
bin=./build/metalm
tasks=(spam party fortunes austen sentiment)
templates=configs/tasks/templates.json

bash scripts/install_deps.sh
bash scripts/build.sh build >/dev/null
# The pretrained models.
if [ ! -e "$base/metalm/model.safetensors" ] || [ ! -e "$base/gpt/model.safetensors" ]; then
  if [ "$quick" = 1 ]; then
    bash scripts/fetch_data.sh kjv moby-dick
    mkdir -p "$base"
    [ -e "$base/tok/tokenizer.json" ] || "$bin" tokenizer train --input data/text/kjv.txt \
      data/text/moby-dick.txt --vocab-size 4096 --out "$base/tok" --threads "$threads" >/dev/null
    pc=(--tokenizer "$base/tok" --data data/text/kjv.txt data/text/moby-dick.txt --cache "$base/cache"
        --tokens-per-sample 128 --batch 4 --steps 40 --warmup 4 --lr 1e-3 --eval-every 40
        --checkpoint-every 40 --threads "$threads" --seed 1 --resume)
    [ -e "$base/mlm/model.safetensors" ] || "$bin" pretrain --out "$base/mlm" "${pc[@]}" \
      --config configs/mlm-small.json --objective mlm >/dev/null
    [ -e "$base/metalm/model.safetensors" ] || "$bin" pretrain --out "$base/metalm" "${pc[@]}" \
      --config configs/metalm-small.json --objective semi-causal --span-length 32 \
      --init-encoder "$base/mlm" >/dev/null
    [ -e "$base/gpt/model.safetensors" ] || "$bin" pretrain --out "$base/gpt" "${pc[@]}" \
      --config configs/gpt-small.json --objective causal --span-length 32 >/dev/null
  else
    bash scripts/main.sh
  fi
fi
bash scripts/make_tasks.sh "${tasks[@]}"
mkdir -p "$out"
results="$out/results.jsonl"

# The evaluation template of a task: the first of configs/tasks/templates.json.
template() {
  /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]["templates"][0])' \
    "$templates" "$1"
}
# evaluate SETTING MODEL_KIND MODEL_DIR TASK SHOTS: one line of results.jsonl (once).
evaluate() {
  local setting="$1" kind="$2" model="$3" task="$4" shots="$5" key="$1|$2|$4|$5"
  grep -qF "\"key\": \"$key\"" "$results" 2>/dev/null && return 0
  local json
  if ! json=$("$bin" eval --model "$model" --task "data/tasks/$task/test.jsonl" \
      --demos "data/tasks/$task/train.jsonl" --shots "$shots" --template "$(template "$task")" \
      --max-examples "$n_eval" --json --threads "$threads" --seed 1 2>"$out/eval.err"); then
    echo "eval $key failed: $(tail -1 "$out/eval.err")" >&2
    exit 1
  fi
  echo "{\"key\": \"$key\", \"setting\": \"$setting\", \"model\": \"$kind\", \"result\": $json}" >> "$results"
  echo "  $setting $kind $task $shots-shot: $(echo "$json" | sed 's/.*"accuracy":{[^}]*"value":\([0-9.]*\).*/accuracy \1/')"
}
# finetune NAME MODEL_DIR ARGS...: trains $out/NAME unless it is finished.
finetune() {
  local name="$1" model="$2"; shift 2
  [ -e "$out/$name/model.safetensors" ] && return 0
  "$bin" finetune --model "$model" --out "$out/$name" --tokens-per-sample 256 --batch 8 \
    --eval-every 0 --checkpoint-every 0 --threads "$threads" --seed 1 --resume "$@" > "$out/$name.log" 2>&1 \
    || { echo "finetune $name failed: $(tail -3 "$out/$name.log")" >&2; exit 1; }
}

echo "== 1. in-context learning"
for task in "${tasks[@]}"; do
  for k in 0 1 4; do
    evaluate icl metalm "$base/metalm" "$task" "$k"
    evaluate icl gpt "$base/gpt" "$task" "$k"
  done
done
echo "== 2. single-task fine-tuning (MetaLM: LM frozen; GPT: all)"
for task in "${tasks[@]}"; do
  tmpl=$(mktemp); /usr/bin/python3 -c 'import json, sys
t = json.load(open(sys.argv[1]))[sys.argv[2]]
json.dump({sys.argv[2]: {"cluster": t["cluster"], "templates": t["templates"][:1]}}, open(sys.argv[3], "w"))' \
    "$templates" "$task" "$tmpl"
  finetune "single-metalm-$task" "$base/metalm" --task "data/tasks/$task/train.jsonl" --train encoder \
    --templates "$tmpl" --steps "$ft_steps" --lr 1e-3
  finetune "single-gpt-$task" "$base/gpt" --task "data/tasks/$task/train.jsonl" --train all \
    --templates "$tmpl" --steps "$ft_steps" --lr 2e-4
  rm -f "$tmpl"
  evaluate single metalm "$out/single-metalm-$task" "$task" 0
  evaluate single gpt "$out/single-gpt-$task" "$task" 0
done
all_train=(); for task in "${tasks[@]}"; do all_train+=("data/tasks/$task/train.jsonl"); done
echo "== 3. multitask fine-tuning (both: all)"
for kind in metalm gpt; do
  finetune "multi-$kind" "$base/$kind" --task "${all_train[@]}" --train all --max-per-task 2000 \
    --steps $((2 * ft_steps)) --lr 2e-4
  for task in "${tasks[@]}"; do evaluate multi "$kind" "$out/multi-$kind" "$task" 0; done
done
echo "== 4. instruction tuning, the sentiment cluster held out, zero-shot"
for kind in metalm gpt; do
  finetune "flan-$kind" "$base/$kind" --task "${all_train[@]}" --templates "$templates" --hold-out sentiment \
    --train all --max-per-task 2000 --steps $((2 * ft_steps)) --lr 2e-4
  evaluate instruction "$kind" "$out/flan-$kind" sentiment 0
  evaluate base "$kind" "$base/$kind" sentiment 0
done

seconds=$(( $(date +%s) - start ))
if [ "$quick" = 1 ]; then
  pretrained="40 steps of each on the KJV and Moby-Dick (\`$base\`, the quick check)"
else
  pretrained="the main job's (\`$base\`: MetaLM and a GPT of the same decoder, the same data, steps and seed)"
fi
command="bash scripts/paper.sh$([ "$quick" = 1 ] && echo " --quick")"
target=docs/results.md
[ "$quick" = 1 ] && target="$out/results.md"
mkdir -p "$(dirname "$target")"
/usr/bin/python3 scripts/paper_table.py "$results" --command "$command" --seconds "$seconds" \
  --ft-steps "$ft_steps" --n-eval "$n_eval" --pretrained "$pretrained" --host "$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores" \
  > "$target.tmp"
mv "$target.tmp" "$target"
echo "wrote $target ($seconds s)"
