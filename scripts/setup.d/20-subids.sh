#!/usr/bin/env bash
# Subordinate ids for the native backend run as root: the system user
# `cleanroom` (no login, no home) and 65536 uids and gids for it in
# /etc/subuid and /etc/subgid. A root caller's sandbox maps its ids 0-65535
# onto them, so that uid 0 inside is never host root (see
# crates/cleanroom-native/src/idmap.rs); without them it runs as nobody.
#
# The range starts at 1000000000, far above the 100000.. ranges useradd
# hands out to ordinary users, so it overlaps none of theirs.
#
# Idempotent: a second run finds the user and both entries and changes
# nothing. Needs root.
set -euo pipefail

USER_NAME=cleanroom
START=1000000000
COUNT=65536

die() {
    echo "20-subids: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (it adds a system user)"

if ! id -u "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$USER_NAME" || die "cannot add the user $USER_NAME"
fi
for file in /etc/subuid /etc/subgid; do
    touch "$file"
    if ! grep -q "^$USER_NAME:" "$file"; then
        echo "$USER_NAME:$START:$COUNT" >>"$file"
    fi
done
echo "20-subids: $USER_NAME has subordinate ids $START-$((START + COUNT - 1))"
