//! `cleanroom gc`: remove what crashed callers left behind, on every backend
//! and in the image store, and say what went, by kind and count.

use std::process::ExitCode;

use cleanroom::bridge::wait;
use cleanroom::{backend_for, count_by_kind, BackendChoice, Removed};

use crate::cli::GcArgs;

pub fn main(args: GcArgs) -> cleanroom::Result<ExitCode> {
    let mut removed: Vec<Removed> = Vec::new();
    let mut failed = false;
    // vm's gc needs no guest (it removes dead owners' files), so it runs
    // even where vm is not available.
    for choice in BackendChoice::AUTO_ORDER
        .into_iter()
        .chain([BackendChoice::Vm])
    {
        let backend = backend_for(choice, None)?;
        let available = wait(backend.availability());
        if !available.available && choice != BackendChoice::Vm {
            if args.verbose_skip {
                say!("{choice}: skipped ({})", available.reason);
            }
            continue;
        }
        match wait(backend.gc()) {
            Ok(items) => removed.extend(items),
            Err(e) => {
                failed = true;
                eprintln!("cleanroom: gc on {choice} failed: {e}");
            }
        }
    }
    match cleanroom::images::Store::open_default().and_then(|s| s.gc()) {
        Ok(r) => removed.extend(image_store_removed(&r)),
        Err(e) => {
            failed = true;
            eprintln!("cleanroom: gc of the image store failed: {e}");
        }
    }
    for r in removed.iter().filter(|r| r.count > 0) {
        say!("{r}");
    }
    say!("{}", summary(&removed));
    Ok(if failed {
        ExitCode::from(crate::EXIT_CLEANROOM_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

/// The image store's part of the report. What else the store learns to
/// clean up goes here too, as entries of its kind.
fn image_store_removed(r: &cleanroom::images::GcReport) -> Vec<Removed> {
    let mut out: Vec<Removed> = r
        .temp_removed
        .iter()
        .map(|p| {
            Removed::one(
                Removed::TEMP,
                format!(
                    "images: removed {} (left by an interrupted import or unpack)",
                    p.display()
                ),
            )
        })
        .collect();
    let unreferenced = r.blobs_removed + r.layers_removed + r.rootfs_removed;
    if unreferenced > 0 {
        out.push(Removed::many(
            Removed::IMAGE_DATA,
            unreferenced,
            format!(
                "images: removed {} unreferenced blob(s), {} unpacked layer(s), {} merged rootfs ({} freed)",
                r.blobs_removed,
                r.layers_removed,
                r.rootfs_removed,
                super::images::human_size(r.bytes_freed)
            ),
        ));
    }
    out
}

/// `removed 3 leftover item(s): 2 cgroup, 1 container`.
fn summary(removed: &[Removed]) -> String {
    let counts = count_by_kind(removed);
    let total: usize = counts.values().sum();
    if counts.is_empty() {
        return "removed 0 leftover item(s)".to_string();
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    format!("removed {total} leftover item(s): {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_by_kind() {
        assert_eq!(summary(&[]), "removed 0 leftover item(s)");
        let removed = [
            Removed::one(Removed::CGROUP, "a"),
            Removed::one(Removed::CONTAINER, "b"),
            Removed::one(Removed::CGROUP, "c"),
        ];
        assert_eq!(
            summary(&removed),
            "removed 3 leftover item(s): 2 cgroup, 1 container"
        );
    }
}
