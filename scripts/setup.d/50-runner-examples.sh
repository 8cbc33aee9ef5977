#!/usr/bin/env bash
# What the examples under examples/ run from the host rootfs: redis-server
# and redis-cli (the service example), busybox (httpd and wget for the HTTP
# example) and python3. Idempotent: installs only what is missing.
set -euo pipefail

need=()
for pair in redis-server:redis-server redis-cli:redis-tools busybox:busybox-static python3:python3; do
    [ -x "/usr/bin/${pair%%:*}" ] || need+=("${pair#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "50-runner-examples: missing ${need[*]}; run as root to install them" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package starts a system-wide redis on 6379; the examples start
# their own inside sandboxes, so the host's is not needed and is stopped.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    systemctl stop redis-server || true
fi
echo "50-runner-examples: redis-server, redis-cli, busybox and python3 are installed"
