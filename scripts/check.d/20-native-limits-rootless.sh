#!/usr/bin/env bash
# The native backend's limits, seccomp and rlimits tests once more as an
# ordinary user (nobody, uid 65534): `cargo test` ran them as root, where
# cgroup limits must work; here probe() must report them as not enforced,
# with the reason, and seccomp and rlimits must work unprivileged.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/rootless.sh

if [ "$(id -u)" != 0 ]; then
    echo "not root: the normal test run already was the unprivileged one"
    exit 0
fi

ROOTLESS_USER=65534 run_tests_rootless cleanroom-native cgroups seccomp rlimits
