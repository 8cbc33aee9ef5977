#!/usr/bin/env bash
# CI's slow phase: the conformance suite's core sections on the vm backend
# (crates/cleanroom-vm/tests/conformance_vm.rs). Every check boots a QEMU
# microvm, under software emulation (TCG) where KVM does not boot a guest,
# so `cargo test` leaves this target out (`test = false`) and it runs here,
# by name. The guest kernel is fetched into the cache on first use.
# Then named VMs: the conformance detached section (one boot per check,
# two at a time) and the cross-process tests (a VM outliving its creator,
# dead after its QEMU is killed, gc, rm).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CI="${CI:-false}"
started=$(date +%s)
cargo test -p cleanroom-vm --test conformance_vm -- --test-threads 2 "$@"
cargo test -p cleanroom-vm --test conformance_vm_detached --test named_vm -- --test-threads 2 "$@"
echo "70-vm-conformance: took $(($(date +%s) - started)) s"
