#!/usr/bin/env bash
# The vm backend's virtual machine monitor: installs Debian's
# qemu-system-x86 (QEMU's `microvm` machine, KVM or software emulation) and
# busybox-static, whose `insmod` loads the guest kernel's modules in the
# initramfs. The guest kernel itself is fetched into the user's cache by
# `cleanroom vm setup` (or the vm tests), never installed onto /boot.
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
if ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
    need+=(busybox-static file)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >"$LOG_DIR/apt-vm.log" 2>&1 ||
        die "apt-get install ${need[*]} failed; see $LOG_DIR/apt-vm.log"
fi
qemu-system-x86_64 --version | head -1
