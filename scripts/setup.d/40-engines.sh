#!/usr/bin/env bash
# Container engines for the docker and podman backends' tests: installs
# docker.io and podman from Debian, starts dockerd and `podman system service`
# when their sockets do not answer, and imports the test image
# `cleanroom-busybox:latest` (built from busybox-static) into both.
#
# Idempotent: a second run finds the engines answering and the image current
# and changes nothing. Needs root. Logs go to /var/log/cleanroom/.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE="cleanroom-busybox:latest"
LOG_DIR=/var/log/cleanroom
PODMAN_SOCK=/run/podman/podman.sock
DOCKER_SOCK=/var/run/docker.sock
export CONTAINERS_CONF="$PWD/scripts/podman/containers.conf"

die() {
    echo "40-engines: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts dockerd)"
mkdir -p "$LOG_DIR"

# --- packages ---------------------------------------------------------------
need=()
for pair in dockerd:docker.io podman:podman runc:runc newuidmap:uidmap; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
# busybox-static: the image needs a statically linked busybox.
if ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
    need+=(busybox-static)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" file >"$LOG_DIR/apt.log" 2>&1 ||
        die "apt-get install ${need[*]} failed; see $LOG_DIR/apt.log"
fi
command -v file >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq file >/dev/null

# Waits up to $2 seconds for command $1 to succeed.
wait_for() {
    local what=$1 secs=$2 i
    for ((i = 0; i < secs * 5; i++)); do
        if eval "$what" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    return 1
}

# Containers' cgroups go below this process's own memory cgroup when it is
# not the root one (a CI job's cgroup), never beside it.
own_cgroup=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' /proc/self/cgroup)

# --- dockerd ----------------------------------------------------------------
if ! docker -H "unix://$DOCKER_SOCK" version >/dev/null 2>&1; then
    args=(--bridge=none --iptables=false --ip6tables=false --host "unix://$DOCKER_SOCK")
    if [ -n "$own_cgroup" ] && [ "$own_cgroup" != / ]; then
        args+=(--cgroup-parent "$own_cgroup/cleanroom-docker")
    fi
    echo "starting dockerd ${args[*]} (log: $LOG_DIR/dockerd.log)"
    # From /: a daemon must not keep a checkout as its working directory
    # (conmon and shims inherit it and fail once that checkout is deleted).
    (cd / && exec nohup dockerd "${args[@]}" >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null) &
    echo $! >/run/cleanroom-dockerd.pid
    wait_for "docker -H unix://$DOCKER_SOCK version" 60 || {
        tail -20 "$LOG_DIR/dockerd.log" >&2
        die "dockerd did not answer on $DOCKER_SOCK within 60 s; see $LOG_DIR/dockerd.log"
    }
fi
echo "docker: $(docker -H "unix://$DOCKER_SOCK" version --format '{{.Server.Version}}')"

# --- podman -----------------------------------------------------------------
podman_api() { curl -sf --unix-socket "$PODMAN_SOCK" http://d/_ping; }
command -v curl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
start_podman() {
    mkdir -p "$(dirname "$PODMAN_SOCK")"
    rm -f "$PODMAN_SOCK"
    echo "starting podman system service (CONTAINERS_CONF=$CONTAINERS_CONF, log: $LOG_DIR/podman.log)"
    # From /, as dockerd above.
    (cd / && exec nohup podman system service --time=0 "unix://$PODMAN_SOCK" \
        >>"$LOG_DIR/podman.log" 2>&1 </dev/null) &
    echo $! >/run/cleanroom-podman.pid
    wait_for podman_api 60 || {
        tail -20 "$LOG_DIR/podman.log" >&2
        die "podman system service did not answer on $PODMAN_SOCK within 60 s; see $LOG_DIR/podman.log"
    }
}
# Stops the service this script started (or whichever serves the socket).
stop_podman() {
    local pid
    pid=$(cat /run/cleanroom-podman.pid 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || pkill -f "podman system service.*$PODMAN_SOCK" || true
    wait_for '! podman_api' 30 || die "the old podman service on $PODMAN_SOCK did not stop"
}
podman_api >/dev/null 2>&1 || start_podman
echo "podman: $(podman version --format '{{.Server.Version}}' 2>/dev/null || podman --version)"

# --- the busybox test image ---------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,etc,tmp,workdir,proc,sys,dev,root}
chmod 1777 "$root/tmp" "$root/workdir"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\ncleanroom:x:1000:1000:cleanroom:/workdir:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\ncleanroom:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/rootfs.tar" .
digest=$(sha256sum "$work/rootfs.tar" | cut -d' ' -f1)

# Imports the tarball with engine $1 unless the image there has the same digest label.
import_into() {
    local engine=$1 have
    have=$($engine image inspect "$IMAGE" --format '{{ index .Config.Labels "cleanroom.rootfs.sha256" }}' 2>/dev/null || true)
    if [ "$have" = "$digest" ]; then
        echo "$engine: $IMAGE is current"
        return
    fi
    $engine import --change 'CMD ["/bin/sh"]' --change "LABEL cleanroom.rootfs.sha256=$digest" \
        "$work/rootfs.tar" "$IMAGE" >/dev/null || die "$engine import of $IMAGE failed"
    echo "$engine: imported $IMAGE"
}
DOCKER_HOST="unix://$DOCKER_SOCK" import_into docker
import_into podman

# --- smoke test: each engine runs the image hardened, as the tests will --------
out=$(docker -H "unix://$DOCKER_SOCK" run --rm --network none --user 1000:1000 --cap-drop ALL --read-only "$IMAGE" id -u 2>&1) ||
    die "docker cannot run $IMAGE: $out"
[ "$out" = 1000 ] || die "docker ran $IMAGE as uid $out, want 1000"
out=$(podman run --rm --network none --user 1000:1000 --cap-drop ALL --read-only "$IMAGE" id -u 2>&1) ||
    die "podman cannot run $IMAGE: $out (see scripts/podman/containers.conf for the runtime/ulimit fixes)"
[ "$out" = 1000 ] || die "podman ran $IMAGE as uid $out, want 1000"
# The tests use the service, not the CLI: run through its API too. A service
# that answers but cannot start containers (left over from an earlier run in
# a state it cannot recover from) is restarted once.
podman_remote() {
    podman --remote --url "unix://$PODMAN_SOCK" run --rm --network none --user 1000:1000 \
        --cap-drop ALL --read-only "$IMAGE" id -u 2>&1
}
if ! out=$(podman_remote) || [ "$out" != 1000 ]; then
    echo "the podman service cannot run $IMAGE ($out); restarting it"
    stop_podman
    start_podman
    out=$(podman_remote) || die "the podman service cannot run $IMAGE: $out; see $LOG_DIR/podman.log"
    [ "$out" = 1000 ] || die "the podman service ran $IMAGE as uid $out, want 1000"
fi
echo "engines ready: docker on $DOCKER_SOCK, podman on $PODMAN_SOCK, image $IMAGE"
