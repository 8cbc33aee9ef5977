#!/usr/bin/env bash
# Last of all, in CI: stop the engines scripts/setup.d/40-engines.sh
# started (after 95-leaks.sh has checked that no container of ours is left).
set -euo pipefail

if [ "${CI:-false}" = true ]; then
    for name in podman dockerd; do
        pidfile="/run/cleanroom-$name.pid"
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            echo "stopped $name (pid $pid)"
        fi
        rm -f "$pidfile"
    done
fi
