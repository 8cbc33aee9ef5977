#!/usr/bin/env bash
# After every test: no container of ours may be left in docker or podman
# (the acceptance check of the engine backends), then, in CI, stop the
# engines scripts/setup.d/40-engines.sh started.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="$PWD/scripts/podman/containers.conf"

status=0
for engine in docker podman; do
    if ! command -v "$engine" >/dev/null; then
        echo "90-engines: $engine is not installed; scripts/setup.d/40-engines.sh should have installed it" >&2
        status=1
        continue
    fi
    # Removals still finishing in the background get up to 10 s.
    for _ in $(seq 20); do
        left=$("$engine" ps -a --filter label=cleanroom.session --format '{{.ID}} {{.Names}} {{.Labels}}' 2>&1) || {
            echo "90-engines: $engine ps failed: $left" >&2
            status=1
            continue 2
        }
        [ -z "$left" ] && break
        sleep 0.5
    done
    if [ -n "$left" ]; then
        echo "90-engines: $engine still has containers created by the tests:" >&2
        echo "$left" >&2
        status=1
    else
        echo "$engine: no cleanroom containers left"
    fi
done

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
exit $status
