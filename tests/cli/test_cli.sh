#!/usr/bin/env bash
# The metalm command line: every example config initialises and runs; bad input gives one line
# on stderr and a non-zero exit (never a crash: exit codes >= 128 would be signals).
# Usage: test_cli.sh METALM_BINARY CONFIG_DIR
set -u
bin="$1"; configs="$2"
source "$(dirname "$0")/lib.sh"

"$bin" --help >/dev/null && ok || bad "--help"
for cmd in init forward info toy-lm plot pretrain generate eval chat finetune; do
  "$bin" "$cmd" --help | grep -q "Example:" && ok || bad "$cmd --help has no example"
done

echo '[[0, 5, 9, 3], [0, 7, 2, 1]]' > "$work/tok.json"
for c in "$configs"/*.json; do
  n=$(basename "$c" .json)
  if "$bin" init --config "$c" --out "$work/$n" --seed 3 >/dev/null; then ok; else bad "init $n"; continue; fi
  [ -f "$work/$n/config.json" ] && [ -f "$work/$n/model.safetensors" ] && ok || bad "$n files"
  if grep -q '"vocab_size": -1' "$work/$n/config.json"; then
    expect_error "forward $n without vocabulary" "no embed_tokens" \
      "$bin" forward --model "$work/$n" --tokens "$work/tok.json" --out "$work/$n.out"
  else
    "$bin" forward --model "$work/$n" --tokens "$work/tok.json" --out "$work/$n.out" >/dev/null \
      && ok || bad "forward $n"
  fi
done
# Same seed, same weights (D7).
"$bin" init --config "$configs/gpt-preln.json" --out "$work/again" --seed 3 >/dev/null
cmp -s "$work/again/model.safetensors" "$work/gpt-preln/model.safetensors" && ok || bad "init not deterministic"

m="$work/gpt-preln"
expect_error "missing config" "cannot open" "$bin" init --config "$work/nope.json" --out "$work/x"
echo '{"model_type": "decoder", "decoder_embed_dimm": 64}' > "$work/typo.json"
expect_error "config typo" "did you mean decoder_embed_dim" "$bin" init --config "$work/typo.json" --out "$work/x"
echo '{"model_type": "decoder", "decoder_embed_dim": 65, "decoder_attention_heads": 4, "vocab_size": 10}' > "$work/odd.json"
expect_error "bad head split" "decoder_embed_dim" "$bin" init --config "$work/odd.json" --out "$work/x"
expect_error "not a model dir" "config.json" "$bin" forward --model "$work" --tokens "$work/tok.json" --out "$work/o"
echo '[[0, 5], [1]]' > "$work/ragged.json"
expect_error "ragged tokens" "same length" "$bin" forward --model "$m" --tokens "$work/ragged.json" --out "$work/o"
echo '[[0, 99999]]' > "$work/range.json"
expect_error "token out of range" "out of range" "$bin" forward --model "$m" --tokens "$work/range.json" --out "$work/o"
echo '[[0, 1' > "$work/trunc.json"
expect_error "truncated tokens JSON" "not valid JSON" "$bin" forward --model "$m" --tokens "$work/trunc.json" --out "$work/o"
echo '[["a"]]' > "$work/str.json"
expect_error "string token" "non-integer" "$bin" forward --model "$m" --tokens "$work/str.json" --out "$work/o"
head -c 100 "$m/model.safetensors" > "$work/trunc.safetensors"
cp -r "$m" "$work/broken"; cp "$work/trunc.safetensors" "$work/broken/model.safetensors"
expect_error "truncated weights" "safetensors" "$bin" forward --model "$work/broken" --tokens "$work/tok.json" --out "$work/o"
cp "$configs/gpt-postln.json" "$work/broken/config.json"
cp "$work/bert-relpos/model.safetensors" "$work/broken/model.safetensors"
expect_error "weights of another model" "unexpected: layernorm_embedding.bias" "$bin" forward --model "$work/broken" --tokens "$work/tok.json" --out "$work/o"
expect_error "unknown flag" "" "$bin" init --bogus
expect_error "bad threads" "" "$bin" info "$m" --threads -3
METALM_NUM_THREADS=abc "$bin" info "$m" >/dev/null 2>"$work/err"; rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && grep -q METALM_NUM_THREADS "$work/err" && ok || bad "bad METALM_NUM_THREADS"
"$bin" forward --model "$m" --tokens "$work/tok.json" --out "$work/bf16.out" --matmul-precision bf16 \
  >/dev/null && ok || bad "forward --matmul-precision bf16"
"$bin" forward --model "$m" --tokens "$work/tok.json" --out "$work/auto.out" --matmul-precision auto \
  >"$work/auto.txt" && grep -q "^matmul precision auto: \(f32\|bf16\): " "$work/auto.txt" && ok \
  || bad "forward --matmul-precision auto says what it chose"
expect_error "bad matmul precision" "matmul-precision" "$bin" forward --model "$m" --tokens "$work/tok.json" \
  --out "$work/o" --matmul-precision fp16
expect_error "toy-lm missing data" "cannot open data file" "$bin" toy-lm --config "$configs/toy-byte-lm.json" \
  --data "$work/none.txt" --steps 1
expect_error "toy-lm missing config" "cannot open" "$bin" toy-lm --config "$work/none.json" --steps 1

# metalm plot: a log from the real trainer, run directories, and every bad input as one line.
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
for i in $(seq 1 400); do echo "In the beginning God created the heaven and the earth. $i"; done > "$work/text.txt"
"$bin" toy-lm --config "$configs/toy-byte-lm.json" --data "$work/text.txt" --steps 4 --batch 2 \
  --seq-len 16 --eval-every 2 --sample-bytes 0 --threads 1 --log "$work/toy.jsonl" >/dev/null
"$bin" plot "$work/toy.jsonl" --out "$work/toy.png" >"$work/out" && is_png "$work/toy.png" \
  && grep -q "1 run (toy), 4 train and 2 validation points" "$work/out" && ok || bad "plot a toy-lm log: $(cat "$work/out")"
mkdir -p "$work/runA" "$work/runB"
printf '{"step": 1, "loss": 5.0}\n{"step": 2, "loss": 4.0}\n{"step": 2, "val_loss": 4.4}\n' > "$work/runA/log.jsonl"
printf '{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.5}\n{"step": 3, "lo' > "$work/runB/log.jsonl"
"$bin" plot "$work/runA" "$work/runB/" --names a,b --smooth 0.9 --logy --title "two runs" \
  --width 640 --height 400 --out "$work/two.png" >"$work/out" && is_png "$work/two.png" && ok || bad "plot two run dirs"
grep -q "runB/log.jsonl: skipped its last line" "$work/out" && ok || bad "plot notes a truncated last line"
"$bin" plot "$work/runA/log.jsonl" "$work/runB/" --out "$work/names.png" >"$work/out" \
  && grep -q "2 runs (runA, runB)" "$work/out" && ok || bad "plot names runs by their directory: $(cat "$work/out")"
[ "$(od -An -tu1 -j16 -N8 "$work/two.png" | tr -s ' ')" = " 0 0 2 128 0 0 1 144" ] && ok || bad "plot --width/--height"
expect_error "plot --strict truncated" "line 3: truncated last line" "$bin" plot "$work/runB" --strict --out "$work/x.png"
expect_error "plot missing log" "cannot open" "$bin" plot "$work/none.jsonl" --out "$work/x.png"
expect_error "plot dir without log" "without log.jsonl" "$bin" plot "$work" --out "$work/x.png"
: > "$work/empty.jsonl"
expect_error "plot empty log" "empty log" "$bin" plot "$work/empty.jsonl" --out "$work/x.png"
printf '{"step": 1, "loss": 5.0}\n{"step": 2, "loss": }\n' > "$work/malformed.jsonl"
expect_error "plot malformed line" "malformed.jsonl: line 2: record is not valid JSON" \
  "$bin" plot "$work/malformed.jsonl" --out "$work/x.png"
expect_error "plot names count" "--names has 1 names for 2 runs" "$bin" plot "$work/runA" "$work/runB" --names a --out "$work/x.png"
expect_error "plot bad smooth" "smooth" "$bin" plot "$work/runA" --smooth 1.5 --out "$work/x.png"
expect_error "plot unwritable" "cannot create" "$bin" plot "$work/runA" --out "$work/no/such/dir/x.png"
[ ! -e "$work/x.png" ] && [ -z "$(ls "$work" | grep '\.tmp\.')" ] && ok || bad "plot errors left a file behind"

finish
