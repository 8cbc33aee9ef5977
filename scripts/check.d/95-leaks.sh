#!/usr/bin/env bash
# The leak check, last of all (issue 12): after the whole suite nothing of
# Cleanroom's may remain on the machine — no cgroup (v1 controllers and v2),
# no mount, no process (the CLI, cleanroom-ns, sandbox inits), no state or
# lease file, no temporary directory (under TMPDIR and the stores' tmp/),
# no labelled container in docker or podman. Engines get a bounded time
# to finish auto-removals. Everything found is listed; any find fails CI.
#
# It judges everything, so it must run alone, after every test (as
# scripts/test runs it). `LEAKS_ONLY_PID=PID` restricts it to what one
# caller made (cgroups and containers named for that pid), for use while
# other tests run.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="$PWD/scripts/podman/containers.conf"

only=${LEAKS_ONLY_PID:-}
status=0
found() {
    local what=$1
    shift
    echo "95-leaks: $what:" >&2
    printf '%s\n' "$@" | sed 's/^/  /' >&2
    status=1
}

# Repeats a listing command until it prints nothing or SECONDS run out.
settle() {
    local seconds=$1 out
    shift
    for _ in $(seq $((seconds * 5))); do
        out=$("$@") || return 1
        [ -z "$out" ] && return 0
        sleep 0.2
    done
    printf '%s\n' "$out"
}

# cgroups: cleanroom-<pid>-<n>[-<start>] and the -self leaves, anywhere
# below /sys/fs/cgroup (v1 hierarchies and the unified one). Not the
# engines' own parent cgroup (cleanroom-docker, see 40-engines.sh).
list_cgroups() {
    local pattern='cleanroom-[0-9]*'
    [ -n "$only" ] && pattern="cleanroom-$only-*"
    find /sys/fs/cgroup -mindepth 1 -maxdepth 14 -type d -name "$pattern" 2>/dev/null || true
}
left=$(settle 10 list_cgroups)
[ -z "$left" ] || found "cgroups left" $left

# Processes of ours: the CLI, the native backend's helper and inits.
list_processes() {
    local p comm
    for p in /proc/[0-9]*; do
        comm=$(cat "$p/comm" 2>/dev/null) || continue
        case "$comm" in
            cleanroom | cleanroom-ns | cleanroom-init)
                echo "${p#/proc/} $comm $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" ;;
            qemu-system-x86*)
                # The vm backend's VMs (their run directories name them).
                tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q cleanroom-vm- &&
                    echo "${p#/proc/} $comm (a vm backend VM)" ;;
        esac
    done
}
if [ -z "$only" ]; then
    left=$(settle 10 list_processes)
    [ -z "$left" ] || found "processes left" "$left"
fi

# Where Cleanroom keeps files: root's store and cache, the rootless test
# users' (scripts/lib/rootless.sh: cleanroom-rootless, or uid 65534 with
# HOME=/), and whatever CLEANROOM_HOME points at.
homes=("$HOME")
for h in /var/lib/cleanroom-rootless ""; do
    [ -d "$h/.local/share/cleanroom" ] || [ -d "$h/.cache/cleanroom" ] && homes+=("$h")
done
stores=()
caches=()
[ -n "${CLEANROOM_HOME:-}" ] && stores+=("$CLEANROOM_HOME") && caches+=("$CLEANROOM_HOME/cache")
stores+=("${XDG_DATA_HOME:-$HOME/.local/share}/cleanroom")
caches+=("${XDG_CACHE_HOME:-$HOME/.cache}/cleanroom")
for h in "${homes[@]:1}"; do
    stores+=("$h/.local/share/cleanroom")
    caches+=("$h/.cache/cleanroom")
done

# Mounts: anything mounted below a store, a cache or a cleanroom temporary
# directory, and the native backend's set-up mounts seen from outside.
tmp=${TMPDIR:-/tmp}
if [ -z "$only" ]; then
    left=$(awk -v tmp="$tmp" -v roots="${stores[*]} ${caches[*]}" '
        BEGIN { n = split(roots, r, " ") }
        {
            mp = $5
            if (mp ~ /^\/(newroot|oldroot)(\/|$)/ || index(mp, tmp "/cleanroom-") == 1) { print; next }
            for (i = 1; i <= n; i++) if (r[i] != "" && index(mp, r[i]) == 1) { print; next }
        }' /proc/self/mountinfo)
    [ -z "$left" ] || found "mounts left" "$left"
fi

# State and temporary files.
if [ -z "$only" ]; then
    left=""
    for s in "${stores[@]}"; do
        [ -d "$s" ] || continue
        # Half-done imports and unpacks, and the store's scratch space.
        left+=$(find "$s/tmp" -mindepth 1 -maxdepth 1 2>/dev/null || true)$'\n'
        left+=$(find "$s" -maxdepth 4 -name '.unpacking-*' 2>/dev/null || true)$'\n'
        # A lease whose holder is gone (an image "in use" by nobody).
        for lease in "$s"/leases/*; do
            [ -f "$lease" ] || continue
            if flock -n "$lease" true 2>/dev/null; then left+="$lease (no sandbox holds it)"$'\n'; fi
        done
        for state in "$s/state" "$s/sandboxes"; do
            [ -d "$state" ] && left+=$(find "$state" -mindepth 1 2>/dev/null || true)$'\n'
        done
    done
    for c in "${caches[@]}"; do
        left+=$(find "$c" -maxdepth 3 -name '.unpacking-*' 2>/dev/null || true)$'\n'
    done
    # What Cleanroom itself makes there: the local backend's working
    # directories, the conformance suite's host directories, the bench's
    # root trees. (Test binaries' own fixtures are theirs to clean.)
    left+=$(find "$tmp" /tmp -mindepth 1 -maxdepth 1 \( -name 'cleanroom-local-*' \
        -o -name 'cleanroom-conformance-*' -o -name 'cleanroom-strict-marker-*' \
        -o -name 'cleanroom-bench-*' \) 2>/dev/null | sort -u || true)
    # The vm backend's per-VM run directories (agent socket, console log).
    left+=$'\n'$(find "$tmp" /tmp -mindepth 2 -maxdepth 2 -path '*/cleanroom-vm-*/*' \
        2>/dev/null | sort -u || true)
    left=$(printf '%s\n' "$left" | sed '/^$/d' | sort -u)
    [ -z "$left" ] || found "state or temporary files left" "$left"
fi

# Containers labelled as ours, in any state.
list_containers() {
    local engine=$1 label=cleanroom.created-by=cleanroom
    [ -n "$only" ] && label="cleanroom.pid=$only"
    "$engine" ps -a --filter "label=$label" --format '{{.ID}} {{.Status}} {{.Names}}'
    # Older builds labelled only the session.
    [ -n "$only" ] || "$engine" ps -a --filter label=cleanroom.session --format '{{.ID}} {{.Status}} {{.Names}}'
}
for engine in docker podman; do
    if ! command -v "$engine" >/dev/null; then
        found "$engine is not installed" "scripts/setup.d/40-engines.sh should have installed it"
        continue
    fi
    if ! left=$(settle 20 list_containers "$engine" 2>&1); then
        found "$engine ps failed" "$left"
        continue
    fi
    [ -z "$left" ] || found "$engine containers left" "$(printf '%s\n' "$left" | sort -u)"
done

if [ $status = 0 ]; then
    echo "95-leaks: no cgroup, mount, process, state file, temporary directory or container of ours left"
fi
exit $status
