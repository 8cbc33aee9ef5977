# Sourced by the check.d phases that run test binaries again as an
# unprivileged user, so "works rootless" is tested, not assumed.
#
#   run_tests_rootless CRATE TEST... [-- ARGS...]
#
# builds each integration test binary of CRATE as the caller, copies it into
# a world-readable temporary directory (the checkout may sit below a home
# the user cannot enter) and runs it there as $ROOTLESS_USER (default
# cleanroom-rootless, created if missing) with an empty environment and no
# capabilities. ARGS go to every test binary. Fails on the first failure.

rootless_user() {
    local user=$1
    if ! id -u "$user" >/dev/null 2>&1; then
        useradd --system --user-group --create-home --home-dir "/var/lib/$user" \
            --shell /usr/sbin/nologin "$user"
    fi
}

run_tests_rootless() {
    local crate=$1
    shift
    local tests=() args=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        tests+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift
    args=("$@")

    local user=${ROOTLESS_USER:-cleanroom-rootless}
    local uid gid home
    if [[ "$user" =~ ^[0-9]+$ ]]; then
        uid=$user gid=$user home=/
    else
        rootless_user "$user"
        uid=$(id -u "$user")
        gid=$(id -g "$user")
        home=$(getent passwd "$user" | cut -d: -f6)
    fi

    local dir
    dir=$(mktemp -d "/tmp/$crate-rootless-XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap outlives this function's locals
    trap "rm -rf '$dir'" EXIT
    chmod 0755 "$dir"

    local test bin
    for test in "${tests[@]}"; do
        bin=$(cargo test -p "$crate" --test "$test" --no-run --locked \
                --message-format=json \
            | grep -o "\"executable\":\"[^\"]*/$test-[^\"]*\"" | tail -n1 | cut -d'"' -f4) || true
        if [ -z "$bin" ] || [ ! -x "$bin" ]; then
            # The JSON above hides the compiler's message: build once more
            # in plain text so the log says why.
            cargo test -p "$crate" --test "$test" --no-run --locked >&2 || true
            df -h . >&2
            echo "rootless: could not build the $crate test binary $test" >&2
            return 1
        fi
        cp "$bin" "$dir/$test"
        chmod 0755 "$dir/$test"
        echo "running $crate $test as $user ($uid:$gid)"
        (
            cd "$dir"
            setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all \
                env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" USER="$user" \
                    TMPDIR=/tmp CI="${CI:-true}" RUST_BACKTRACE=1 \
                "$dir/$test" --test-threads=2 "${args[@]}"
        )
    done
    # A later call sets its own trap: clean up this call's copies now.
    rm -rf "$dir"
    trap - EXIT
}
