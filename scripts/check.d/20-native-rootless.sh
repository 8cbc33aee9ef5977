#!/usr/bin/env bash
# The native backend's conformance suite and escape tests as an unprivileged
# user: the same test binaries `cargo test` runs as root, run again by a user
# with no privileges at all, so "works rootless" is tested, not assumed.
# Limits the user cannot enforce here (no cgroup delegation) must be reported
# as not enforced by the suite itself. Idempotent; fails loudly on any failure.
# Extra arguments go to the test binaries (e.g. --nocapture).
set -euo pipefail
cd "$(dirname "$0")/../.."

user=cleanroom-rootless
if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --user-group --create-home --home-dir "/var/lib/$user" \
        --shell /usr/sbin/nologin "$user"
fi
uid=$(id -u "$user")
gid=$(id -g "$user")
home=$(getent passwd "$user" | cut -d: -f6)

dir=$(mktemp -d /tmp/cleanroom-rootless-XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 0755 "$dir"

for test in conformance_native conformance_native_busybox escape rootfs pods copy; do
    # Build as the caller, then copy the binary where the user can run it
    # (the target directory may sit under a home the user cannot enter).
    bin=$(cargo test -p cleanroom-native --test "$test" --no-run --locked \
            --message-format=json \
        | grep -o "\"executable\":\"[^\"]*/$test-[^\"]*\"" | tail -n1 | cut -d'"' -f4) || true
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
        echo "20-native-rootless: could not build the native $test test binary" >&2
        exit 1
    fi
    cp "$bin" "$dir/$test"
    chmod 0755 "$dir/$test"
    echo "running $test as $user ($uid:$gid)"
    (
        cd "$dir"
        setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all \
            env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" USER="$user" \
                TMPDIR=/tmp CI="${CI:-true}" RUST_BACKTRACE=1 \
            "$dir/$test" --test-threads=2 "$@"
    )
done
