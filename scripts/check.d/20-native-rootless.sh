#!/usr/bin/env bash
# The native backend's conformance suite and escape tests as an unprivileged
# user: the same test binaries `cargo test` runs as root, run again by a user
# with no privileges at all, so "works rootless" is tested, not assumed.
# Limits the user cannot enforce here (no cgroup delegation) must be reported
# as not enforced by the suite itself. Idempotent; fails loudly on any failure.
# Extra arguments go to the test binaries (e.g. --nocapture).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/rootless.sh

run_tests_rootless cleanroom-native \
    conformance_native conformance_native_busybox escape rootfs pods copy userns oom detached detached_pod \
    netns_reuse fork_server -- "$@"

# The workspace scenario (snapshot, exec, diff, conflict-safe sync) on native
# as the same user; its docker and podman twins need the engines' root sockets.
run_tests_rootless cleanroom-workspace scenario -- scenario_native bad_input_is_named "$@"

# A test file's services through the environments engine (health-gated
# depends_on, wiring, /etc/hosts), as the same user.
run_tests_rootless cleanroom-runner services_engine -- "$@"
