#!/usr/bin/env bash
# The workspace benchmark compares sync with `rsync -a` (not a test
# dependency: the bench says when rsync is missing).
set -euo pipefail
if ! command -v rsync >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq rsync >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq rsync >/dev/null; }
    else
        echo "rsync is missing: the workspace benchmark will skip its rsync row" >&2
    fi
fi
