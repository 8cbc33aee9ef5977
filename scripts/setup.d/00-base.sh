#!/usr/bin/env bash
# Tools every test phase needs: a Rust toolchain with rustfmt and clippy.
set -euo pipefail
if ! command -v cargo >/dev/null; then
    echo "cargo is not installed: install Rust (rustup) first" >&2
    exit 1
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy
