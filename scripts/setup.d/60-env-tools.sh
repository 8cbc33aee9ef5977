#!/usr/bin/env bash
# What the environment tests (#15) run: redis-server and redis-cli as a real
# service on the host's own tools, and Debian's docker-compose (1.29, which
# honours depends_on health conditions) and podman-compose for the benchmark,
# and tmux for the `cleanroom top` test.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v podman-compose >/dev/null || missing+=(podman-compose)
command -v tmux >/dev/null || missing+=(tmux)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing ${missing[*]}: install them (apt-get install ${missing[*]}) as root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's package starts a system redis on 6379; the tests run their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    systemctl stop redis-server || true
fi
