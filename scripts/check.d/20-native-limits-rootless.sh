#!/usr/bin/env bash
# The native backend's limits, seccomp and rlimits tests once more as an
# ordinary user (nobody, uid 65534): `cargo test` ran them as root, where
# cgroup limits must work; here probe() must report them as not enforced,
# with the reason, and seccomp and rlimits must work unprivileged.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" != 0 ]; then
    echo "not root: the normal test run already was the unprivileged one"
    exit 0
fi

tests=(--test cgroups --test seccomp --test rlimits)
cargo test -p cleanroom-native --locked "${tests[@]}" --no-run
mapfile -t bins < <(
    cargo test -p cleanroom-native --locked "${tests[@]}" --no-run --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*"' | cut -d'"' -f4
)
if [ "${#bins[@]}" -ne 3 ]; then
    echo "expected 3 test binaries, found: ${bins[*]:-none}" >&2
    exit 1
fi
# Copies in a world-readable temporary directory: the checkout may sit
# below a directory nobody cannot enter (/root).
tmp=$(mktemp -d /tmp/cleanroom-rootless-limits.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
for bin in "${bins[@]}"; do
    cp "$bin" "$tmp/"
    copy="$tmp/$(basename "$bin")"
    chmod 755 "$copy"
    echo "--- as uid 65534: $copy"
    (cd "$tmp" && setpriv --reuid=65534 --regid=65534 --clear-groups -- "$copy" --test-threads=2)
done
