#!/usr/bin/env bash
# `cleanroom test DIR -j 2 --backend native` over 200 generated one-step test
# files, taking turns with its anchor: the same 200 commands run by a shell
# loop through bubblewrap, two at a time (xargs -P2). Whole processes timed
# from outside, A B A B; prints each round and the medians and their ratio.
# Not a test: no pass/fail, read the numbers.
# Usage: scripts/bench-test-200.sh [ROUNDS] [TESTS]
# (binary from $CLEANROOM, else the release build in $CARGO_TARGET_DIR or target/).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"
tests="${2:-200}"
bin="${CLEANROOM:-${CARGO_TARGET_DIR:-$PWD/target}/release/cleanroom}"
[ -x "$bin" ] || { echo "no cleanroom binary at $bin: scripts/build-release" >&2; exit 1; }
command -v bwrap >/dev/null || { echo "bwrap is missing: apt-get install bubblewrap" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tests"
for i in $(seq 0 $((tests - 1))); do
    n=$(printf '%04d' "$i")
    printf '[[steps]]\ncommand = ["echo", "test %s"]\nexpected_output = "test %s"\n' "$i" "$i" \
        >"$work/tests/t$n.clnrm.toml"
done
# The anchor: the same commands, one bubblewrap sandbox each, all namespaces.
seq 0 $((tests - 1)) >"$work/numbers"
anchor() {
    xargs -P2 -I{} bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev \
        echo "test {}" <"$work/numbers" >/dev/null
}
ours() {
    "$bin" test "$work/tests" -j 2 --backend native >/dev/null 2>&1
}
ms() {
    local start end
    start=$(date +%s%N)
    "$@" || { echo "FAILED: $*" >&2; exit 1; }
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ours >/dev/null # warm the page cache and the per-user caches once
: >"$work/a"
: >"$work/b"
for r in $(seq "$rounds"); do
    a=$(ms ours)
    b=$(ms anchor)
    echo "$a" >>"$work/a"
    echo "$b" >>"$work/b"
    echo "round $r: cleanroom test ${a} ms, bwrap loop ${b} ms"
done
ma=$(median <"$work/a")
mb=$(median <"$work/b")
echo "median over $rounds rounds: cleanroom test ${ma} ms, bwrap loop ${mb} ms, ratio $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.2f", a / b}')"
