#!/usr/bin/env bash
# The image store's tests again as an unprivileged user: the same test
# binaries `cargo test` runs as root, so rootless unpacking (no chown,
# owner-writable directories, whiteouts as 0/0 devices and user.overlay.*
# attributes, overlayfs with `userxattr` in a user namespace) is tested, not
# assumed. Idempotent; fails loudly on any failure.
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

dir=$(mktemp -d /tmp/cleanroom-image-rootless-XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 0755 "$dir"

for test in store sources unpack roundtrip; do
    bin=$(cargo test -p cleanroom-image --test "$test" --no-run --locked \
            --message-format=json \
        | grep -o "\"executable\":\"[^\"]*/$test-[^\"]*\"" | tail -n1 | cut -d'"' -f4)
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
        echo "30-image-rootless: could not build the image $test test binary" >&2
        exit 1
    fi
    cp "$bin" "$dir/$test"
    chmod 0755 "$dir/$test"
    echo "running image $test as $user ($uid:$gid)"
    (
        cd "$dir"
        setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all \
            env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" USER="$user" \
                TMPDIR=/tmp CI="${CI:-true}" RUST_BACKTRACE=1 \
            "$dir/$test" --test-threads=2 "$@"
    )
done
