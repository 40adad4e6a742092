#!/usr/bin/env bash
# `metalm pretrain`, end to end on tiny models: the three objectives train and write a model
# directory (config, weights, tokenizer, log, checkpoints); an MLM encoder docks into MetaLM;
# a run killed with SIGKILL and resumed ends bit-identical to one never stopped; every bad input
# is one line on stderr, an exit code below 128 and no damage to what was there.
# Usage: test_pretrain_cli.sh METALM_BINARY
set -u
bin="$1"
source "$(dirname "$0")/lib.sh"

"$bin" pretrain --help | grep -q "Example:" && ok || bad "pretrain --help has no example"

# A made-up corpus: sentences over a small vocabulary, paragraphs of a few lines.
awk 'BEGIN { srand(11); split("the a dog cat river stone sees finds near under red old runs sleeps", w, " ");
  for (p = 0; p < 400; p++) { for (l = 0; l < 1 + int(rand() * 4); l++) { line = "";
      for (j = 0; j < 4 + int(rand() * 8); j++) line = line (j ? " " : "") w[1 + int(rand() * 14)];
      print line "." } print "" } }' > "$work/corpus.txt"
"$bin" tokenizer train --input "$work/corpus.txt" --vocab-size 40 --out "$work/tok" >/dev/null 2>&1 \
  && ok || bad "tokenizer train failed"

# Tiny configs at the tokenizer's 40 ids; the MLM encoder is exactly MetaLM's docked one.
enc='"encoder_embed_dim": 32, "encoder_attention_heads": 2, "encoder_ffn_embed_dim": 64,
  "encoder_layers": 2, "encoder_normalize_before": true, "activation_fn": "gelu", "dropout": 0.1,
  "vocab_size": 40, "share_encoder_input_output_embed": true, "max_source_positions": 64,
  "layernorm_embedding": true, "positions": "learned", "bert_init": true'
dec='"decoder_embed_dim": 32, "decoder_attention_heads": 2, "decoder_ffn_embed_dim": 64,
  "decoder_layers": 2, "decoder_normalize_before": true, "activation_fn": "gelu", "dropout": 0.0,
  "vocab_size": 40, "share_decoder_input_output_embed": true, "max_target_positions": 64,
  "positions": "learned", "bert_init": true'
echo "{\"model_type\": \"decoder\", $dec}" > "$work/gpt.json"
echo "{\"model_type\": \"encoder\", $enc}" > "$work/mlm.json"
echo "{\"model_type\": \"metalm\", \"decoder\": {$dec}, \"encoders\": [{\"name\": \"text\",
  \"span\": \"text\", \"config\": {$enc}, \"connector\": {\"kind\": \"complex\"}}]}" > "$work/metalm.json"
sed 's/"vocab_size": 40/"vocab_size": 80/g' "$work/gpt.json" > "$work/gpt80.json"
sed 's/"decoder_layers": 2/"decoder_layers": 3/' "$work/gpt.json" > "$work/gpt3.json"

common=(--tokenizer "$work/tok" --data "$work/corpus.txt" --tokens-per-sample 48 --batch 4
        --warmup 5 --lr 3e-3 --eval-batches 2 --threads 1 --seed 3 --cache "$work/cache")
short=(--steps 30 --eval-every 15 --checkpoint-every 10)
long=(--steps 400 --checkpoint-every 100 --eval-every 100)
train() {  # NAME CONFIG ARGS...: trains into $work/NAME
  local name="$1" config="$2"; shift 2
  if "$bin" pretrain --config "$config" --out "$work/$name" "${common[@]}" "${short[@]}" "$@" \
      >"$work/$name.out" 2>"$work/$name.err"; then ok; else bad "$name: $(cat "$work/$name.err")"; fi
}
train gpt "$work/gpt.json" --objective causal --span-length 8
train mlm "$work/mlm.json" --objective mlm
train metalm "$work/metalm.json" --objective semi-causal --span-length 8 --init-encoder "$work/mlm"

for run in gpt mlm metalm; do
  d="$work/$run"
  for f in config.json model.safetensors tokenizer.model tokenizer.json log.jsonl log.png latest; do
    [ -s "$d/$f" ] && ok || bad "$run: no $f"
  done
  [ "$(cat "$d/latest")" = checkpoint-00000030 ] && ok || bad "$run: latest is $(cat "$d/latest")"
  [ "$(ls -d "$d"/checkpoint-* | wc -l)" -eq 2 ] && ok || bad "$run: keeps $(ls -d "$d"/checkpoint-* | wc -l) checkpoints, not 2"
  ! grep -v '^\[corpus\] \|^tokenizing ' "$work/$run.err" && ok || bad "$run: stderr beyond progress"
  # The validation loss falls from the first evaluation (step 15) to the last (step 30).
  first=$(grep '"val_loss"' "$d/log.jsonl" | head -1 | sed 's/.*"val_loss": *\([0-9.e+-]*\).*/\1/')
  last=$(grep '"val_loss"' "$d/log.jsonl" | tail -1 | sed 's/.*"val_loss": *\([0-9.e+-]*\).*/\1/')
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' && ok || bad "$run: val_loss $first -> $last"
  "$bin" info "$d" >/dev/null 2>&1 && ok || bad "$run: metalm info cannot read the model directory"
done
grep -q '"val_loss_semi_causal_targets"' "$work/gpt/log.jsonl" && ok || bad "gpt log lacks val_loss_semi_causal_targets"
grep -q "encoder text initialised from $work/mlm" "$work/metalm.out" && ok || bad "metalm: encoder not docked"
grep -q "^corpus corpus.txt: 400 documents" "$work/gpt.out" && ok || bad "gpt: no corpus line: $(head -3 "$work/gpt.out")"
grep -q "tokenized earlier" "$work/mlm.out" && ok || bad "mlm did not reuse the token cache"

# generate: from a GPT and from MetaLM's decoder; greedy is deterministic, sampling follows --seed.
for run in gpt metalm; do
  "$bin" generate --model "$work/$run" --prompt "the dog" --max-new-tokens 12 --temperature 0 \
    --threads 1 > "$work/g1" 2>"$work/gerr" && ok || bad "generate $run: $(cat "$work/gerr")"
  "$bin" generate --model "$work/$run" --prompt "the dog" --max-new-tokens 12 --temperature 0 \
    --threads 1 > "$work/g2" 2>&1
  head -c 7 "$work/g1" | grep -q "^the dog" && ok || bad "generate $run: output does not start with the prompt: $(head -c 80 "$work/g1")"
  [ "$(wc -c < "$work/g1")" -gt 9 ] && ok || bad "generate $run: nothing generated"
  cmp -s "$work/g1" "$work/g2" && ok || bad "generate $run: greedy differs between runs"
  # Weights stored as bf16 (the numbers move by the rounding: no equality with f32 asked).
  "$bin" generate --model "$work/$run" --prompt "the dog" --max-new-tokens 12 --temperature 0 \
    --weights-dtype bf16 --threads 1 > "$work/g16" 2>"$work/gerr" && head -c 7 "$work/g16" | grep -q "^the dog" \
    && [ "$(wc -c < "$work/g16")" -gt 9 ] && ok || bad "generate --weights-dtype bf16 $run: $(cat "$work/gerr" "$work/g16")"
done
expect_error "generate --weights-dtype f16" "weights-dtype" "$bin" generate --model "$work/gpt" --prompt "the" --weights-dtype f16
"$bin" generate --model "$work/gpt" --prompt "the" --samples 3 --temperature 1 --threads 1 > "$work/g3" 2>&1 \
  && [ "$(grep -c '^--- sample' "$work/g3")" -eq 3 ] && ok || bad "generate --samples 3: $(head -c 300 "$work/g3")"
"$bin" generate --model "$work/gpt" --prompt "the dog" --beam 3 --length-penalty 0.6 --no-repeat-ngram 2 \
  --max-new-tokens 10 --threads 1 > "$work/b1" 2>"$work/berr" && ok || bad "generate --beam: $(cat "$work/berr")"
[ "$(grep -c '^--- beam [1-3]: score' "$work/b1")" -eq 3 ] && ok || bad "generate --beam 3: $(head -c 300 "$work/b1")"
"$bin" generate --model "$work/gpt" --prompt "the dog" --beam 3 --length-penalty 0.6 --no-repeat-ngram 2 \
  --max-new-tokens 10 --threads 1 > "$work/b2" 2>&1
cmp -s "$work/b1" "$work/b2" && ok || bad "generate --beam differs between runs"
"$bin" generate --model "$work/gpt" --prompt "the" --top-p 0.9 --temperature 0.8 --max-new-tokens 8 \
  --threads 1 > "$work/tp" 2>&1 && head -c 3 "$work/tp" | grep -q "^the" && ok || bad "generate --top-p: $(head -c 200 "$work/tp")"
"$bin" generate --model "$work/gpt" --prompt "the" --temperature 0 --max-new-tokens 30 --threads 1 \
  > "$work/nostop" 2>&1
word=$(tr -s ' \n' '\n\n' < "$work/nostop" | sed -n 3p)  # a word the greedy continuation reaches
"$bin" generate --model "$work/gpt" --prompt "the" --temperature 0 --max-new-tokens 30 --threads 1 \
  --stop "$word" > "$work/stopped" 2>&1
[ -n "$word" ] && [ "$(wc -c < "$work/stopped")" -lt "$(wc -c < "$work/nostop")" ] && grep -q -- "$word" "$work/stopped" \
  && ok || bad "generate --stop '$word': $(head -c 200 "$work/stopped")"
expect_error "generate --stop with --beam" "not with --beam" "$bin" generate --model "$work/gpt" --prompt "the" \
  --beam 2 --stop x
expect_error "generate --top-p 0" "top-p" "$bin" generate --model "$work/gpt" --prompt "the" --top-p 0
expect_error "generate --beam too wide" "beam" "$bin" generate --model "$work/gpt" --prompt "the" --beam 65
# Docked prompts: "{{...}}" through MetaLM's encoder, the same as the JSON form.
"$bin" generate --model "$work/metalm" --prompt "{{the dog sees}} the red" --max-new-tokens 8 \
  --temperature 0 --threads 1 > "$work/d1" 2>"$work/derr" && ok || bad "generate docked: $(cat "$work/derr")"
head -c 24 "$work/d1" | grep -q "^{{the dog sees}} the red" && ok || bad "generate docked: $(head -c 80 "$work/d1")"
echo '[{"text": "the dog sees", "dock": true}, {"text": " the red"}]' > "$work/prompt.json"
"$bin" generate --model "$work/metalm" --prompt-json "$work/prompt.json" --max-new-tokens 8 \
  --temperature 0 --threads 1 > "$work/d2" 2>&1 && cmp -s "$work/d1" "$work/d2" && ok \
  || bad "generate --prompt-json differs from the markup: $(head -c 200 "$work/d2")"
expect_error "generate docked from a GPT" "has none" "$bin" generate --model "$work/gpt" --prompt "{{the}} dog"
expect_error "generate unclosed dock" "no closing" "$bin" generate --model "$work/metalm" --prompt "{{the dog"
echo '[{"text": "the", "dock": 1}]' > "$work/badprompt.json"
expect_error "generate bad prompt json" "dock" "$bin" generate --model "$work/metalm" --prompt-json "$work/badprompt.json"
echo '[{"text": "the"' > "$work/brokenprompt.json"
expect_error "generate broken prompt json" "not valid JSON" "$bin" generate --model "$work/metalm" --prompt-json "$work/brokenprompt.json"
# eval: a multiple-choice task and a generation task, 0- and 2-shot, table, --json, predictions.
awk 'BEGIN { srand(5); split("the a dog cat river stone sees finds near", w, " ");
  for (i = 0; i < 24; i++) { s = ""; for (j = 0; j < 4; j++) s = s (j ? " " : "") w[1 + int(rand() * 9)];
    printf "{\"input\": \"%s\", \"output\": \"%s\", \"choices\": [\"yes\", \"no\"]}\n", s, (s ~ /dog/ ? "yes" : "no") } }' > "$work/dogs.jsonl"
head -16 "$work/dogs.jsonl" > "$work/dogs_train.jsonl"; tail -8 "$work/dogs.jsonl" > "$work/dogs_test.jsonl"
sed 's/, "choices": \[[^]]*\]//' "$work/dogs_test.jsonl" > "$work/dogs_gen.jsonl"
for run in gpt metalm; do
  "$bin" eval --model "$work/$run" --task "$work/dogs_test.jsonl" --template "{input} dog?" \
    --threads 1 > "$work/e0" 2>"$work/eerr" && ok || bad "eval $run: $(cat "$work/eerr")"
  grep -q "^task dogs_test: 8 examples, 0-shot" "$work/e0" && grep -q "^  accuracy .*\[" "$work/e0" && ok \
    || bad "eval $run: no results table: $(cat "$work/e0")"
  "$bin" eval --model "$work/$run" --task "$work/dogs_test.jsonl" --demos "$work/dogs_train.jsonl" \
    --shots 2 --json --predictions "$work/preds.jsonl" --threads 1 > "$work/e2" 2>"$work/eerr" && ok || bad "eval --shots 2 $run: $(cat "$work/eerr")"
  grep -q '"shots":2' "$work/e2" && grep -q '"accuracy":{"interval95":\[' "$work/e2" && ok || bad "eval --json $run: $(cat "$work/e2")"
  [ "$(wc -l < "$work/preds.jsonl")" -eq 8 ] && grep -q '"prediction":"\(yes\|no\)"' "$work/preds.jsonl" && ok \
    || bad "eval --predictions $run: $(head -2 "$work/preds.jsonl")"
  "$bin" eval --model "$work/$run" --task "$work/dogs_gen.jsonl" --max-new-tokens 4 --beam 2 \
    --metrics em f1 bleu4 rouge_l cider_d --threads 1 > "$work/eg" 2>"$work/eerr" && ok || bad "eval generation $run: $(cat "$work/eerr")"
  [ "$(grep -c '^  \(em\|f1\|bleu4\|rouge_l\|cider_d\) ' "$work/eg")" -eq 5 ] && ok || bad "eval generation $run: $(cat "$work/eg")"
done
"$bin" eval --model "$work/metalm" --task "$work/dogs_test.jsonl" --template "{input} dog?" --weights-dtype bf16 \
  --json --threads 1 > "$work/e16" 2>"$work/eerr" && grep -q '"accuracy":' "$work/e16" && ok \
  || bad "eval --weights-dtype bf16: $(cat "$work/eerr" "$work/e16")"
expect_error "eval --shots without --demos" "needs --demos" "$bin" eval --model "$work/gpt" --task "$work/dogs_test.jsonl" --shots 2
expect_error "eval unknown metric" "metrics" "$bin" eval --model "$work/gpt" --task "$work/dogs_test.jsonl" --metrics bleu5
expect_error "eval missing task file" "nope.jsonl" "$bin" eval --model "$work/gpt" --task "$work/nope.jsonl"
echo '{"input": "a", "output": "c", "choices": ["a", "b"]}' > "$work/badtask.jsonl"
expect_error "eval bad task line" "line 1" "$bin" eval --model "$work/gpt" --task "$work/badtask.jsonl"
head -2 "$work/dogs_train.jsonl" > "$work/two.jsonl"
expect_error "eval too many shots" "pool has 2" "$bin" eval --model "$work/gpt" --task "$work/dogs_test.jsonl" --demos "$work/two.jsonl" --shots 3
# chat, scripted through a pipe: turns, /reset, a docked segment, a bad turn that does not end
# the session, /exit; greedy replies are the same on a second run.
printf 'the dog\nthe cat sees\n/reset\nthe dog\nthe cat {{sees the}}\n/bogus\n{{unclosed\nthe river\n/exit\nnot read\n' > "$work/chatin"
"$bin" chat --model "$work/metalm" --temperature 0 --max-new-tokens 6 --threads 1 < "$work/chatin" \
  > "$work/c1" 2>"$work/cerr" && ok || bad "chat: $(cat "$work/cerr")"
[ "$(grep -c '^(conversation reset)' "$work/c1")" -eq 1 ] && grep -q '^(unknown command /bogus' "$work/c1" \
  && grep -q '^(error: .*no closing' "$work/c1" && ok || bad "chat: $(cat "$work/c1")"
[ "$(grep -vc '^(' "$work/c1")" -eq 5 ] && ok || bad "chat: not 5 replies: $(cat "$work/c1")"
r1=$(sed -n 1p "$work/c1"); r3=$(grep -v '^(' "$work/c1" | sed -n 3p)
[ "$r1" = "$r3" ] && ok || bad "chat: the first reply after /reset differs ('$r1' vs '$r3')"
"$bin" chat --model "$work/metalm" --temperature 0 --max-new-tokens 6 --threads 1 < "$work/chatin" > "$work/c2" 2>&1
cmp -s "$work/c1" "$work/c2" && ok || bad "chat: greedy differs between runs"
# chat on a real terminal (a pseudo-terminal from util-linux `script`): the banner, libedit's
# line editing (a typo erased with Backspace) and history (Up twice recalls the first line past
# /reset) give the replies the pipe gives to the same text (sampled: each turn draws from its
# own seed, so the two replies differ and their order is checked too). The input waits in the
# terminal's buffer until libedit reads it; the feeder ends once the session has read /exit.
chat_args="--model '$work/metalm' --temperature 1 --max-new-tokens 8 --multiline --threads 1"
printf 'the cat\n/reset\nthe cat\n/exit\n' | eval "'$bin' chat $chat_args" > "$work/cp" 2>&1
ptyin="the cax"$'\x7f'"t\n/reset\n"$'\x1b[A\x1b[A'"\n/exit\n"
timeout 60 script -qfec "'$bin' chat $chat_args" /dev/null > "$work/pty" 2>&1 < <(
  printf '%b' "$ptyin"
  for _ in $(seq 600); do grep -q '^> /exit' "$work/pty" 2>/dev/null && break; sleep 0.1; done)
tr -d '\r' < "$work/pty" > "$work/pty1"
# The replies as the pipe prints them: from the banner on, without prompt lines and labels.
awk '/^metalm chat with /{on=1; next} on && !/^> /{sub(/^Assistant: /, ""); print}' "$work/pty1" \
  > "$work/pty2"
grep -q '^> the cat$' "$work/pty1" && [ "$(grep -c '^> .*the cat$' "$work/pty1")" -eq 2 ] && ok \
  || bad "chat on a terminal: the edited line or the recalled one is not 'the cat': $(cat -A "$work/pty1" | head -c 600)"
[ -s "$work/cp" ] && cmp -s "$work/cp" "$work/pty2" && ok \
  || bad "chat on a terminal: replies differ from the pipe's: $(cat -A "$work/pty2" | head -c 400) vs $(cat -A "$work/cp" | head -c 400)"
grep -q '^metalm chat with ' "$work/pty1" && ok || bad "chat on a terminal: no banner: $(head -c 300 "$work/pty1")"
"$bin" chat --model "$work/gpt" --temperature 0.8 --max-new-tokens 6 --threads 1 < "$work/chatin" > "$work/c3" 2>&1 \
  && grep -q '^(error: .*has none' "$work/c3" && ok || bad "chat gpt: $(cat "$work/c3")"
expect_error "chat without a model" "nope" "$bin" chat --model "$work/nope"
# finetune: MetaLM with its LM frozen (the default), a GPT fully; multitask with templates and a
# held-out cluster; resume; then eval on the fine-tuned model.
ft=(--batch 4 --tokens-per-sample 48 --eval-every 10 --checkpoint-every 10 --lr 1e-3 --threads 1)
"$bin" finetune --model "$work/metalm" --task "$work/dogs_train.jsonl" --out "$work/ft-metalm" "${ft[@]}" --steps 20 \
  > "$work/ft.out" 2>"$work/ft.err" && ok || bad "finetune metalm: $(cat "$work/ft.err")"
grep -q "(--train encoder: " "$work/ft.out" && ok || bad "finetune metalm: not --train encoder: $(head -3 "$work/ft.out")"
for f in config.json model.safetensors tokenizer.model log.jsonl finetune.json latest; do
  [ -s "$work/ft-metalm/$f" ] && ok || bad "finetune: no $f"
done
"$bin" eval --model "$work/ft-metalm" --task "$work/dogs_test.jsonl" --threads 1 > "$work/fte" 2>&1 \
  && grep -q "^  accuracy" "$work/fte" && ok || bad "eval after finetune: $(cat "$work/fte")"
"$bin" finetune --model "$work/gpt" --task "$work/dogs_train.jsonl" --out "$work/ft-gpt" "${ft[@]}" --steps 20 \
  > "$work/ftg.out" 2>&1 && grep -q "(--train all: " "$work/ftg.out" && ok || bad "finetune gpt: $(tail -3 "$work/ftg.out")"
sed 's/"choices"/"task": "other", "choices"/' "$work/dogs_train.jsonl" > "$work/other.jsonl"
echo '{"dogs_train": {"cluster": "animals", "templates": ["{input} dog?", "is there a dog: {input}"], "turned": ["a sentence whose answer is {output}:"]},
  "other": {"cluster": "misc"}}' > "$work/templates.json"
"$bin" finetune --model "$work/metalm" --task "$work/dogs_train.jsonl" "$work/other.jsonl" --templates "$work/templates.json" \
  --hold-out misc --train all --out "$work/ft-multi" "${ft[@]}" --steps 20 > "$work/ftm.out" 2>&1 \
  && grep -q "held out: task other" "$work/ftm.out" && grep -q "task dogs_train:" "$work/ftm.out" && ok \
  || bad "finetune multitask: $(tail -5 "$work/ftm.out")"
# Resume: a run stopped at step 10 and resumed ends as the straight one.
"$bin" finetune --model "$work/metalm" --task "$work/dogs_train.jsonl" --out "$work/ft-half" "${ft[@]}" --steps 10 \
  --decay constant --warmup 0 >/dev/null 2>&1
"$bin" finetune --model "$work/metalm" --task "$work/dogs_train.jsonl" --out "$work/ft-half" "${ft[@]}" \
  --steps 20 --decay constant --warmup 0 --resume > "$work/ftr.out" 2>&1 && grep -q "^resumed from" "$work/ftr.out" && ok \
  || bad "finetune --resume: $(tail -3 "$work/ftr.out")"
"$bin" finetune --model "$work/metalm" --task "$work/dogs_train.jsonl" --out "$work/ft-full" "${ft[@]}" \
  --steps 20 --decay constant --warmup 0 >/dev/null 2>&1
cmp -s "$work/ft-half/model.safetensors" "$work/ft-full/model.safetensors" && ok || bad "finetune: resumed weights differ"
expect_error "finetune --train encoder on a GPT" "lacks" "$bin" finetune --model "$work/gpt" \
  --task "$work/dogs_train.jsonl" --out "$work/ft-bad" --train encoder
expect_error "finetune --train encoder --plain-input" "bypasses" "$bin" finetune --model "$work/metalm" \
  --task "$work/dogs_train.jsonl" --out "$work/ft-bad" --train encoder --plain-input
expect_error "finetune unknown cluster" "no task" "$bin" finetune --model "$work/gpt" \
  --task "$work/dogs_train.jsonl" --out "$work/ft-bad" --hold-out nothing
expect_error "finetune into a run" "--resume" "$bin" finetune --model "$work/gpt" \
  --task "$work/dogs_train.jsonl" --out "$work/ft-gpt"
echo '{"x": {"templates": ["no input"]}}' > "$work/badtemplates.json"
expect_error "finetune bad templates" "exactly once" "$bin" finetune --model "$work/gpt" \
  --task "$work/dogs_train.jsonl" --out "$work/ft-bad" --templates "$work/badtemplates.json"
expect_error "generate from an encoder" "no decoder" "$bin" generate --model "$work/mlm" --prompt "the"
expect_error "generate from nothing" "nope" "$bin" generate --model "$work/nope" --prompt "the"

# SIGKILL after a checkpoint, then --resume: the same bytes as the run never stopped.
"$bin" pretrain --config "$work/gpt.json" --out "$work/killed" "${common[@]}" "${long[@]}" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -e "$work/killed/latest" ] && break; sleep 0.02; done
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
if [ -e "$work/killed/model.safetensors" ]; then
  bad "resume: the run ended before it could be killed"
else
  "$bin" pretrain --config "$work/gpt.json" --out "$work/killed" "${common[@]}" "${long[@]}" \
    --resume >"$work/resumed.out" 2>&1 && ok || bad "resume: $(tail -2 "$work/resumed.out")"
  grep -q "^resumed from $work/killed/checkpoint-" "$work/resumed.out" && ok || bad "resume: no 'resumed from' line"
  "$bin" pretrain --config "$work/gpt.json" --out "$work/straight" "${common[@]}" "${long[@]}" \
    >/dev/null 2>&1 && ok || bad "straight run failed"
  cmp -s "$work/killed/model.safetensors" "$work/straight/model.safetensors" && ok || bad "resumed weights differ from the straight run"
fi

# Ctrl-C: a checkpoint at the step it stopped, exit code 130, and --resume goes on from there.
"$bin" pretrain --config "$work/gpt.json" --out "$work/ctrlc" "${common[@]}" "${long[@]}" \
  >"$work/ctrlc.out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -e "$work/ctrlc/latest" ] && break; sleep 0.02; done
kill -INT "$pid" 2>/dev/null; wait "$pid"; rc=$?
if [ "$rc" -eq 0 ] && [ -e "$work/ctrlc/model.safetensors" ]; then
  bad "ctrl-c: the run ended before the signal"
else
  [ "$rc" -eq 130 ] && ok || bad "ctrl-c: exit code $rc, not 130: $(tail -2 "$work/ctrlc.out")"
  step=$(sed -n 's/^interrupted at step \([0-9]*\): checkpoint saved.*/\1/p' "$work/ctrlc.out")
  [ -n "$step" ] && [ "$(cat "$work/ctrlc/latest")" = "$(printf 'checkpoint-%08d' "$step")" ] && ok \
    || bad "ctrl-c: no checkpoint at the step it stopped ($step, latest $(cat "$work/ctrlc/latest"))"
fi

# Bad input.
p() { "$bin" pretrain --out "$work/bad" "${common[@]}" "${short[@]}" "$@"; }
expect_error "missing corpus" "no such file" "$bin" pretrain --config "$work/gpt.json" --out "$work/bad" \
  --tokenizer "$work/tok" --data "$work/nope.txt"
: > "$work/empty.txt"
expect_error "empty corpus" "empty.txt" "$bin" pretrain --config "$work/gpt.json" --out "$work/bad" \
  --tokenizer "$work/tok" --data "$work/empty.txt" --cache "$work/cache"
printf 'the dog\ncaf\xe9 sees\n' > "$work/latin1.txt"
expect_error "non-UTF-8 corpus" "latin1.txt" "$bin" pretrain --config "$work/gpt.json" --out "$work/bad" \
  --tokenizer "$work/tok" --data "$work/latin1.txt" --cache "$work/cache"
expect_error "vocab mismatch" "vocab_size 80 but the tokenizer" p --config "$work/gpt80.json"
expect_error "missing tokenizer" "nope" "$bin" pretrain --config "$work/gpt.json" --out "$work/bad" \
  --tokenizer "$work/nope" --data "$work/corpus.txt"
expect_error "bad objective" "objective" p --config "$work/gpt.json" --objective unigram
expect_error "span too long" "span-length" p --config "$work/metalm.json" --objective semi-causal --span-length 40
expect_error "init-encoder on a GPT" "must be a metalm model" p --config "$work/gpt.json" --init-encoder "$work/mlm"
expect_error "init-encoder of a decoder" "not an encoder" p --config "$work/metalm.json" \
  --objective semi-causal --span-length 8 --init-encoder "$work/gpt"
sed 's/"encoder_ffn_embed_dim": 64/"encoder_ffn_embed_dim": 96/; s/"dropout": 0.1/"dropout": 0.0/' \
  "$work/mlm.json" > "$work/mlm96.json"
"$bin" init --config "$work/mlm96.json" --out "$work/mlm96" >/dev/null && ok || bad "init mlm96"
expect_error "init-encoder of another shape" "encoder_ffn_embed_dim: number 64 in encoder text" p \
  --config "$work/metalm.json" --objective semi-causal --span-length 8 --init-encoder "$work/mlm96"
expect_error "mlm on a decoder" "mlm" p --config "$work/gpt.json" --objective mlm
expect_error "existing run without --resume" "add --resume" "$bin" pretrain --config "$work/gpt.json" \
  --out "$work/gpt" "${common[@]}"
expect_error "resume with another config" "decoder_layers" "$bin" pretrain --config "$work/gpt3.json" \
  --out "$work/gpt" "${common[@]}" --resume
cp -r "$work/gpt" "$work/corrupt"
ck="$work/corrupt/$(cat "$work/corrupt/latest")"
head -c 1000 "$ck/model.safetensors" > "$ck/m" && mv "$ck/m" "$ck/model.safetensors"
expect_error "corrupt checkpoint" "model.safetensors" "$bin" pretrain --config "$work/gpt.json" \
  --out "$work/corrupt" "${common[@]}" --resume
echo "checkpoint-../../etc" > "$work/corrupt/latest"
expect_error "bad latest pointer" "not a checkpoint name" "$bin" pretrain --config "$work/gpt.json" \
  --out "$work/corrupt" "${common[@]}" --resume
# A full disk (a file size limit, the signal ignored so write() fails with EFBIG): one clear
# error, and the checkpoint already there is untouched.
cp -r "$work/gpt" "$work/full"
before=$(md5sum "$work/full/checkpoint-00000030/model.safetensors")
expect_error "disk full" "failed: File too large" bash -c 'trap "" XFSZ; ulimit -f 64; exec "$@"' _ "$bin" pretrain \
  --config "$work/gpt.json" --out "$work/full" "${common[@]}" --steps 50 --checkpoint-every 10 --resume
[ "$(md5sum "$work/full/checkpoint-00000030/model.safetensors")" = "$before" ] && ok || bad "disk full: the last checkpoint changed"
[ -z "$(find "$work/full" -name '*.tmp*')" ] && ok || bad "disk full: temporary files left: $(find "$work/full" -name '*.tmp*')"
[ ! -e "$work/bad" ] || [ -z "$(ls -A "$work/bad" | grep -v corpus-cache)" ] && ok || bad "a failed run left $(ls "$work/bad")"

finish
