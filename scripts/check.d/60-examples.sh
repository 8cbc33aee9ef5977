#!/usr/bin/env bash
# The examples a new user runs first (examples/*/*.clnrm.toml), run with
# `cleanroom test examples/` on the native backend, the acceptance check of
# the test runner: services in pods, readiness, steps inside services.
# Runs as root and again as an unprivileged user. Needs native (network
# namespaces for the pods): under CI=true a missing
# native backend is a failure, never a skip. Afterwards no service process
# may be left running.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build -q -p cleanroom-cli --locked
bin="${CARGO_TARGET_DIR:-target}/debug/cleanroom"

if ! "$bin" doctor --json | python3 -c '
import json, sys
sys.exit(0 if any(b["name"] == "native" and b["available"] for b in json.load(sys.stdin)) else 1)
'; then
    if [ "${CI:-false}" = true ]; then
        echo "60-examples: the native backend is not available, so examples/ cannot run (CI=true)" >&2
        "$bin" doctor >&2 || true
        exit 1
    fi
    echo "60-examples: NOT RUN: the native backend is not available here (see cleanroom doctor)" >&2
    exit 0
fi

"$bin" test examples/ --backend native -j 2

# Again as an unprivileged user (nobody), from copies it can read: pods,
# services and readiness must work rootless too.
if [ "$(id -u)" = 0 ]; then
    dir=$(mktemp -d /tmp/cleanroom-examples-XXXXXX)
    trap 'rm -rf "$dir"' EXIT
    cp "$bin" "$dir/cleanroom"
    cp -r examples "$dir/examples"
    chmod -R a+rX "$dir"
    (cd "$dir" && setpriv --reuid=65534 --regid=65534 --clear-groups \
        env HOME="$dir" ./cleanroom test examples/ --backend native -j 2)
fi

left=$(pgrep -a -f 'redis-server --port 6379|http.server 8080' || true)
if [ -n "$left" ]; then
    echo "60-examples: service processes left running after the examples:" >&2
    echo "$left" >&2
    exit 1
fi
echo "60-examples: examples pass on native and left nothing running"
