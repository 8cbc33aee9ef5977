#!/usr/bin/env bash
# The binary as it is shipped: scripts/build-release links `cleanroom`
# statically (see there why). Built here the same way from the debug build
# (only the final crate is compiled again), then run end to end: as root
# and as an unprivileged user, with a memory limit, inside an empty root
# that has no C library at all (so it needs nothing from the host's glibc),
# and pulling from the local registry by the name `localhost`, which glibc
# resolves through its built-in `files` NSS module. Fails loudly.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/rootless.sh

fail() {
    echo "90-static-binary: $*" >&2
    exit 1
}

CLEANROOM_PROFILE=dev scripts/build-release
bin="${CARGO_TARGET_DIR:-target}/debug/cleanroom"
if [ "$(uname -s)" != Linux ] || ! getconf GNU_LIBC_VERSION >/dev/null 2>&1; then
    echo "90-static-binary: NOT RUN: not Linux with glibc, so the binary is not static" >&2
    exit 0
fi
if readelf -lW "$bin" | grep -q 'program interpreter'; then
    readelf -lW "$bin" | grep -A1 INTERP >&2
    fail "$bin has a program interpreter: it is not statically linked"
fi
if readelf -dW "$bin" 2>/dev/null | grep -q NEEDED; then
    fail "$bin needs shared libraries: $(readelf -dW "$bin" | grep NEEDED)"
fi

work=$(mktemp -d /tmp/cleanroom-static-XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
cp "$bin" "$work/cleanroom"
bin="$work/cleanroom"

"$bin" --version | grep -q '^cleanroom ' || fail "--version printed nothing"

# A busybox root without /lib: nothing dynamic could run in it.
root="$work/root"
mkdir -p "$root/bin" "$root/proc" "$root/dev" "$root/tmp" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
for applet in sh echo cat true; do ln -s busybox "$root/bin/$applet"; done
cp "$bin" "$root/bin/cleanroom"
[ ! -e "$root/lib" ] && [ ! -e "$root/lib64" ] || fail "the test root has a /lib"

out=$("$bin" run -q --backend native -- sh -c 'echo host-root')
[ "$out" = host-root ] || fail "run on the host root printed '$out'"
out=$("$bin" run -q --backend native --memory 64M --image "file://$root" -- /bin/echo limited)
[ "$out" = limited ] || fail "run with --memory printed '$out'"
out=$("$bin" run -q --backend native --image "file://$root" -- /bin/cleanroom --version)
case "$out" in
    "cleanroom "*) ;;
    *) fail "the binary did not run in a root without a C library: '$out'" ;;
esac

# Rootless: the same binary, an unprivileged user.
user=${ROOTLESS_USER:-cleanroom-rootless}
rootless_user "$user"
out=$(runuser -u "$user" -- env -i PATH=/usr/bin:/bin HOME=/ \
    "$bin" run -q --backend native --image "file://$root" -- /bin/echo rootless)
[ "$out" = rootless ] || fail "rootless run printed '$out'"

# Name lookup: a registry named `localhost` (the files module of static
# glibc's NSS; the registry itself listens on 127.0.0.1:5000).
if curl -sf http://127.0.0.1:5000/v2/ >/dev/null; then
    skopeo copy -q --dest-tls-verify=false "docker-daemon:cleanroom-busybox:latest" \
        docker://127.0.0.1:5000/cleanroom-static-check/busybox:1 ||
        fail "pushing the test image to the local registry failed"
    CLEANROOM_HOME="$work/home" "$bin" pull docker://localhost:5000/cleanroom-static-check/busybox:1 ||
        fail "pulling from localhost:5000 with the static binary failed"
elif [ "${CI:-false}" = true ]; then
    fail "the local registry (scripts/setup.d/30-registry.sh) does not answer on 127.0.0.1:5000"
else
    echo "90-static-binary: registry pull NOT RUN: no registry on 127.0.0.1:5000" >&2
fi
echo "90-static-binary: the static binary ran as root, rootless, in a root without libc, and pulled by name"
