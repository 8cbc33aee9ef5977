#!/usr/bin/env bash
# tmux for the CLI test of `cleanroom exec -it` in a real terminal
# (crates/cleanroom-cli/tests/sandboxes.rs). Idempotent; installing needs root.
set -euo pipefail
command -v tmux >/dev/null && exit 0
[ "$(id -u)" = 0 ] || { echo "45-tmux: tmux is missing; run this as root to install it" >&2; exit 1; }
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null
command -v tmux >/dev/null || { echo "45-tmux: installing tmux failed" >&2; exit 1; }
