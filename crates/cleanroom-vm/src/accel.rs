//! Choosing the accelerator. A /dev/kvm that exists may still not boot a
//! stock kernel (on a nested virtual machine it can hang), so KVM is probed
//! by booting a guest with a short timeout; when that fails, TCG. The result
//! is cached per host kernel, QEMU and guest kernel, and
//! `CLEANROOM_VM_ACCEL=kvm|tcg` forces one.

use std::time::Duration;

use cleanroom_core::{Error, Result};

use crate::vm::{Accel, BootOptions, Vm};

/// How long a KVM guest may take to reach its agent in the probe.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The accelerator runs use, and how it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccelProbe {
    pub accel: Accel,
    /// How it was chosen, in a sentence (for `doctor` and the report).
    pub why: String,
}

/// The accelerator to use here: forced, cached, or probed now.
pub fn accelerator() -> Result<AccelProbe> {
    match std::env::var("CLEANROOM_VM_ACCEL").ok().as_deref() {
        Some("kvm") => {
            return Ok(AccelProbe {
                accel: Accel::Kvm,
                why: "forced by CLEANROOM_VM_ACCEL=kvm".into(),
            })
        }
        Some("tcg") => {
            return Ok(AccelProbe {
                accel: Accel::Tcg,
                why: "forced by CLEANROOM_VM_ACCEL=tcg".into(),
            })
        }
        Some("") | None => {}
        Some(other) => {
            return Err(Error::InvalidSpec(format!(
                "CLEANROOM_VM_ACCEL={other}: use `kvm` or `tcg` (or unset it to probe)"
            )))
        }
    }
    let (kernel, initramfs) = crate::boot_files()?;
    let host = rustix::system::uname();
    let key = cleanroom_core::paths::cache_key(
        format!(
            "{}\n{}\n{}",
            host.release().to_string_lossy(),
            host.version().to_string_lossy(),
            kernel.package
        )
        .as_bytes(),
    );
    let cache = crate::assets::cache_root().join("accel").join(key);
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Some((name, why)) = text.split_once('\n') {
            let accel = match name {
                "kvm" => Some(Accel::Kvm),
                "tcg" => Some(Accel::Tcg),
                _ => None,
            };
            if let Some(accel) = accel {
                return Ok(AccelProbe {
                    accel,
                    why: format!("{} (probed earlier)", why.trim()),
                });
            }
        }
    }
    let probe = probe_kvm(&kernel.boot_image(), &initramfs);
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(&cache, format!("{}\n{}\n", probe.accel.name(), probe.why));
    }
    Ok(probe)
}

fn probe_kvm(kernel: &std::path::Path, initramfs: &std::path::Path) -> AccelProbe {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return AccelProbe {
            accel: Accel::Tcg,
            why: format!("/dev/kvm cannot be opened ({e}): software emulation (TCG)"),
        };
    }
    let mut opts = BootOptions::host_root(Accel::Kvm);
    opts.boot_timeout = KVM_PROBE_TIMEOUT;
    match Vm::boot(kernel, initramfs, &opts) {
        Ok(vm) => {
            let took = vm.boot_time;
            vm.shutdown();
            AccelProbe {
                accel: Accel::Kvm,
                why: format!("KVM booted a probe guest in {} ms", took.as_millis()),
            }
        }
        Err(_) => AccelProbe {
            accel: Accel::Tcg,
            why: format!(
                "/dev/kvm exists but a probe guest did not boot under KVM within {} s (as on \
                 nested virtual machines): software emulation (TCG)",
                KVM_PROBE_TIMEOUT.as_secs()
            ),
        },
    }
}
