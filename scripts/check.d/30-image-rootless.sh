#!/usr/bin/env bash
# The image store's tests again as an unprivileged user: the same test
# binaries `cargo test` runs as root, so rootless unpacking (no chown,
# owner-writable directories, whiteouts as 0/0 devices and user.overlay.*
# attributes, overlayfs with `userxattr` in a user namespace) is tested, not
# assumed. Idempotent; fails loudly on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/rootless.sh

run_tests_rootless cleanroom-image store sources unpack roundtrip -- "$@"
