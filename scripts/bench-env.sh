#!/usr/bin/env bash
# `cleanroom up -d` + `down` beside `docker-compose` and `podman-compose` on
# the same compose file (crates/cleanroom-env/bench/compose.yaml), N rounds,
# one line per timing. Needs the engines (scripts/setup.d/40-engines.sh) and
# the compose tools (scripts/setup.d/60-env-tools.sh).
# Usage: scripts/bench-env.sh [ROUNDS] (cleanroom binary from $CLEANROOM or target/).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
bin="${CLEANROOM:-$(pwd)/target/debug/cleanroom}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bench"
cp crates/cleanroom-env/bench/compose.yaml crates/cleanroom-env/bench/compose-network-none.yaml "$work/bench/"
cd "$work/bench"
export CLEANROOM_STATE_DIR="$work/state"
time_it() {
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; return 1; }
    end=$(date +%s%N)
    echo "$(( (end - start) / 1000000 ))"
}
compose_files=(-f compose.yaml -f compose-network-none.yaml)
for engine in docker podman; do
    if [ "$engine" = docker ]; then tool=docker-compose; else tool=podman-compose; fi
    for _ in $(seq "$rounds"); do
        cu=$(time_it "$bin" up -d --backend "$engine")
        cd_=$(time_it "$bin" down --backend "$engine")
        ku=$(time_it "$tool" "${compose_files[@]}" up -d)
        kd=$(time_it "$tool" "${compose_files[@]}" down)
        echo "$engine: cleanroom up ${cu} ms, down ${cd_} ms | $tool up ${ku} ms, down ${kd} ms"
    done
done
