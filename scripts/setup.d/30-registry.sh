#!/usr/bin/env bash
# A local OCI registry for the image store's pull tests: installs Debian's
# docker-registry, skopeo and busybox-static, and starts a registry on
# 127.0.0.1:5000 with its own config and storage under /var/tmp (not the
# system service) unless something already answers there.
#
# Idempotent: a second run finds the packages installed and the registry
# answering and changes nothing. Needs root. Log: /var/log/cleanroom/registry.log.
set -euo pipefail

ADDR=127.0.0.1:5000
STATE=/var/tmp/cleanroom-registry
LOG_DIR=/var/log/cleanroom

die() {
    echo "30-registry: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages)"
mkdir -p "$LOG_DIR"

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v curl >/dev/null || need+=(curl)
if ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
    need+=(busybox-static file)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    # Keep the package's own service from grabbing :5000 where init scripts run.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${need[@]}" >"$LOG_DIR/apt-registry.log" 2>&1 ||
        die "apt-get install ${need[*]} failed; see $LOG_DIR/apt-registry.log"
fi

answers() { curl -sf "http://$ADDR/v2/" >/dev/null 2>&1; }

if ! answers; then
    # Debian's own service (all interfaces, htpasswd auth) would hold :5000
    # where systemd started it on install; the tests need this one instead.
    if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
        echo "stopping Debian's docker-registry service so the test registry can use $ADDR"
        systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
    mkdir -p "$STATE/data"
    cat >"$STATE/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/data
  delete:
    enabled: true
http:
  addr: $ADDR
YAML
    echo "starting docker-registry on $ADDR (config: $STATE/config.yml, log: $LOG_DIR/registry.log)"
    nohup setsid docker-registry serve "$STATE/config.yml" >>"$LOG_DIR/registry.log" 2>&1 </dev/null &
    echo $! >"$STATE/pid"
    for _ in $(seq 1 150); do
        answers && break
        sleep 0.2
    done
    answers || {
        tail -20 "$LOG_DIR/registry.log" >&2
        die "the registry did not answer on http://$ADDR/v2/ within 30 s; see $LOG_DIR/registry.log"
    }
fi
echo "registry: http://$ADDR/v2/ answers"
