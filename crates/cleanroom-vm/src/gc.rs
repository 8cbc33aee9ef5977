//! `gc` for the vm backend: run directories (agent socket, console log)
//! whose owner died without removing them, and any QEMU still serving one.

use cleanroom_core::Removed;

use crate::vm::{runs_root, OWNER_FILE};

/// Removes the run directories of dead owners; never a live owner's.
pub fn remove_dead() -> Vec<Removed> {
    let mut removed = Vec::new();
    let Ok(list) = std::fs::read_dir(runs_root()) else {
        return removed;
    };
    for e in list.flatten() {
        let dir = e.path();
        let owner = std::fs::read_to_string(dir.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if owner.is_some_and(cleanroom_core::process_alive) {
            continue;
        }
        if cleanroom_core::paths::remove_all(&dir).is_ok() {
            removed.push(Removed::one(
                Removed::TEMP,
                format!("vm: removed {} (its owner died)", dir.display()),
            ));
        }
    }
    removed
}
