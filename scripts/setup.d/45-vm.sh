#!/usr/bin/env bash
# The vm backend's virtual machine monitor: installs Debian's
# qemu-system-x86 (QEMU's `microvm` machine, KVM or software emulation),
# and makes sure apt knows the kernel package `linux-image-amd64` depends
# on: the guest kernel is fetched from it with `apt-get download` into the
# user's cache by `cleanroom vm setup` (or the vm tests), never onto /boot.
#
# Idempotent: a second run finds the packages installed and changes
# nothing. Needs root. Log: /var/log/cleanroom/apt-vm.log.
set -euo pipefail

LOG_DIR=/var/log/cleanroom

die() {
    echo "45-vm: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages)"
mkdir -p "$LOG_DIR"

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v xz >/dev/null || need+=(xz-utils)
# objcopy strips the debug info off the agent put into the initramfs.
command -v objcopy >/dev/null || need+=(binutils)
if [ ${#need[@]} -gt 0 ] || ! apt-cache depends linux-image-amd64 2>/dev/null | grep -q 'Depends: linux-image-'; then
    apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >"$LOG_DIR/apt-vm.log" 2>&1 ||
        die "apt-get install ${need[*]} failed; see $LOG_DIR/apt-vm.log"
fi
qemu-system-x86_64 --version | head -1
