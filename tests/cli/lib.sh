# Shared by the CLI test scripts (sourced): a scratch directory removed on exit, pass/fail
# counting, and expect_error.
# expect_error NAME PATTERN CMD...: CMD exits in [1, 128) (>= 128 would be a signal: a crash),
# and its stderr, besides the corpus reader's progress lines, is one line holding PATTERN.
# VERBOSE=1 prints each error line that passed.
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
expect_error() {
  local name="$1" pattern="$2"; shift 2
  "$@" >"$work/out" 2>"$work/err"; local rc=$?
  grep -v '^\[corpus\] \|^tokenizing ' "$work/err" > "$work/err1"
  local lines; lines=$(wc -l < "$work/err1")
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ]; then bad "$name: exit code $rc: $(head -c 300 "$work/err")"; return; fi
  if [ "$lines" -ne 1 ]; then bad "$name: $lines stderr lines: $(head -c 600 "$work/err")"; return; fi
  if ! grep -q -- "$pattern" "$work/err1"; then bad "$name: stderr lacks '$pattern': $(cat "$work/err1")"; return; fi
  [ -n "${VERBOSE:-}" ] && echo "$name: $(cat "$work/err1")"
  ok
}
# The summary line and the exit code: 0 only if nothing failed.
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
