//! `cleanroom gc`: remove what crashed callers left behind, on every backend.

use std::process::ExitCode;

use cleanroom::bridge::wait;
use cleanroom::{backend_for, BackendChoice};

use crate::cli::GcArgs;

pub fn main(args: GcArgs) -> cleanroom::Result<ExitCode> {
    let mut removed = 0usize;
    let mut failed = false;
    for choice in BackendChoice::AUTO_ORDER {
        let backend = backend_for(choice, None)?;
        let available = wait(backend.availability());
        if !available.available {
            if args.verbose_skip {
                say!("{choice}: skipped ({})", available.reason);
            }
            continue;
        }
        match wait(backend.gc()) {
            Ok(lines) => {
                removed += lines.len();
                for l in lines {
                    say!("{l}");
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("cleanroom: gc on {choice} failed: {e}");
            }
        }
    }
    match cleanroom::images::Store::open_default().and_then(|s| s.gc()) {
        Ok(r) => {
            removed += r.blobs_removed + r.layers_removed + r.rootfs_removed;
            if r.blobs_removed + r.layers_removed + r.rootfs_removed > 0 {
                say!(
                    "images: removed {} unreferenced blob(s), {} unpacked layer(s), {} merged rootfs ({} freed)",
                    r.blobs_removed,
                    r.layers_removed,
                    r.rootfs_removed,
                    super::images::human_size(r.bytes_freed)
                );
            }
        }
        Err(e) => {
            failed = true;
            eprintln!("cleanroom: gc of the image store failed: {e}");
        }
    }
    say!("removed {removed} leftover item(s)");
    Ok(if failed {
        ExitCode::from(crate::EXIT_CLEANROOM_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}
